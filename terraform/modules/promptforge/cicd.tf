# The Cloud Build trigger that runs cloudbuild.yaml for this environment. Approval is a
# trigger setting: with require_approval, every build waits until someone with the
# Cloud Build Approver role approves it (prod).
resource "google_cloudbuild_trigger" "deploy" {
  count = var.ci == null ? 0 : 1

  project         = var.project_id
  name            = "${var.name_prefix}-deploy"
  description     = "Test, package and deploy PromptForge to ${var.environment}"
  filename        = "cloudbuild.yaml"
  service_account = "projects/${var.project_id}/serviceAccounts/${var.ci.service_account}"

  github {
    owner = var.ci.github_owner
    name  = var.ci.github_repo
    push {
      branch = var.ci.branch
      tag    = var.ci.tag
    }
  }

  substitutions = {
    _ENV             = var.environment
    _TF_STATE_BUCKET = var.ci.tf_state_bucket
  }

  approval_config {
    approval_required = var.ci.require_approval
  }

  depends_on = [google_project_service.apis]
}
