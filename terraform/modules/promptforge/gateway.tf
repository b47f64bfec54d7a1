# API Gateway serving the public paths (functions/promptforge/api/routes.py) from the
# OpenAPI 2.0 document next to this file, generated from those routes by
# terraform/gateway_openapi.py. It calls the "gateway" functions with an ID
# token of the gateway identity, the only identity they accept (iam.tf).
locals {
  gateway_functions = { for key, f in local.functions : key => f if f.access == "gateway" }

  # Each backend by its deterministic run.app URL (functions.tf), which is also the
  # audience of the gateway's ID token: the gateway does not wait for the functions, and
  # the functions can be told the gateway's origin (PROMPTFORGE_CORS_ORIGINS) without a
  # dependency cycle.
  openapi_document = templatefile("${path.module}/openapi.yaml.tftpl", {
    title    = "PromptForge ${var.environment}"
    backends = { for key, _ in local.gateway_functions : key => local.function_urls[key] }
  })
}

resource "google_api_gateway_api" "api" {
  provider = google-beta

  project      = var.project_id
  api_id       = "${var.name_prefix}-api"
  display_name = "PromptForge ${var.environment}"
  labels       = local.labels

  depends_on = [google_project_service.apis]
}

# The API's own managed service must be enabled before the gateway serves it.
resource "google_project_service" "api_managed_service" {
  project            = var.project_id
  service            = google_api_gateway_api.api.managed_service
  disable_on_destroy = false
}

resource "google_api_gateway_api_config" "api" {
  provider = google-beta

  project = var.project_id
  api     = google_api_gateway_api.api.api_id
  # A config cannot change in place: each change is a new config, created before the old
  # one goes, so the gateway always has one to serve.
  api_config_id_prefix = "${var.name_prefix}-"
  labels               = local.labels

  openapi_documents {
    document {
      path     = "openapi.yaml"
      contents = base64encode(local.openapi_document)
    }
  }

  gateway_config {
    backend_config {
      google_service_account = google_service_account.role["gateway"].email
    }
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "google_api_gateway_gateway" "api" {
  provider = google-beta

  project      = var.project_id
  region       = coalesce(var.gateway_region, var.region)
  gateway_id   = "${var.name_prefix}-gateway"
  api_config   = google_api_gateway_api_config.api.id
  display_name = "PromptForge ${var.environment}"
  labels       = local.labels

  depends_on = [google_project_service.api_managed_service]
}
