# Identities and least privilege. No key is ever created for any of these accounts: the
# functions use their runtime identity, and URLs are signed through IAM signBlob.
#
#   <prefix>-<function>  one runtime identity per function (local.functions)
#   <prefix>-tasks       the OIDC identity on Cloud Tasks tasks: invokes the "tasks" functions
#   <prefix>-scheduler   the OIDC identity of Cloud Scheduler: invokes the "scheduler" functions
#   <prefix>-eventarc    the identity of the Eventarc trigger: invokes the "eventarc" functions
#   <prefix>-gateway     API Gateway's backend identity: invokes the "gateway" functions
#   <prefix>-signer      signs the upload and download URLs, so it holds exactly what a URL grants
#   <prefix>-builder     builds the function images

locals {
  # What each identity that is not a function's own is for.
  role_accounts = {
    tasks     = "Cloud Tasks invoker"
    scheduler = "Cloud Scheduler invoker"
    eventarc  = "Eventarc trigger"
    gateway   = "API Gateway backend"
    signer    = "URL signer"
    builder   = "function builder"
  }
}

resource "google_service_account" "fn" {
  for_each = local.functions

  project      = var.project_id
  account_id   = "${var.name_prefix}-${replace(each.key, "_", "-")}"
  display_name = "PromptForge ${each.key} (${var.environment})"

  lifecycle {
    precondition {
      condition     = length("${var.name_prefix}-${replace(each.key, "_", "-")}") <= 30
      error_message = "Service account id for ${each.key} is over 30 characters; shorten name_prefix."
    }
    precondition {
      condition     = !contains(keys(local.role_accounts), replace(each.key, "_", "-"))
      error_message = "Function ${each.key} would share its service account id with a role account; rename it."
    }
  }

  # On an empty project iam.googleapis.com is enabled in this same apply.
  depends_on = [google_project_service.apis]
}

# The identities that are not a function's own.
resource "google_service_account" "role" {
  for_each = local.role_accounts

  project      = var.project_id
  account_id   = "${var.name_prefix}-${each.key}"
  display_name = "PromptForge ${each.value} (${var.environment})"

  depends_on = [google_project_service.apis]
}

locals {
  bucket_grants = merge([
    for fn, f in local.functions : {
      for bucket, role in f.buckets : "${fn}/${bucket}" => { fn = fn, bucket = bucket, role = role }
    }
  ]...)

  queue_grants = merge([
    for fn, f in local.functions : { for queue in f.enqueues : "${fn}/${queue}" => { fn = fn, queue = queue } }
  ]...)

  enqueuers = toset([for fn, f in local.functions : fn if length(f.enqueues) > 0])
  signers   = toset([for fn, f in local.functions : fn if f.signs_urls])

  secret_grants = merge([
    for fn, f in local.functions : { for name in local.provider_key_names : "${fn}/${name}" => { fn = fn, secret = name } } if f.provider_keys
  ]...)
}

# --- who may invoke each function --------------------------------------------------------

# run.invoker on the function's Cloud Run service, for its one invoker identity. Nothing
# else (no allUsers, no allAuthenticatedUsers) may invoke any function, with the one
# exception below.
resource "google_cloud_run_v2_service_iam_member" "invoker" {
  for_each = local.functions

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.fn[each.key].name
  role     = "roles/run.invoker"
  # A function's access names the role account of its caller (gateway, tasks, ...).
  member = "serviceAccount:${google_service_account.role[each.value.access].email}"
}

# The one public function: the event stream (GET /v1/jobs/{id}/events). API Gateway
# buffers a response whole, so a stream through it arrives only when it ends; clients
# reach job_events directly on its run.app URL (events_url on the job status) instead.
# It authenticates the X-API-Key itself, as every API function does, and holds each
# client to max_event_streams open streams. The alternative, an external HTTPS load
# balancer with serverless NEGs, streams too, but costs a forwarding rule, a certificate
# and a backend per function (docs/deploy.md). terraform/checks/policies allows allUsers
# on this resource alone.
resource "google_cloud_run_v2_service_iam_member" "events_public" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.fn["job_events"].name
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# --- what each function may do -------------------------------------------------------------

resource "google_project_iam_member" "fn_firestore" {
  for_each = { for fn, f in local.functions : fn => f if f.firestore }

  project = var.project_id
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.fn[each.key].email}"
}

resource "google_storage_bucket_iam_member" "fn_bucket" {
  for_each = local.bucket_grants

  bucket = google_storage_bucket.data[each.value.bucket].name
  role   = each.value.role
  member = "serviceAccount:${google_service_account.fn[each.value.fn].email}"
}

resource "google_cloud_tasks_queue_iam_member" "fn_enqueue" {
  for_each = local.queue_grants

  project  = var.project_id
  location = var.region
  name     = local.queues[each.value.queue]
  role     = "roles/cloudtasks.enqueuer"
  member   = "serviceAccount:${google_service_account.fn[each.value.fn].email}"
}

# Creating a task that carries the tasks identity's OIDC token needs actAs on it.
resource "google_service_account_iam_member" "fn_act_as_tasks" {
  for_each = local.enqueuers

  service_account_id = google_service_account.role["tasks"].name
  role               = "roles/iam.serviceAccountUser"
  member             = "serviceAccount:${google_service_account.fn[each.key].email}"
}

# Signing a URL is signBlob as the signer, and that is all a signing function may do as
# it: roles/iam.serviceAccountTokenCreator also holds getAccessToken and getOpenIdToken,
# which would let the function act as the signer outright. A custom role holds signBlob
# alone; its id is per name_prefix (environments may share a project) and may hold only
# letters, digits, underscores and periods.
resource "google_project_iam_custom_role" "signer" {
  project     = var.project_id
  role_id     = "promptforgeSigner_${replace(var.name_prefix, "-", "_")}"
  title       = "PromptForge URL signer (${var.environment})"
  description = "Sign upload and download URLs as the PromptForge signer account: signBlob only."
  permissions = ["iam.serviceAccounts.signBlob"]

  depends_on = [google_project_service.apis]
}

resource "google_service_account_iam_member" "fn_sign_as_signer" {
  for_each = local.signers

  service_account_id = google_service_account.role["signer"].name
  role               = google_project_iam_custom_role.signer.name
  member             = "serviceAccount:${google_service_account.fn[each.key].email}"
}

resource "google_secret_manager_secret_iam_member" "fn_provider_key" {
  for_each = local.secret_grants

  project   = var.project_id
  secret_id = google_secret_manager_secret.provider_key[each.value.secret].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.fn[each.value.fn].email}"
}

# --- what a signed URL may do: the signer's own rights --------------------------------------

resource "google_storage_bucket_iam_member" "signer_uploads" {
  bucket = google_storage_bucket.data["uploads"].name
  role   = "roles/storage.objectCreator" # PUT of a new upload; no read, no overwrite
  member = "serviceAccount:${google_service_account.role["signer"].email}"
}

resource "google_storage_bucket_iam_member" "signer_results" {
  bucket = google_storage_bucket.data["results"].name
  role   = "roles/storage.objectViewer" # GET of result files
  member = "serviceAccount:${google_service_account.role["signer"].email}"
}

# --- Eventarc: storage events to on_upload -------------------------------------------------

resource "google_project_iam_member" "eventarc_receiver" {
  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = "serviceAccount:${google_service_account.role["eventarc"].email}"
}

data "google_storage_project_service_account" "gcs" {
  project = var.project_id
}

# Cloud Storage publishes the object events to Pub/Sub, which Eventarc reads.
resource "google_project_iam_member" "gcs_pubsub_publisher" {
  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${data.google_storage_project_service_account.gcs.email_address}"

  depends_on = [google_project_service.apis]
}

# --- the function builds -------------------------------------------------------------------
#
# A gen2 build does not read the archive from our source bucket: Cloud Functions copies it
# into a bucket of its own, gcf-v2-sources-<project number>-<region>, which it creates on
# the first deployment in the region, and the build (running as the builder) fetches it
# from there. Without read access there every build fails with "Access to bucket
# gcf-v2-sources-... denied. You must grant Storage Object Viewer permission to ..."
# (terraform-provider-google issue 20571: the provider's own acceptance test, on a custom
# build service account). Google documents roles/cloudbuild.builds.builder or, for a custom
# build account, logging.logWriter + artifactregistry.writer + storage object access
# (Cloud Run "build service account"; the provider's cloudfunctions2_basic_builder example
# grants storage.objectAdmin on the whole project). Each of those lets the builder read
# every bucket of the project, client uploads and results included; this grants only:
#
#   roles/logging.logWriter        the build's logs (project-wide: logs have no narrower scope)
#   roles/storage.objectViewer     on the gcf-v2-sources bucket alone, through an IAM
#                                  condition on its resource name: the bucket does not exist
#                                  before the first function, so a bucket-level grant could
#                                  not be made in the same apply
#   roles/storage.objectViewer     on our own source bucket (function archives only), where
#                                  the build's source is declared
#   roles/artifactregistry.writer  on the functions' repository alone (docker_repository):
#                                  the image and the buildpacks cache go there
#
# Base images come from Google's public serverless-runtimes registry: nothing to grant.
locals {
  gcf_sources_bucket = "gcf-v2-sources-${data.google_project.this.number}-${var.region}"
}

resource "google_project_iam_member" "builder" {
  for_each = toset(["roles/logging.logWriter"])

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.role["builder"].email}"
}

resource "google_project_iam_member" "builder_gcf_sources" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = "serviceAccount:${google_service_account.role["builder"].email}"

  condition {
    title       = "${var.name_prefix} builder: Cloud Functions sources"
    description = "Read the function sources Cloud Functions copies into its own bucket, and nothing else."
    expression  = "resource.name == \"projects/_/buckets/${local.gcf_sources_bucket}\" || resource.name.startsWith(\"projects/_/buckets/${local.gcf_sources_bucket}/objects/\")"
  }
}

resource "google_storage_bucket_iam_member" "builder_source" {
  bucket = google_storage_bucket.source.name
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.role["builder"].email}"
}

resource "google_artifact_registry_repository_iam_member" "builder_images" {
  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.role["builder"].email}"
}

# IAM grants take effect within about a minute, not when the API call returns: a build
# or a deployment that starts at once can still be refused (the provider's own builder
# example waits 60 s for the same reason). Every grant that a function deployment checks
# (the build, the secret mounts, the storage trigger) comes before this wait, and the
# functions after it. It waits again only when that set of grants changes.
resource "time_sleep" "iam_propagation" {
  create_duration = "90s"

  triggers = {
    grants = sha1(jsonencode(concat(
      [for r in google_project_iam_member.builder : r.id],
      [google_project_iam_member.builder_gcf_sources.id],
      [google_storage_bucket_iam_member.builder_source.id],
      [google_artifact_registry_repository_iam_member.builder_images.id],
      [for r in google_secret_manager_secret_iam_member.fn_provider_key : r.id],
      [for r in google_secret_manager_secret_iam_member.fn_endpoint_key : r.id],
      [google_project_iam_member.eventarc_receiver.id],
      [google_project_iam_member.gcs_pubsub_publisher.id],
    )))
  }
}
