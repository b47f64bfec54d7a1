# The Firestore database, the composite indexes the queries need (the emulator never asks
# for them; production fails the query without them) and the TTL policies.
#
# Each environment has a database of its own, named after its name_prefix, never the
# project's "(default)" one: environments may share a project (variables.tf), and the
# collections, indexes and TTL policies below carry no prefix. The functions are told its
# id (PROMPTFORGE_FIRESTORE_DATABASE, functions.tf). A database id is 4 to 63 lower-case
# letters, digits and hyphens, starting with a letter and ending with a letter or digit:
# "<name_prefix>-db" is one for every name_prefix variables.tf accepts (3 to 10 characters).

resource "google_firestore_database" "main" {
  project                           = var.project_id
  name                              = "${var.name_prefix}-db"
  location_id                       = coalesce(var.firestore_location, var.region)
  type                              = "FIRESTORE_NATIVE"
  concurrency_mode                  = "PESSIMISTIC" # the job state machine runs in transactions
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = var.deletion_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
  deletion_policy                   = var.deletion_protection ? "ABANDON" : "DELETE"

  depends_on = [google_project_service.apis]
}

locals {
  # Collection => ordered fields of each composite index, named after the query it serves.
  # Single-field queries use Firestore's automatic single-field indexes: api_keys by
  # created_at; a job's chunks by index, by status (the unfinished ones), by lease_until
  # (leases that ended, the latest lease) and by expire_at == null (the ones still to
  # stamp); the chunk aggregation; jobs by records_unstamped; live workers by until. The
  # watchdog queries one job's chunks at a time, never the chunks collection group.
  firestore_indexes = {
    # The watchdog's sweep: status == ?, status_at < ?, order by status_at.
    jobs_by_status_age = {
      collection = "jobs"
      fields     = [["status", "ASCENDING"], ["status_at", "ASCENDING"]]
    }
    # The client's job list, newest first: client_id == ?, order by created_at desc,
    # job_id desc (the tie-breaker its page cursor needs).
    jobs_by_client_newest = {
      collection = "jobs"
      fields     = [["client_id", "ASCENDING"], ["created_at", "DESCENDING"], ["job_id", "DESCENDING"]]
    }
  }

  # Collection group => the timestamp field after which Firestore deletes a document
  # (usually within a day of it). A job gets expire_at when it ends (results retention
  # after its end); TTL does not delete subcollections, so the watchdog gives the job's
  # chunks and its done counters (jobs/{id}/done_counts) the same expire_at, in bounded
  # batches a sweep, once the grace period after the end has passed. A rate-budget worker
  # document expires at its lease end, which cleans up after workers that crashed.
  # `indexed` keeps the field's single-field index where a query needs it (workers:
  # until > now; chunks: expire_at == null, the chunks still to stamp, written a few times
  # a second at most, far from an index hotspot).
  firestore_ttl_fields = {
    jobs        = { field = "expire_at", indexed = false }
    chunks      = { field = "expire_at", indexed = true }
    done_counts = { field = "expire_at", indexed = false }
    workers     = { field = "until", indexed = true }
    # A client's requests of one minute (usage/{client}/request_minutes), worthless after it.
    request_minutes = { field = "expire_at", indexed = false }
    # Where a job's planning stands (plans/{job_id}): kept for the results' retention from
    # its last step, so a late planning task still finds the job planned.
    plans = { field = "expire_at", indexed = false }
  }
}

resource "google_firestore_index" "composite" {
  for_each = local.firestore_indexes

  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = each.value.collection
  query_scope = "COLLECTION"

  dynamic "fields" {
    for_each = each.value.fields
    content {
      field_path = fields.value[0]
      order      = fields.value[1]
    }
  }
}

resource "google_firestore_field" "ttl" {
  for_each = local.firestore_ttl_fields

  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = each.key
  field      = each.value.field

  ttl_config {}

  # Without an index where nothing queries the field: an index on an ever-increasing
  # timestamp is a write hotspot. (Leaving index_config out keeps the default indexes.)
  dynamic "index_config" {
    for_each = each.value.indexed ? [] : [{}]
    content {}
  }
}
