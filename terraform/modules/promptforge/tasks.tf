# Cloud Tasks queues: one for planning, one for chunks. Tasks carry an OIDC token of the
# tasks identity (iam.tf), the only identity the worker functions accept.
#
# Retries are always bounded: a task that keeps failing is dropped after max_attempts,
# and the watchdog takes the job from there.

resource "google_cloud_tasks_queue" "plan" {
  project  = var.project_id
  location = var.region
  # Queue names cannot be reused for days after deletion: keep them stable.
  name = "${var.name_prefix}-plan"

  # Planning streams a file once: a few at a time is plenty.
  rate_limits {
    max_dispatches_per_second = 5
    max_concurrent_dispatches = var.plan_max_concurrency
  }

  retry_config {
    max_attempts  = var.plan_max_attempts
    min_backoff   = "10s"
    max_backoff   = "300s"
    max_doublings = 4
  }

  stackdriver_logging_config {
    sampling_ratio = var.tasks_log_sampling_ratio
  }

  depends_on = [google_project_service.apis]
}

resource "google_cloud_tasks_queue" "chunks" {
  project  = var.project_id
  location = var.region
  name     = "${var.name_prefix}-chunks"

  # From the provider limits: enough chunk workers to keep every limit busy, never more
  # than max_chunk_workers (modules/sizing has the arithmetic).
  rate_limits {
    max_dispatches_per_second = module.sizing.chunk_queue_max_dispatches_per_second
    max_concurrent_dispatches = module.sizing.chunk_queue_max_concurrent_dispatches
  }

  # A busy chunk answers 503 and counts as an attempt: many attempts, backing off to 5 min.
  retry_config {
    max_attempts  = var.chunk_max_attempts
    min_backoff   = "5s"
    max_backoff   = "300s"
    max_doublings = 5
  }

  stackdriver_logging_config {
    sampling_ratio = var.tasks_log_sampling_ratio
  }

  depends_on = [google_project_service.apis]
}

# Callbacks have a queue of their own: a receiver that accepts and never answers holds a
# callback dispatch for its 10 s timeout, never a planning one. A client's callbacks in
# flight are capped in the function (PROMPTFORGE_MAX_CALLBACKS_IN_FLIGHT), so one client's
# hanging receivers cannot take every dispatch either. Retries stop after an hour.
resource "google_cloud_tasks_queue" "notify" {
  project  = var.project_id
  location = var.region
  name     = "${var.name_prefix}-notify"

  rate_limits {
    max_dispatches_per_second = 20
    max_concurrent_dispatches = var.notify_max_concurrency
  }

  retry_config {
    max_attempts       = 12
    max_retry_duration = "3600s"
    min_backoff        = "10s"
    max_backoff        = "600s"
    max_doublings      = 6
  }

  stackdriver_logging_config {
    sampling_ratio = var.tasks_log_sampling_ratio
  }

  depends_on = [google_project_service.apis]
}

locals {
  queues = {
    plan   = google_cloud_tasks_queue.plan.name
    chunks = google_cloud_tasks_queue.chunks.name
    notify = google_cloud_tasks_queue.notify.name
  }
}
