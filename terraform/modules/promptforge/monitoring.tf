# Alerts on what the functions log (functions/promptforge/logs.py writes one JSON object a
# line: severity, message and fields such as job_id and code). Each entry becomes a
# log-based metric counting the matching lines of this environment's functions, and an
# alert policy that fires when the count in the window passes the threshold.
locals {
  log_alerts = {
    failed_jobs = {
      title = "Jobs failing"
      # service/lifecycle.py: logs.warning("job failed", job_id=..., code=...). Failures
      # the client caused (an empty file, ...) are the client's to see, not an incident;
      # stuck jobs have their own alert.
      filter = join(" AND ", concat(
        ["jsonPayload.message=\"job failed\"", "NOT jsonPayload.code=\"stuck\""],
        [for code in var.alert_ignored_failure_codes : "NOT jsonPayload.code=\"${code}\""],
      ))
      labels    = { code = "EXTRACT(jsonPayload.code)" }
      threshold = var.failed_jobs_alert_threshold
      window    = "900s"
      severity  = "ERROR"
      doc       = "Jobs failed for reasons other than the client's file. The metric's code label tells which; look up the job_id in the logs."
    }
    stuck_jobs = {
      title = "Jobs stuck"
      # The watchdog fails a job that made no progress for PROMPTFORGE_JOB_STUCK_SECONDS
      # with code "stuck" (service/watchdog.py), logged like every failure.
      filter    = "jsonPayload.message=\"job failed\" AND jsonPayload.code=\"stuck\""
      labels    = {}
      threshold = 0
      window    = "600s"
      severity  = "ERROR"
      doc       = "The watchdog failed a job that stopped making progress (a task that ran out of retries, a provider that never answers). Partial results are kept; look up the job_id in the logs."
    }
    unhandled_errors = {
      title = "Unhandled errors"
      # api/public.py: logs.error("unhandled error", path=..., error_type=..., where=...)
      filter    = "severity>=ERROR AND jsonPayload.message=\"unhandled error\""
      labels    = {}
      threshold = 0
      window    = "300s"
      severity  = "WARNING"
      doc       = "A function answered 500. The log entry names the error type and where it was raised."
    }
  }

  # Log lines of this environment's functions only.
  functions_log_filter = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=~\"^${var.name_prefix}-\""
}

resource "google_logging_metric" "alert" {
  for_each = local.log_alerts

  project     = var.project_id
  name        = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  description = "PromptForge ${var.environment}: ${each.value.title}"
  filter      = "${local.functions_log_filter} AND ${each.value.filter}"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    dynamic "labels" {
      for_each = each.value.labels
      content {
        key        = labels.key
        value_type = "STRING"
      }
    }
  }
  label_extractors = each.value.labels

  depends_on = [google_project_service.apis]
}

# Cloud Monitoring knows a new log-based metric only minutes after Logging created it: an
# alert policy on it created at once fails with "Cannot find metric(s) that match type =
# logging.googleapis.com/user/... If a metric was created recently, it could take up to 10
# minutes to become available" (terraform-provider-google issue 11102; the provider does
# not retry it). The policies wait here after their metrics; a first apply spends this
# while building the functions anyway. It waits again only when the set of metrics changes.
resource "time_sleep" "log_metrics" {
  create_duration = "600s"

  triggers = {
    metrics = join(",", sort([for m in google_logging_metric.alert : m.id]))
  }
}

resource "google_monitoring_alert_policy" "alert" {
  for_each = local.log_alerts

  project               = var.project_id
  display_name          = "PromptForge ${var.environment}: ${each.value.title}"
  combiner              = "OR"
  severity              = each.value.severity
  notification_channels = var.alert_notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "${each.value.title} over ${each.value.threshold} in ${each.value.window}"
    condition_threshold {
      filter          = "resource.type=\"cloud_run_revision\" AND metric.type=\"logging.googleapis.com/user/${google_logging_metric.alert[each.key].name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = each.value.threshold
      duration        = "0s"
      aggregations {
        alignment_period     = each.value.window
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "86400s"
  }

  documentation {
    content   = each.value.doc
    mime_type = "text/markdown"
  }

  depends_on = [time_sleep.log_metrics]
}
