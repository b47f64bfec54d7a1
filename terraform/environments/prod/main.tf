# Production. Deployed from release tags after a manual approval in Cloud Build.
terraform {
  required_version = ">= 1.6"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.50"
    }
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "~> 6.50"
    }
    # time_sleep in the module (IAM propagation, new log-based metrics).
    time = {
      source  = "hashicorp/time"
      version = "~> 0.12"
    }
  }

  # terraform init -backend-config="bucket=<state bucket>"
  backend "gcs" {
    prefix = "promptforge/prod"
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

provider "google-beta" {
  project = var.project_id
  region  = var.region
}

module "promptforge" {
  source = "../../modules/promptforge"

  project_id          = var.project_id
  region              = var.region
  environment         = "prod"
  name_prefix         = "pf-prod"
  source_archive_path = var.source_archive_path
  deletion_protection = true

  providers_enabled = ["openai_compatible", "openai"]
  provider_keys     = var.provider_keys

  openai_compatible_endpoints = var.openai_compatible_endpoints
  cors_origins                = []

  # The production tier; raise these with the provider account (docs/deploy.md).
  rate_limits = {
    openai = { rpm = 10000, tpm = 10000000, tokens_per_request = 400, latency_seconds = 3 }
  }
  worker_concurrency = 128
  max_chunk_workers  = 100
  api_max_instances  = 50

  uploads_retention_days = 7
  results_retention_days = 30

  alert_notification_channels = var.alert_notification_channels
  # Every prod deployment waits for an approval, whatever var.ci says.
  ci = var.ci == null ? null : merge(var.ci, { require_approval = true })
}

output "api_url" {
  value = module.promptforge.api_url
}

output "provider_key_secrets" {
  value = module.promptforge.provider_key_secrets
}

output "chunk_queue_sizing" {
  value = module.promptforge.chunk_queue_sizing
}

output "events_url" {
  value = module.promptforge.events_url
}

output "firestore_database" {
  value = module.promptforge.firestore_database
}

output "endpoint_key_secrets" {
  value = module.promptforge.endpoint_key_secrets
}
