"""Every LLM provider PromptForge serves, written once.

Everything else that names providers derives from :data:`PROVIDERS`: the API schema's
``provider`` enum, the credential behind a pacing budget, the adapter that opens a
provider (``promptforge.adapters.providers.open_provider``), Terraform's secret list (a
test compares them), the table in docs/providers.md (generated from here and checked by a
test: ``python -m tests.providers.render_doc``) and the import probe. Adding a provider is
its adapter module, one entry here, and its tests.

Pure data: naming a module here imports nothing, so the HTTP API can read the registry
without loading any SDK.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProviderSpec:
    """One provider."""

    name: str  # what a job's "provider" says
    module: str  # its adapter, in promptforge.adapters.providers
    opener: str  # the function in ``module`` that opens it for a chunk run
    credential_env: str | None  # the deployment's key for it (a Secret Manager secret of that name)
    wire: str  # the request format on the wire: "openai", "anthropic" or "gemini"
    sdk: str | None  # the SDK module its adapter imports (only when the provider is opened)
    distribution: str | None  # the SDK's line in functions/requirements.txt
    price_key: str | None  # its table in domain/prices.json (None: nothing is priced)
    deployable: bool  # may a Terraform deployment enable it (fake is for local stacks)
    # Has a batch API (economy jobs): "openai", "anthropic" or "gemini" names its format;
    # None: none. openai_compatible has none of its own: an endpoint declares one.
    batch: str | None
    # The row in docs/providers.md:
    client: str
    environment: str
    notes: str = ""


PROVIDERS: tuple[ProviderSpec, ...] = (
    ProviderSpec(
        name="openai",
        module="openai_sdk",
        opener="open_openai",
        credential_env="OPENAI_API_KEY",
        wire="openai",
        sdk="openai",
        distribution="openai",
        price_key="openai",
        deployable=True,
        batch="openai",
        client="official `openai` SDK (`AsyncOpenAI`), chat completions",
        environment="`OPENAI_API_KEY` (required); `OPENAI_BASE_URL` (tests, proxies)",
        notes="`max_tokens` is sent as `max_completion_tokens` (OpenAI's current name; its reasoning models refuse `max_tokens`)",
    ),
    ProviderSpec(
        name="anthropic",
        module="anthropic_sdk",
        opener="open_anthropic",
        credential_env="ANTHROPIC_API_KEY",
        wire="anthropic",
        sdk="anthropic",
        distribution="anthropic",
        price_key="anthropic",
        deployable=True,
        batch="anthropic",
        client="official `anthropic` SDK (`AsyncAnthropic`), messages API",
        environment="`ANTHROPIC_API_KEY` (required); `ANTHROPIC_BASE_URL`",
        notes="`max_tokens` is required by the API: **1024 when the job sets none** (`anthropic_sdk.DEFAULT_MAX_TOKENS`)",
    ),
    ProviderSpec(
        name="gemini",
        module="gemini_sdk",
        opener="open_gemini",
        credential_env="GEMINI_API_KEY",
        wire="gemini",
        sdk="google.genai",
        distribution="google-genai",
        price_key="gemini",
        deployable=True,
        batch="gemini",
        client="`google-genai` SDK, `models.generate_content`",
        environment="Gemini API: `GEMINI_API_KEY`. Vertex AI: `PROMPTFORGE_GEMINI_VERTEX=1`, the project"
        " from `GOOGLE_CLOUD_PROJECT`, `PROMPTFORGE_GEMINI_LOCATION` (default `us-central1`), credentials"
        " from the function's service account. `GEMINI_BASE_URL` (tests)",
    ),
    ProviderSpec(
        name="openai_compatible",
        module="openai_wire",
        opener="open_compatible",
        credential_env=None,  # each endpoint names its own (PROMPTFORGE_ENDPOINTS key_env)
        wire="openai",
        sdk=None,
        distribution=None,
        price_key=None,
        deployable=True,
        batch=None,
        client="PromptForge's small OpenAI wire client (`openai_wire.py`, on its own HTTP/1.1 client `_wire_http.py`)",
        environment="an endpoint the operator configured in `PROMPTFORGE_ENDPOINTS` (below), its key in"
        " the variable the endpoint names",
        notes="vLLM, llama.cpp, Ollama, any OpenAI-style server; params are sent verbatim",
    ),
    ProviderSpec(
        name="fake",
        module="openai_wire",
        opener="open_fake",
        credential_env=None,
        wire="openai",
        sdk=None,
        distribution=None,
        price_key="fake",  # a made-up price, so benchmarks show a cost,
        deployable=False,
        batch="openai",
        client="the same wire client",
        environment="`PROMPTFORGE_FAKE_LLM_URL`",
        notes="the local fake server; dev stacks and benchmarks only",
    ),
)

SDKS: tuple[str, ...] = tuple(dict.fromkeys(p.sdk for p in PROVIDERS if p.sdk))
BY_NAME: dict[str, ProviderSpec] = {p.name: p for p in PROVIDERS}
NAMES: tuple[str, ...] = tuple(p.name for p in PROVIDERS)
# The deployment-wide credentials (Terraform's provider key secrets).
CREDENTIAL_ENVS: tuple[str, ...] = tuple(p.credential_env for p in PROVIDERS if p.credential_env)


def credential_env(name: str) -> str | None:
    """The variable holding a provider's deployment key (None: it has none of its own)."""
    spec = BY_NAME.get(name)
    return spec.credential_env if spec else None
