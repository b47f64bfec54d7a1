terraform {
  backend "gcs" {
    prefix = "promptforge/dev"
  }
}

variable "project_id" {
  type = string
}

variable "source_archive_object" {
  type = string
}

module "promptforge" {
  source                = "../../modules/promptforge"
  project_id            = var.project_id
  source_archive_object = var.source_archive_object
}
