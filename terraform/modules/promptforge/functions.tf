# One Cloud Functions gen2 resource per entry point in functions/main.py.
locals {
  http_functions = {
    jobs_init     = { memory = "512Mi", timeout = 60, public = true }
    job_status    = { memory = "256Mi", timeout = 30, public = true }
    job_results   = { memory = "256Mi", timeout = 30, public = true }
    plan_job      = { memory = "1Gi", timeout = 1800, public = false }
    process_chunk = { memory = "1Gi", timeout = 1800, public = false }
  }
  queue_prefix = "projects/${var.project_id}/locations/${var.region}/queues/${var.name_prefix}"
  common_env = {
    GOOGLE_CLOUD_PROJECT       = var.project_id
    PROMPTFORGE_UPLOAD_BUCKET  = google_storage_bucket.uploads.name
    PROMPTFORGE_RESULTS_BUCKET = google_storage_bucket.results.name
    PROMPTFORGE_TASKS_LOCATION = var.region
    PROMPTFORGE_PLAN_QUEUE     = "${var.name_prefix}-plan"
    PROMPTFORGE_CHUNK_QUEUES   = "${var.name_prefix}-chunks"
    PROMPTFORGE_PROVIDERS      = join(",", var.providers_enabled)
  }
}

resource "google_cloudfunctions2_function" "http" {
  for_each = local.http_functions
  name     = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  location = var.region

  build_config {
    runtime     = "python311"
    entry_point = each.key
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = var.source_archive_object
      }
    }
  }

  service_config {
    available_memory      = each.value.memory
    timeout_seconds       = each.value.timeout
    environment_variables = local.common_env
    ingress_settings      = "ALLOW_ALL"
  }
}

resource "google_cloudfunctions2_function" "on_upload" {
  name     = "${var.name_prefix}-on-upload"
  location = var.region

  build_config {
    runtime     = "python311"
    entry_point = "on_upload"
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = var.source_archive_object
      }
    }
  }

  service_config {
    available_memory      = "256Mi"
    timeout_seconds       = 60
    environment_variables = local.common_env
    ingress_settings      = "ALLOW_INTERNAL_ONLY"
  }

  event_trigger {
    trigger_region = var.region
    event_type     = "google.cloud.storage.object.v1.finalized"
    retry_policy   = "RETRY_POLICY_RETRY"
    event_filters {
      attribute = "bucket"
      value     = google_storage_bucket.uploads.name
    }
  }
}
