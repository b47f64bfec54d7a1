variable "project_id" {
  description = "Google Cloud project to deploy into."
  type        = string
}

variable "region" {
  description = "Region of the functions, buckets and queues."
  type        = string
  default     = "us-central1"
}

variable "name_prefix" {
  description = "Prefix of every resource name, so several environments can share a project."
  type        = string
  default     = "promptforge"
}

variable "source_archive_object" {
  description = "Object (in the source bucket) holding the zipped functions/ directory."
  type        = string
}

variable "providers_enabled" {
  description = "LLM providers this deployment serves."
  type        = list(string)
  default     = ["openai_compatible"]
}
