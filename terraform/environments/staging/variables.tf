# What differs between projects rather than between environments; everything the
# environment itself decides is in main.tf.

variable "project_id" {
  description = "Google Cloud project of this environment."
  type        = string
}

variable "region" {
  description = "Region of the functions, buckets and queues."
  type        = string
  default     = "us-central1"
}

variable "source_archive_path" {
  description = "The zipped functions/ directory (python terraform/package_functions.py)."
  type        = string
  default     = "../../.build/functions.zip"
}

variable "provider_keys" {
  description = "Provider key secrets that already have a version (docs/deploy.md)."
  type        = list(string)
  default     = []
}

variable "openai_compatible_endpoints" {
  description = "OpenAI-compatible servers openai_compatible jobs may name (see the module's variable and docs/deploy.md)."
  type = map(object({
    base_url  = string
    has_key   = optional(bool, false)
    key_added = optional(bool, false)
    rpm       = optional(number)
    tpm       = optional(number)
  }))
  default = {}
}

variable "alert_notification_channels" {
  description = "Monitoring notification channels for the alerts."
  type        = list(string)
  default     = []
}

variable "ci" {
  description = "The Cloud Build trigger for this environment (see the module's variable), or null."
  type        = any
  default     = null
}
