# How many chunk workers the provider limits call for, and the Cloud Tasks settings and
# function instance caps that follow. Pure arithmetic, no resources and no provider, so the
# tests can evaluate it offline with a real `terraform apply` (tests/terraform/test_sizing.py).
#
# Per rate-limit entry (a provider, or provider/model):
#   effective_rpm = min(rpm, tpm / tokens_per_request)          requests the provider allows
#   in_flight     = effective_rpm * latency_seconds / 60         Little's law: requests open at once
#   workers       = ceil(in_flight / worker_concurrency)         one chunk task holds that many open
# Then for the one chunk queue:
#   max_concurrent_dispatches = clamp(sum(workers), 1, max_chunk_workers)
#   max_dispatches_per_second = clamp(ceil(max_concurrent_dispatches / ramp_seconds), 1, 500)
#     (every worker can start within ramp_seconds; the concurrency is the real limit)
#   process_chunk max instances = ceil(max_concurrent_dispatches / chunks_per_instance) + 1:
#     an instance serves chunks_per_instance chunks at once (its concurrency), the one more
#     for continuations and redeliveries that overlap an instance still shutting down.

terraform {
  required_version = ">= 1.6"
}

variable "rate_limits" {
  description = "Provider limits, keyed \"provider\" or \"provider/model\" as in PROMPTFORGE_RATE_LIMITS."
  type = map(object({
    rpm                = number
    tpm                = optional(number)
    tokens_per_request = optional(number, 1000)
    latency_seconds    = optional(number, 5)
  }))

  validation {
    condition     = alltrue([for l in values(var.rate_limits) : l.rpm > 0 && l.tokens_per_request > 0 && l.latency_seconds > 0])
    error_message = "rpm, tokens_per_request and latency_seconds must be positive."
  }
}

variable "worker_concurrency" {
  description = "Requests one chunk worker keeps in flight (PROMPTFORGE_WORKER_CONCURRENCY)."
  type        = number

  validation {
    condition     = var.worker_concurrency >= 1
    error_message = "worker_concurrency must be at least 1."
  }
}

variable "chunks_per_instance" {
  description = "Chunk tasks one process_chunk instance serves at once (its concurrency)."
  type        = number
  default     = 1
}

variable "max_chunk_workers" {
  description = "Upper bound on chunk tasks running at once, whatever the limits say (a cost cap)."
  type        = number
  default     = 100
}

variable "ramp_seconds" {
  description = "Time in which every chunk worker of a new job may start."
  type        = number
  default     = 10
}

locals {
  per_limit = {
    for key, l in var.rate_limits : key => {
      effective_rpm = l.tpm == null ? l.rpm : min(l.rpm, l.tpm / l.tokens_per_request)
    }
  }
  workers = {
    for key, l in var.rate_limits : key => ceil(local.per_limit[key].effective_rpm * l.latency_seconds / 60 / var.worker_concurrency)
  }
  chunk_concurrency = max(1, min(var.max_chunk_workers, sum(concat([0], values(local.workers)))))
}

output "workers_by_limit" {
  description = "Chunk workers each rate-limit entry needs to reach its limit."
  value       = local.workers
}

output "effective_rpm_by_limit" {
  description = "Requests per minute each entry allows once the token limit is applied."
  value       = { for key, v in local.per_limit : key => v.effective_rpm }
}

output "chunk_queue_max_concurrent_dispatches" {
  description = "max_concurrent_dispatches of the chunk queue."
  value       = local.chunk_concurrency
}

output "chunk_queue_max_dispatches_per_second" {
  description = "max_dispatches_per_second of the chunk queue."
  value       = max(1, min(500, ceil(local.chunk_concurrency / var.ramp_seconds)))
}

output "chunk_function_max_instances" {
  description = "max_instance_count of process_chunk (chunks_per_instance chunks per instance)."
  value       = ceil(local.chunk_concurrency / var.chunks_per_instance) + (var.chunks_per_instance == 1 ? max(2, ceil(local.chunk_concurrency / 10)) : 1)
}
