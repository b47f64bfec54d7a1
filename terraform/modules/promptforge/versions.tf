terraform {
  required_version = ">= 1.6"

  required_providers {
    # Sources only: the environments pin the versions (terraform/environments/*/main.tf).
    google = {
      source = "hashicorp/google"
    }
    # API Gateway resources exist only in the beta provider.
    google-beta = {
      source = "hashicorp/google-beta"
    }
    # time_sleep: waits for what Google Cloud makes consistent only after a while (IAM
    # grants, new log-based metrics), where a dependency alone is not enough (iam.tf,
    # monitoring.tf). Its version is pinned by the environments, as the others'.
    time = {
      source = "hashicorp/time"
    }
  }
}
