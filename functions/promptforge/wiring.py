"""The production composition root: real clients, built on first use and then reused
for the life of the function instance."""

from __future__ import annotations

import functools
from datetime import datetime

from . import config
from .service.batch_port import BatchProviderFactory
from .service.deps import utc_now
from .service.ports import BlobStore, JobStore, Outbound, TaskQueue
from .service.provider_port import ProviderFactory


class LiveDeps:
    """Deps over Firestore, Cloud Storage and Cloud Tasks (or their emulators), the LLM
    providers of the registry and outbound HTTP."""

    def __init__(self, settings: config.Settings) -> None:
        self.settings = settings

    @functools.cached_property
    def store(self) -> JobStore:
        from google.cloud import firestore

        from .adapters.firestore_store import FirestoreJobStore

        return FirestoreJobStore(firestore.Client(project=self.settings.project, database=self.settings.firestore_database))

    @functools.cached_property
    def blobs(self) -> BlobStore:
        from google.cloud import storage

        from .adapters.gcs_blobs import GcsBlobStore, Signer

        if self.settings.storage_emulator_host:
            from google.auth.credentials import AnonymousCredentials

            client = storage.Client(project=self.settings.project, credentials=AnonymousCredentials())
        else:
            client = storage.Client(project=self.settings.project)
        signer = Signer(
            key_file=self.settings.signing_key_file,
            service_account=self.settings.signing_service_account,
            api_access_endpoint=self.settings.storage_emulator_host or None,
        )
        return GcsBlobStore(client, signer)

    @functools.cached_property
    def tasks(self) -> TaskQueue:
        from .adapters.cloud_tasks import CloudTasksQueue, make_client

        return CloudTasksQueue(make_client(self.settings), self.settings)

    @functools.cached_property
    def providers(self) -> ProviderFactory:
        # Light: the factory imports a provider's SDK only when a chunk opens it.
        from .adapters.providers import LiveProviders

        return LiveProviders(config.secret)

    @functools.cached_property
    def batch_providers(self) -> BatchProviderFactory:
        # Light too: a batch format's module (and its SDK) is imported when a chunk opens it.
        from .adapters.batches import LiveBatchProviders

        return LiveBatchProviders(config.secret)

    @functools.cached_property
    def outbound(self) -> Outbound:
        from .adapters.outbound import HttpOutbound

        return HttpOutbound()

    def now(self) -> datetime:
        return utc_now()


@functools.cache
def live() -> LiveDeps:
    """The process-wide deps, from the environment; with ``PROMPTFORGE_METER_DIR`` set
    (the scale benchmark), every store, blob and task call is counted (docs/scale.md)."""
    settings = config.load()
    if settings.meter_dir:
        from .adapters.metering import MeteredDeps

        return MeteredDeps(settings)
    return LiveDeps(settings)
