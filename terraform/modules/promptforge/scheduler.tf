# Cloud Scheduler jobs for the functions whose access is "scheduler" (the watchdog), each
# calling its function with an OIDC token of the scheduler identity.
locals {
  scheduled_functions = { for key, f in local.functions : key => f if f.access == "scheduler" }
}

resource "google_cloud_scheduler_job" "scheduled" {
  for_each = local.scheduled_functions

  project          = var.project_id
  region           = var.region
  name             = local.function_names[each.key]
  description      = "Runs ${each.key} on a schedule (${var.environment})"
  schedule         = each.value.schedule
  time_zone        = "Etc/UTC"
  attempt_deadline = "${min(each.value.timeout, 1800)}s"

  retry_config {
    retry_count          = 1
    min_backoff_duration = "30s"
  }

  http_target {
    http_method = "POST"
    uri         = local.function_urls[each.key]
    headers     = { "Content-Type" = "application/json" }
    body        = base64encode("{}")

    oidc_token {
      service_account_email = google_service_account.role["scheduler"].email
      audience              = local.function_urls[each.key]
    }
  }

  depends_on = [google_project_service.apis, google_cloudfunctions2_function.fn]
}
