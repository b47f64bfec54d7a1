"""The local model server: llama.cpp's OpenAI-compatible server (llama-cpp-python) with a
small real model, configured on the local stack as an operator's ``openai_compatible``
endpoint, exactly as a deployment points at its own vLLM or llama.cpp server.

``Stack(..., model_server=True)`` runs it as the stack's ``model-server`` process and
adds the endpoint :data:`ENDPOINT` to ``PROMPTFORGE_ENDPOINTS``; ``make demo-llm`` and
the real-server tests (``tests/llm/``) use it. Its virtual environment and the model come
from ``infra/llm_install.sh`` (``requirements-llm.txt``), installed only for them.

What this server is, as measured here: one request is computed at a time (the server
holds a lock around the model) and the others wait in its queue, unbounded, with no
refusal; about 1 s for a 32-token answer on 2 cores.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_PYTHON = REPO / ".venv-llm" / "bin" / "python"
INSTALL_SCRIPT = REPO / "infra" / "llm_install.sh"
MODEL_FILE = REPO / ".venv-llm" / "model" / "gemma-3-270m-q4_k_m.gguf"

# The endpoint name jobs give, and the model name the server answers to.
ENDPOINT = "llama"
MODEL = "gemma-3-270m"
# Small on purpose: a prompt longer than this is cheap to build, and the KV cache small.
CONTEXT_TOKENS = 512
# Offset from the stack's base port: after the stack's own servers, before the functions.
PORT_OFFSET = 7
HEALTH_PATH = "/v1/models"


class InstallError(RuntimeError):
    """The model server could not be installed; the message says why."""


def install() -> None:
    """Install .venv-llm and the model, or wait for the install already running, or
    return at once when both are there; raises :class:`InstallError` when it fails."""
    done = subprocess.run(["bash", str(INSTALL_SCRIPT)], cwd=REPO, check=False)
    if done.returncode != 0 or not MODEL_FILE.exists():
        raise InstallError(f"{INSTALL_SCRIPT.relative_to(REPO)} failed (exit {done.returncode}); its output is above")


def argv(host: str, port: int) -> list[str]:
    """The server's command line."""
    return [
        str(VENV_PYTHON),
        "-m",
        "llama_cpp.server",
        "--model",
        str(MODEL_FILE),
        "--model_alias",
        MODEL,
        "--host",
        host,
        "--port",
        str(port),
        "--n_ctx",
        str(CONTEXT_TOKENS),
        "--n_threads",
        "2",
        # The model is a base model, not instruction-tuned: under its own chat template
        # (a user turn, then a model turn) it mostly ends at once with an empty answer;
        # the plain "### Instruction / ### Response" layout gets it to write.
        "--chat_format",
        "alpaca",
    ]


def endpoint_config(base_url: str) -> dict[str, str]:
    """The ``PROMPTFORGE_ENDPOINTS`` entry for it: no key, no limits (it queues)."""
    return {"base_url": base_url}
