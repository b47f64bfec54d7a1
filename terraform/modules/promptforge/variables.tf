# --- where ------------------------------------------------------------------------------

variable "project_id" {
  description = "Google Cloud project to deploy into."
  type        = string
}

variable "environment" {
  description = "Environment name (dev, staging, prod): labels and display names."
  type        = string
}

variable "name_prefix" {
  description = "Prefix of every resource name, so environments may share a project. Short: service account ids are at most 30 characters."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,8}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3 to 10 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  description = "Region of the functions, buckets, queues and scheduler jobs."
  type        = string
  default     = "us-central1"
}

variable "firestore_location" {
  description = "Firestore location (a region or a multi-region such as nam5); defaults to region."
  type        = string
  default     = null
}

variable "gateway_region" {
  description = "API Gateway region (it runs in fewer regions than functions); defaults to region."
  type        = string
  default     = null
}

variable "deletion_protection" {
  description = "Protect the Firestore database from deletion (and abandon it on destroy)."
  type        = bool
  default     = true
}

# --- code -------------------------------------------------------------------------------

variable "source_archive_path" {
  description = "Local path of the zipped functions/ directory (terraform/package_functions.py)."
  type        = string
}

variable "python_runtime" {
  description = "Cloud Functions runtime of every function."
  type        = string
  default     = "python311"
}

# --- what the service offers --------------------------------------------------------------

variable "providers_enabled" {
  description = "LLM providers this deployment serves (PROMPTFORGE_PROVIDERS)."
  type        = list(string)
  default     = ["openai_compatible"]

  validation {
    condition     = alltrue([for p in var.providers_enabled : contains(["openai", "anthropic", "gemini", "openai_compatible"], p)])
    error_message = "providers_enabled may list openai, anthropic, gemini and openai_compatible (fake is for local stacks only)."
  }
}

variable "provider_keys" {
  description = "Provider key secrets that have a version and are given to the worker (add the version first: docs/deploy.md)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for k in var.provider_keys : contains(["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"], k)])
    error_message = "provider_keys may list OPENAI_API_KEY, ANTHROPIC_API_KEY and GEMINI_API_KEY (openai_compatible keys belong to openai_compatible_endpoints)."
  }
}

variable "openai_compatible_endpoints" {
  description = "OpenAI-compatible servers that openai_compatible jobs may name (\"endpoint\": NAME): base URL, whether it has a key (secret PREFIX-endpoint-NAME-key, value added out of band), whether that secret has a version yet (key_added: only then is it mounted into the worker, as a function whose secret has no version fails to deploy), and its limits. A deployment credential goes only to these URLs."
  type = map(object({
    base_url  = string
    has_key   = optional(bool, false)
    key_added = optional(bool, false)
    rpm       = optional(number)
    tpm       = optional(number)
  }))
  default = {}

  validation {
    condition     = alltrue([for name, e in var.openai_compatible_endpoints : can(regex("^[a-z0-9][a-z0-9-]{0,40}$", name)) && can(regex("^https?://", e.base_url))])
    error_message = "Endpoint names are lower-case letters, digits and dashes; base_url is an http(s) URL."
  }

  validation {
    condition     = alltrue([for e in values(var.openai_compatible_endpoints) : e.has_key || !e.key_added])
    error_message = "key_added is for an endpoint with has_key = true (its secret exists and has a version)."
  }
}

variable "notify_max_concurrency" {
  description = "Callbacks sent at once (the notify queue's concurrent dispatches)."
  type        = number
  default     = 50
}

variable "extra_env" {
  description = "More PROMPTFORGE_* settings for every function (functions/promptforge/config.py), e.g. PROMPTFORGE_MAX_UPLOAD_BYTES."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.extra_env) : startswith(k, "PROMPTFORGE_")])
    error_message = "extra_env may only set PROMPTFORGE_* variables; the rest are set by the module."
  }
}

variable "cors_origins" {
  description = "Browser origins allowed to PUT uploads and GET results through signed URLs, and to read the event stream from its own URL (the gateway's origin, the jobs page's, is always allowed there); empty for no CORS."
  type        = list(string)
  default     = []
}

# --- throughput ---------------------------------------------------------------------------

variable "rate_limits" {
  description = "Provider limits, keyed \"provider\" or \"provider/model\": rpm and tpm go to the workers (PROMPTFORGE_RATE_LIMITS); with tokens_per_request and latency_seconds they size the chunk queue (modules/sizing)."
  type = map(object({
    rpm                = number
    tpm                = optional(number)
    tokens_per_request = optional(number, 1000)
    latency_seconds    = optional(number, 5)
  }))
  default = {}
}

variable "worker_concurrency" {
  description = "Requests one chunk worker keeps in flight (PROMPTFORGE_WORKER_CONCURRENCY)."
  type        = number
  default     = 32
}

variable "max_chunk_workers" {
  description = "Most chunk tasks running at once, whatever the limits allow (a cost cap)."
  type        = number
  default     = 100
}

variable "chunks_per_instance" {
  description = "Chunk tasks one process_chunk instance serves at once (its Cloud Run concurrency). They share the instance's event loop, HTTP connections and one pace per rate budget, so an instance's CPU, not its count, grows with the work."
  type        = number
  default     = 8

  validation {
    condition     = var.chunks_per_instance >= 1 && var.chunks_per_instance <= 80
    error_message = "chunks_per_instance must be between 1 and 80."
  }
}

variable "plan_max_concurrency" {
  description = "Most planning tasks running at once."
  type        = number
  default     = 5
}

variable "plan_max_attempts" {
  description = "Attempts of a planning task before Cloud Tasks drops it."
  type        = number
  default     = 10

  validation {
    condition     = var.plan_max_attempts >= 1 && var.plan_max_attempts <= 100
    error_message = "Retries must be bounded: 1 to 100 attempts."
  }
}

variable "chunk_max_attempts" {
  description = "Attempts of a chunk task before Cloud Tasks drops it (a busy chunk's 503 counts as one)."
  type        = number
  default     = 50

  validation {
    condition     = var.chunk_max_attempts >= 1 && var.chunk_max_attempts <= 100
    error_message = "Retries must be bounded: 1 to 100 attempts."
  }
}

variable "api_max_instances" {
  description = "max_instance_count of each public API function and of on_upload."
  type        = number
  default     = 20
}

variable "tasks_log_sampling_ratio" {
  description = "Share of Cloud Tasks attempts logged (0 to 1)."
  type        = number
  default     = 0.1
}

variable "watchdog_schedule" {
  description = "Cron schedule (UTC) of the watchdog."
  type        = string
  default     = "*/5 * * * *"
}

# --- fair use per client -----------------------------------------------------------------
# Caps that keep one client from slowing the others (functions/promptforge/service/quotas.py);
# over one, the API answers 429 with Retry-After. 0 turns a cap off.

variable "max_awaiting_uploads" {
  description = "Jobs of one client created and not yet uploaded (PROMPTFORGE_MAX_AWAITING_UPLOADS)."
  type        = number
  default     = 10

  validation {
    condition     = var.max_awaiting_uploads >= 0 && floor(var.max_awaiting_uploads) == var.max_awaiting_uploads
    error_message = "max_awaiting_uploads is a whole number, 0 for no cap."
  }
}

variable "max_open_jobs" {
  description = "Jobs of one client not yet ended: awaiting upload, pending, or the running one (PROMPTFORGE_MAX_OPEN_JOBS)."
  type        = number
  default     = 100

  validation {
    condition     = var.max_open_jobs >= 0 && floor(var.max_open_jobs) == var.max_open_jobs
    error_message = "max_open_jobs is a whole number, 0 for no cap."
  }
}

variable "max_event_streams" {
  description = "Event streams (GET /v1/jobs/{id}/events) one client holds open at once (PROMPTFORGE_MAX_EVENT_STREAMS)."
  type        = number
  default     = 5

  validation {
    condition     = var.max_event_streams >= 0 && floor(var.max_event_streams) == var.max_event_streams
    error_message = "max_event_streams is a whole number, 0 for no cap."
  }
}

variable "requests_per_minute" {
  description = "Public API requests of one client per minute, over all its keys (PROMPTFORGE_REQUESTS_PER_MINUTE)."
  type        = number
  default     = 600

  validation {
    condition     = var.requests_per_minute >= 0 && floor(var.requests_per_minute) == var.requests_per_minute
    error_message = "requests_per_minute is a whole number, 0 for no cap."
  }
}

# --- data lifetime ------------------------------------------------------------------------

variable "uploads_retention_days" {
  description = "Days after which uploaded prompt files are deleted."
  type        = number
  default     = 7
}

variable "results_retention_days" {
  description = "Days after which result files are deleted."
  type        = number
  default     = 30
}

variable "source_retention_days" {
  description = "Days after which function archives are deleted (the live one is re-uploaded by every apply)."
  type        = number
  default     = 90
}

# --- alerting -----------------------------------------------------------------------------

variable "alert_notification_channels" {
  description = "Monitoring notification channel ids (projects/P/notificationChannels/N) the alerts go to."
  type        = list(string)
  default     = []
}

variable "failed_jobs_alert_threshold" {
  description = "Failed jobs (not counting alert_ignored_failure_codes) in 15 minutes above which the alert fires."
  type        = number
  default     = 3
}

variable "alert_ignored_failure_codes" {
  description = "Job error codes the client caused, which do not count towards the failed-jobs alert."
  type        = list(string)
  default     = ["empty_file", "not_jsonl", "file_too_large", "too_many_prompts", "upload_expired"]
}

# --- CI/CD --------------------------------------------------------------------------------

variable "ci" {
  description = "The Cloud Build trigger that deploys this environment (null: none). The repository must already be connected to Cloud Build, and service_account is an existing deployer account."
  type = object({
    github_owner     = string
    github_repo      = string
    branch           = optional(string) # a regex; set branch or tag
    tag              = optional(string)
    service_account  = string # email
    tf_state_bucket  = string
    require_approval = optional(bool, false)
  })
  default = null

  validation {
    condition     = var.ci == null ? true : ((var.ci.branch == null) != (var.ci.tag == null))
    error_message = "ci must set exactly one of branch and tag."
  }
}

locals {
  labels = {
    app         = "promptforge"
    environment = var.environment
    managed-by  = "terraform"
  }
}
