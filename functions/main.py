"""Cloud Functions entry points, one per function; each only parses and delegates.

Nothing heavy is imported here: the Google Cloud clients and provider code load on
first use, inside the function that needs them, to keep cold starts short.
"""

from __future__ import annotations

from typing import Any

import functions_framework

from promptforge.api import internal, public
from promptforge.api import web as web_page
from promptforge.wiring import live

live()  # reads and checks every setting now: a bad value stops the instance at start, naming it

jobs_init = functions_framework.http(public.endpoint(public.jobs_init, live))
job_status = functions_framework.http(public.endpoint(public.job_status, live))
job_results = functions_framework.http(public.endpoint(public.job_results, live))
job_cancel = functions_framework.http(public.endpoint(public.job_cancel, live))
jobs_list = functions_framework.http(public.endpoint(public.jobs_list, live))
jobs_create = functions_framework.http(public.endpoint(public.jobs_create, live))
job_events = functions_framework.http(public.endpoint(public.job_events, live))
openapi = functions_framework.http(public.endpoint(public.openapi, live))
web = functions_framework.http(web_page.serve)  # the jobs page: GET /ui, /ui/<file>
plan_job = functions_framework.http(public.endpoint(internal.plan_job, live))
process_chunk = functions_framework.http(public.endpoint(internal.process_chunk, live))
watchdog = functions_framework.http(public.endpoint(internal.watchdog, live))
notify_callback = functions_framework.http(public.endpoint(internal.notify_callback, live))


@functions_framework.cloud_event
def on_upload(event: Any) -> None:
    internal.on_upload(event, live())


__all__ = [
    "jobs_init",
    "job_status",
    "job_results",
    "job_cancel",
    "jobs_list",
    "jobs_create",
    "job_events",
    "openapi",
    "web",
    "plan_job",
    "process_chunk",
    "watchdog",
    "notify_callback",
    "on_upload",
]
