# Secret Manager secrets for the provider API keys. Terraform creates the empty secrets
# only: the values are added out of band (docs/deploy.md, `gcloud secrets versions add`),
# so no key is ever in a variable, a plan or the state. The worker gets the keys listed
# in var.provider_keys as environment variables (functions.tf).
locals {
  provider_key_names = toset(["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"])

  # openai_compatible endpoints: the only URLs a deployment credential for them goes to.
  # A key lives in a secret of its own, mounted into the worker under the variable that
  # PROMPTFORGE_ENDPOINTS names for it.
  endpoint_keys = {
    for name, e in var.openai_compatible_endpoints : name => {
      env    = "PROMPTFORGE_ENDPOINT_KEY_${upper(replace(name, "-", "_"))}"
      secret = "${var.name_prefix}-endpoint-${name}-key"
    } if e.has_key
  }
  # Mounted only once the secret has a version (key_added): the first apply creates the
  # empty secret, the operator adds the key, the next apply mounts it (docs/deploy.md).
  endpoint_keys_mounted = { for name, k in local.endpoint_keys : name => k if var.openai_compatible_endpoints[name].key_added }
  endpoints_setting = {
    for name, e in var.openai_compatible_endpoints : name => merge(
      { base_url = e.base_url, wire = "openai" },
      e.has_key ? { key_env = local.endpoint_keys[name].env } : {},
      { for k, v in { rpm = e.rpm, tpm = e.tpm } : k => v if v != null },
    )
  }
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

resource "google_secret_manager_secret" "endpoint_key" {
  for_each = local.endpoint_keys

  project   = var.project_id
  secret_id = each.value.secret
  labels    = local.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

# Only the functions that call providers read endpoint keys.
resource "google_secret_manager_secret_iam_member" "fn_endpoint_key" {
  for_each = merge([
    for fn, f in local.functions : { for name, _ in local.endpoint_keys : "${fn}/${name}" => { fn = fn, endpoint = name } } if f.provider_keys
  ]...)

  project   = var.project_id
  secret_id = google_secret_manager_secret.endpoint_key[each.value.endpoint].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.fn[each.value.fn].email}"
}
