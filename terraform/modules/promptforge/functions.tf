# One Cloud Functions (gen2) function per entry point in functions/main.py.
#
# Adding an entry point is one entry in local.functions, keyed by the entry point's name
# (tests/terraform/test_functions.py checks the keys against main.py). Each entry says:
#   access         the one identity that may invoke it (iam.tf):
#                    "gateway"   the public API, reachable only through API Gateway
#                    "tasks"     a Cloud Tasks target (OIDC token of the tasks identity)
#                    "scheduler" a Cloud Scheduler target (OIDC token of the scheduler identity)
#                    "eventarc"  an event function (event must be set)
#   ingress        "ALLOW_ALL" for the public API only (API Gateway is outside traffic);
#                  "ALLOW_INTERNAL_ONLY" for the rest: Cloud Tasks, Cloud Scheduler and
#                  Eventarc of the same project count as internal traffic
#   event          null for HTTP functions; {type, bucket} for the Eventarc trigger
#   schedule       cron schedule for "scheduler" functions (scheduler.tf), else null
#   memory, timeout, max_instances, concurrency: the function's size (max_instances null:
#                  sized from the rate limits, for the chunk worker)
#   firestore      reads and writes Firestore (roles/datastore.user)
#   buckets        bucket key (local.buckets) => storage role its service account gets
#   enqueues       Cloud Tasks queues (local.queues) it creates tasks on
#   signs_urls     signs upload/download URLs as the signing identity (iam.tf)
#   provider_keys  gets the provider API keys as secret environment variables
locals {
  functions = {
    jobs_init = {
      access        = "gateway"
      ingress       = "ALLOW_ALL"
      event         = null
      schedule      = null
      memory        = "512Mi"
      timeout       = 60
      max_instances = var.api_max_instances
      concurrency   = 40
      firestore     = true
      buckets       = {}
      enqueues      = []
      signs_urls    = true
      provider_keys = false
    }
    job_status = {
      access        = "gateway"
      ingress       = "ALLOW_ALL"
      event         = null
      schedule      = null
      memory        = "256Mi"
      timeout       = 30
      max_instances = var.api_max_instances
      concurrency   = 40
      firestore     = true
      buckets       = {}
      enqueues      = []
      signs_urls    = false
      provider_keys = false
    }
    job_results = {
      access        = "gateway"
      ingress       = "ALLOW_ALL"
      event         = null
      schedule      = null
      memory        = "256Mi"
      timeout       = 30
      max_instances = var.api_max_instances
      concurrency   = 40
      firestore     = true
      buckets       = { results = "roles/storage.objectUser" } # ?partial=true assembles files
      enqueues      = []
      signs_urls    = true
      provider_keys = false
    }
    job_cancel = {
      access        = "gateway"
      ingress       = "ALLOW_ALL"
      event         = null
      schedule      = null
      memory        = "256Mi"
      timeout       = 30
      max_instances = var.api_max_instances
      concurrency   = 40
      firestore     = true
      buckets       = {}
      enqueues      = ["plan", "notify"] # starts the client's next PENDING job; a callback
      signs_urls    = false
      provider_keys = false
    }
    jobs_list = {
      access        = "gateway"
      ingress       = "ALLOW_ALL"
      event         = null
      schedule      = null
      memory        = "256Mi"
      timeout       = 30
      max_instances = var.api_max_instances
      concurrency   = 40
      firestore     = true
      buckets       = {}
      enqueues      = []
      signs_urls    = false
      provider_keys = false
    }
    jobs_create = {
      access        = "gateway"
      ingress       = "ALLOW_ALL"
      event         = null
      schedule      = null
      memory        = "512Mi"
      timeout       = 60
      max_instances = var.api_max_instances
      concurrency   = 20
      firestore     = true
      buckets       = { uploads = "roles/storage.objectCreator" } # writes the inline prompts as the upload
      enqueues      = ["plan", "notify"]
      signs_urls    = true
      provider_keys = false
    }
    # Also public on its own run.app URL (iam.tf, events_public): API Gateway buffers a
    # response whole, so an event stream through it arrives only when it ends. Clients get
    # the direct URL as events_url on the job status; the gateway route stays as a fallback.
    job_events = {
      access        = "gateway"
      ingress       = "ALLOW_ALL"
      event         = null
      schedule      = null
      memory        = "256Mi"
      timeout       = 360 # above PROMPTFORGE_EVENTS_MAX_SECONDS (300): the stream ends first
      max_instances = var.api_max_instances
      concurrency   = 80 # an open stream mostly sleeps between polls
      firestore     = true
      buckets       = {}
      enqueues      = []
      signs_urls    = false
      provider_keys = false
    }
    openapi = {
      access        = "gateway"
      ingress       = "ALLOW_ALL"
      event         = null
      schedule      = null
      memory        = "256Mi"
      timeout       = 30
      max_instances = var.api_max_instances
      concurrency   = 80
      firestore     = false
      buckets       = {}
      enqueues      = []
      signs_urls    = false
      provider_keys = false
    }
    web = { # the jobs page: static files at /ui; the page calls the API with the user's key
      access        = "gateway"
      ingress       = "ALLOW_ALL"
      event         = null
      schedule      = null
      memory        = "256Mi"
      timeout       = 30
      max_instances = var.api_max_instances
      concurrency   = 80
      firestore     = false
      buckets       = {}
      enqueues      = []
      signs_urls    = false
      provider_keys = false
    }
    on_upload = {
      access        = "eventarc"
      ingress       = "ALLOW_INTERNAL_ONLY"
      event         = { type = "google.cloud.storage.object.v1.finalized", bucket = "uploads" }
      schedule      = null
      memory        = "256Mi"
      timeout       = 60
      max_instances = var.api_max_instances
      concurrency   = 10
      firestore     = true
      buckets       = {}
      enqueues      = ["plan", "notify"]
      signs_urls    = false
      provider_keys = false
    }
    notify_callback = {
      access        = "tasks"
      ingress       = "ALLOW_INTERNAL_ONLY"
      event         = null
      schedule      = null
      memory        = "256Mi"
      timeout       = 60
      max_instances = 10
      concurrency   = 20
      firestore     = true # reads the job and the client's webhook secret
      buckets       = {}
      enqueues      = []
      signs_urls    = false
      provider_keys = false
    }
    plan_job = {
      access        = "tasks"
      ingress       = "ALLOW_INTERNAL_ONLY"
      event         = null
      schedule      = null
      memory        = "1Gi"
      timeout       = 1800
      max_instances = var.plan_max_concurrency + 1
      concurrency   = 1
      firestore     = true
      buckets       = { uploads = "roles/storage.objectViewer", results = "roles/storage.objectUser" }
      enqueues      = ["plan", "chunks", "notify"]
      signs_urls    = false
      provider_keys = false
    }
    process_chunk = {
      access        = "tasks"
      ingress       = "ALLOW_INTERNAL_ONLY"
      event         = null
      schedule      = null
      memory        = "1Gi"
      timeout       = 1800
      max_instances = null # sized from the rate limits (modules/sizing)
      concurrency   = var.chunks_per_instance
      firestore     = true
      buckets       = { uploads = "roles/storage.objectViewer", results = "roles/storage.objectUser" }
      enqueues      = ["plan", "chunks", "notify"]
      signs_urls    = false
      provider_keys = true
    }
    watchdog = {
      access        = "scheduler"
      ingress       = "ALLOW_INTERNAL_ONLY"
      event         = null
      schedule      = var.watchdog_schedule
      memory        = "512Mi"
      timeout       = 540
      max_instances = 1 # one sweep at a time
      concurrency   = 1
      firestore     = true
      # Looks for an upload whose storage event was lost (a stat of the object); finishes
      # interrupted finalizations.
      buckets       = { uploads = "roles/storage.objectViewer", results = "roles/storage.objectUser" }
      enqueues      = ["plan", "chunks", "notify"]
      signs_urls    = false
      provider_keys = false
    }
  }

  function_names = { for key, _ in local.functions : key => "${var.name_prefix}-${replace(key, "_", "-")}" }

  # The deterministic run.app URL of each function's Cloud Run service. Known before the
  # functions exist, so the functions can be told each other's URLs (and their own: a
  # chunk enqueues its continuation) without a dependency cycle; Cloud Tasks and Cloud
  # Scheduler use it as the OIDC audience too.
  function_urls = {
    for key, name in local.function_names : key => "https://${name}-${data.google_project.this.number}.${var.region}.run.app"
  }

  # Every function reads the same settings (functions/promptforge/config.py).
  function_env = merge(
    {
      GOOGLE_CLOUD_PROJECT           = var.project_id
      PROMPTFORGE_UPLOAD_BUCKET      = google_storage_bucket.data["uploads"].name
      PROMPTFORGE_RESULTS_BUCKET     = google_storage_bucket.data["results"].name
      PROMPTFORGE_TASKS_LOCATION     = var.region
      PROMPTFORGE_PLAN_QUEUE         = google_cloud_tasks_queue.plan.name
      PROMPTFORGE_CHUNK_QUEUES       = google_cloud_tasks_queue.chunks.name
      PROMPTFORGE_PLAN_URL           = local.function_urls["plan_job"]
      PROMPTFORGE_CHUNK_URL          = local.function_urls["process_chunk"]
      PROMPTFORGE_NOTIFY_URL         = local.function_urls["notify_callback"]
      PROMPTFORGE_NOTIFY_QUEUE       = google_cloud_tasks_queue.notify.name
      PROMPTFORGE_FIRESTORE_DATABASE = google_firestore_database.main.name
      PROMPTFORGE_EVENTS_URL         = local.function_urls["job_events"]
      # Browser origins that may read the event stream from its own URL: the jobs page,
      # served through the gateway (so the functions are deployed after the gateway,
      # whose OpenAPI document names them by their deterministic URLs: gateway.tf), and
      # the operator's browser apps (cors_origins).
      PROMPTFORGE_CORS_ORIGINS            = join(",", distinct(concat(["https://${google_api_gateway_gateway.api.default_hostname}"], var.cors_origins)))
      PROMPTFORGE_ENDPOINTS               = jsonencode(local.endpoints_setting)
      PROMPTFORGE_TASKS_SERVICE_ACCOUNT   = google_service_account.role["tasks"].email
      PROMPTFORGE_SIGNING_SERVICE_ACCOUNT = google_service_account.role["signer"].email
      PROMPTFORGE_PROVIDERS               = join(",", var.providers_enabled)
      PROMPTFORGE_WORKER_CONCURRENCY      = tostring(var.worker_concurrency)
      PROMPTFORGE_RESULTS_RETENTION_DAYS  = tostring(var.results_retention_days)
      PROMPTFORGE_CHUNK_CONCURRENCY       = tostring(module.sizing.chunk_queue_max_concurrent_dispatches)
      PROMPTFORGE_RATE_LIMITS             = jsonencode({ for key, l in var.rate_limits : key => { for k, v in { rpm = l.rpm, tpm = l.tpm } : k => v if v != null } })
      PROMPTFORGE_MAX_AWAITING_UPLOADS    = tostring(var.max_awaiting_uploads)
      PROMPTFORGE_MAX_OPEN_JOBS           = tostring(var.max_open_jobs)
      PROMPTFORGE_MAX_EVENT_STREAMS       = tostring(var.max_event_streams)
      PROMPTFORGE_REQUESTS_PER_MINUTE     = tostring(var.requests_per_minute)
    },
    var.extra_env,
  )
}

module "sizing" {
  source = "../sizing"

  rate_limits         = var.rate_limits
  worker_concurrency  = var.worker_concurrency
  max_chunk_workers   = var.max_chunk_workers
  chunks_per_instance = var.chunks_per_instance
}

# The zipped functions/ directory (terraform/package_functions.py builds it). Named by its
# content, so a code change rolls the functions out and an unchanged tree changes nothing.
resource "google_storage_bucket_object" "functions_source" {
  bucket = google_storage_bucket.source.name
  name   = "functions/${filemd5(var.source_archive_path)}.zip"
  source = var.source_archive_path
}

resource "google_cloudfunctions2_function" "fn" {
  for_each = local.functions

  project     = var.project_id
  location    = var.region
  name        = local.function_names[each.key]
  description = "PromptForge ${each.key} (${var.environment})"
  labels      = local.labels

  build_config {
    runtime           = var.python_runtime
    entry_point       = each.key
    service_account   = google_service_account.role["builder"].id
    docker_repository = google_artifact_registry_repository.functions.id
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.functions_source.name
      }
    }
  }

  service_config {
    available_memory                 = each.value.memory
    available_cpu                    = "1"
    timeout_seconds                  = each.value.timeout
    max_instance_count               = coalesce(each.value.max_instances, module.sizing.chunk_function_max_instances)
    min_instance_count               = 0
    max_instance_request_concurrency = each.value.concurrency
    # Kept literal in local.functions so that checkov sees each function's own value.
    ingress_settings               = each.value.ingress
    all_traffic_on_latest_revision = true
    service_account_email          = google_service_account.fn[each.key].email
    # THREADS: functions-framework's gunicorn serves four requests at once per CPU unless
    # told otherwise, whatever Cloud Run sends; as many threads as the concurrency, so
    # requests held open (event streams) never leave the others queued inside an instance.
    environment_variables = merge(local.function_env, { THREADS = tostring(each.value.concurrency) })

    # Provider keys come from Secret Manager at instance start; never through Terraform.
    dynamic "secret_environment_variables" {
      for_each = each.value.provider_keys ? toset(var.provider_keys) : toset([])
      content {
        key        = secret_environment_variables.value
        project_id = var.project_id
        secret     = google_secret_manager_secret.provider_key[secret_environment_variables.value].secret_id
        version    = "latest"
      }
    }

    # The keys of operator-configured openai_compatible endpoints that have one with a
    # version (key_added).
    dynamic "secret_environment_variables" {
      for_each = each.value.provider_keys ? local.endpoint_keys_mounted : {}
      content {
        key        = secret_environment_variables.value.env
        project_id = var.project_id
        secret     = google_secret_manager_secret.endpoint_key[secret_environment_variables.key].secret_id
        version    = "latest"
      }
    }
  }

  dynamic "event_trigger" {
    for_each = each.value.event == null ? [] : [each.value.event]
    content {
      trigger_region        = var.region
      event_type            = event_trigger.value.type
      retry_policy          = "RETRY_POLICY_RETRY"
      service_account_email = google_service_account.role["eventarc"].email
      event_filters {
        attribute = "bucket"
        value     = google_storage_bucket.data[event_trigger.value.bucket].name
      }
    }
  }

  lifecycle {
    precondition {
      # The deterministic URL exists only while "<service>-<project number>" fits a DNS label.
      condition     = length("${local.function_names[each.key]}-${data.google_project.this.number}") <= 63
      error_message = "Function name ${local.function_names[each.key]} is too long for a deterministic run.app URL; shorten name_prefix."
    }
  }

  # What the build, the secret mounts and the storage trigger check when a function
  # deploys: the grants (iam.tf), once they have had time to take effect.
  depends_on = [
    google_project_service.apis,
    time_sleep.iam_propagation,
  ]
}

# Where the function images are built to, with old images cleaned up.
resource "google_artifact_registry_repository" "functions" {
  project       = var.project_id
  location      = var.region
  repository_id = "${var.name_prefix}-functions"
  description   = "PromptForge function images (${var.environment})"
  format        = "DOCKER"
  labels        = local.labels

  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "2592000s"
    }
  }

  depends_on = [google_project_service.apis]
}
