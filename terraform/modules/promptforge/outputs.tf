output "api_url" {
  description = "Base URL of the public API."
  value       = "https://${google_api_gateway_gateway.api.default_hostname}"
}

output "events_url" {
  description = "The event stream's own URL (job_events, public: API Gateway does not stream); clients get it as events_url on the job status."
  value       = local.function_urls["job_events"]
}

output "function_urls" {
  description = "Each function's run.app URL (only job_events is reachable from outside: see iam.tf)."
  value       = local.function_urls
}

output "firestore_database" {
  description = "This environment's Firestore database (PROMPTFORGE_FIRESTORE_DATABASE): for the admin command (docs/deploy.md)."
  value       = google_firestore_database.main.name
}

output "buckets" {
  description = "Bucket names by role."
  value       = merge({ for key, b in google_storage_bucket.data : key => b.name }, { source = google_storage_bucket.source.name })
}

output "queues" {
  description = "Cloud Tasks queue names."
  value       = local.queues
}

output "chunk_queue_sizing" {
  description = "What the rate limits made of the chunk queue (modules/sizing)."
  value = {
    workers_by_limit          = module.sizing.workers_by_limit
    max_concurrent_dispatches = module.sizing.chunk_queue_max_concurrent_dispatches
    max_dispatches_per_second = module.sizing.chunk_queue_max_dispatches_per_second
    process_chunk_instances   = module.sizing.chunk_function_max_instances
  }
}

output "provider_key_secrets" {
  description = "Secret ids to add provider key versions to (docs/deploy.md)."
  value       = { for name, s in google_secret_manager_secret.provider_key : name => s.secret_id }
}

output "endpoint_key_secrets" {
  description = "Secret ids to add openai_compatible endpoint keys to (endpoints with has_key), then set key_added."
  value       = { for name, s in google_secret_manager_secret.endpoint_key : name => s.secret_id }
}

output "service_accounts" {
  description = "Runtime identities, by function and by role."
  value = merge(
    { for key, sa in google_service_account.fn : key => sa.email },
    { for key, sa in google_service_account.role : key => sa.email },
  )
}
