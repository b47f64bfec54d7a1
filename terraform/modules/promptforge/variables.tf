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
    condition     = alltrue([for k in var.provider_keys : contains(["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "OPENAI_COMPATIBLE_API_KEY"], k)])
    error_message = "provider_keys may list OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY and OPENAI_COMPATIBLE_API_KEY."
  }
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
  description = "Browser origins allowed to PUT uploads and GET results through signed URLs; empty for no CORS."
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
