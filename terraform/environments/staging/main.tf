# Staging: production-shaped, smaller limits. Deployed on every release tag.
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
    prefix = "promptforge/staging"
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
  environment         = "staging"
  name_prefix         = "pf-stg"
  source_archive_path = var.source_archive_path
  deletion_protection = true

  providers_enabled = ["openai_compatible", "openai"]
  provider_keys     = var.provider_keys

  openai_compatible_endpoints = var.openai_compatible_endpoints
  cors_origins                = []

  # A middle tier; a separate key from prod, so the two never share a budget.
  rate_limits = {
    openai = { rpm = 5000, tpm = 2000000, tokens_per_request = 400, latency_seconds = 3 }
  }
  worker_concurrency = 64
  max_chunk_workers  = 20
  api_max_instances  = 10

  uploads_retention_days = 7
  results_retention_days = 14

  alert_notification_channels = var.alert_notification_channels
  ci                          = var.ci
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
