"""How the OpenAI wire client reads the error bodies of self-hosted OpenAI-compatible
servers: a prompt over the model's context is ``context_length_exceeded`` and never
retried, whatever words the server uses; the server's message is never quoted."""

from __future__ import annotations

import json

import pytest

from promptforge.adapters.providers.openai_wire import error_for_status

PROMPT = "the secret prompt text"

# Captured from llama-cpp-python 0.3.36's server (requirements-llm.txt) with n_ctx 512.
LLAMA_CPP_PYTHON = {
    "error": {
        "message": "This model's maximum context length is 512 tokens. However, you requested 742 tokens "
        "(710 in the messages, 32 in the completion). Please reduce the length of the messages or completion.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}
# llama.cpp's own server (llama-server): a numeric code, the kind in `type`.
LLAMA_SERVER = {
    "error": {
        "code": 400,
        "message": "request (9412 tokens) exceeds the available context size (8192 tokens), try increasing it",
        "type": "exceed_context_size_error",
        "n_prompt_tokens": 9412,
        "n_ctx": 8192,
    }
}
# vLLM: a numeric code and a generic type; only the message says what happened.
VLLM = {
    "error": {
        "message": "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens "
        f"in the messages ({PROMPT}).",
        "type": "BadRequestError",
        "param": None,
        "code": 400,
    }
}


@pytest.mark.parametrize(
    ("body", "shown"),
    [(LLAMA_CPP_PYTHON, "context_length_exceeded"), (LLAMA_SERVER, "exceed_context_size_error"), (VLLM, "BadRequestError")],
    ids=["llama-cpp-python", "llama-server", "vllm"],
)
def test_an_over_long_prompt_is_context_length_exceeded_and_not_retried(body: dict[str, object], shown: str) -> None:
    error = error_for_status(400, {}, json.dumps(body).encode())
    assert (error.code, error.retryable) == ("context_length_exceeded", False)
    assert error.detail == f"provider answered HTTP 400 ({shown})"
    assert PROMPT not in error.detail and "maximum" not in error.detail


def test_another_400_of_those_servers_stays_invalid_request() -> None:
    body = {"error": {"code": 400, "message": f"unknown field in {PROMPT}", "type": "invalid_request_error"}}
    error = error_for_status(400, {}, json.dumps(body).encode())
    assert (error.code, error.retryable) == ("invalid_request", False)
    assert error.detail == "provider answered HTTP 400 (invalid_request_error)"


def test_a_free_text_code_is_searched_but_not_quoted() -> None:
    body = {"error": {"code": f"context_length exceeded by {PROMPT}"}}
    error = error_for_status(400, {}, json.dumps(body).encode())
    assert (error.code, error.detail) == ("context_length_exceeded", "provider answered HTTP 400")
