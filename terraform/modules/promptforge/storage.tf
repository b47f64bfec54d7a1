# Buckets: uploads (clients PUT their JSONL through signed URLs), results (result parts and
# errors, downloaded through signed URLs), and source (the zipped functions). No bucket is
# ever public; objects are reached through signed URLs or the functions' own identities.
locals {
  buckets = {
    uploads = {
      retention_days = var.uploads_retention_days
      cors_methods   = ["PUT"] # the browser PUTs the file to its signed URL
    }
    results = {
      retention_days = var.results_retention_days
      cors_methods   = ["GET", "HEAD"] # a browser app may fetch the result files
    }
  }
}

resource "google_storage_bucket" "data" {
  for_each = local.buckets

  project                     = var.project_id
  name                        = "${var.project_id}-${var.name_prefix}-${each.key}"
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = local.labels

  # Delete after the configured days: the job documents expire with them (firestore.tf).
  lifecycle_rule {
    condition {
      age = each.value.retention_days
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  dynamic "cors" {
    for_each = length(var.cors_origins) > 0 ? [each.value.cors_methods] : []
    # response_header is also what a browser may send (Cloud Storage answers a preflight
    # from it): x-goog-content-length-range is one of the upload headers signed into the URL.
    content {
      origin          = var.cors_origins
      method          = cors.value
      response_header = ["Content-Type", "Content-Length", "Content-Disposition", "ETag", "x-goog-content-length-range"]
      max_age_seconds = 3600
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket" "source" {
  project                     = var.project_id
  name                        = "${var.project_id}-${var.name_prefix}-source"
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = local.labels

  # Every deployed archive is kept while it is current, so a rollback can point at it.
  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age = var.source_retention_days
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}
