# Secret Manager secrets for the provider API keys. Terraform creates the empty secrets
# only: the values are added out of band (docs/deploy.md, `gcloud secrets versions add`),
# so no key is ever in a variable, a plan or the state. The worker gets the keys listed
# in var.provider_keys as environment variables (functions.tf).
locals {
  provider_key_names = toset(["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "OPENAI_COMPATIBLE_API_KEY"])
}

resource "google_secret_manager_secret" "provider_key" {
  for_each = local.provider_key_names

  project   = var.project_id
  secret_id = "${var.name_prefix}-${lower(replace(each.key, "_", "-"))}"
  labels    = local.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}
