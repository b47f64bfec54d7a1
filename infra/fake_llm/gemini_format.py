"""A minimal Gemini API (REST) wire format for the fake LLM, enough for ``google-genai``.

``POST /v1beta/models/{model}:generateContent`` with ``x-goog-api-key`` (or ``?key=``);
errors are ``{"error": {code, message, status, details}}`` with Google's status names;
a 429 carries a ``google.rpc.RetryInfo`` ``retryDelay`` in its details, as Gemini's do,
and no rate-limit headers (Gemini sends none).

Field names are accepted in lowerCamelCase and in snake_case, as Google's JSON parser
does; unknown fields are refused with Google's wording. The reply is the one the OpenAI
route gives to the same conversation: ``systemInstruction`` becomes a leading ``system``
message, ``model`` turns ``assistant`` ones, and a turn of one text part a plain string.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .limits import LimitView
from .replies import Completion
from .wire import ErrorKind, Prompt, WireError, is_int

__all__ = ["GeminiDialect", "GeminiError", "error_for", "filtered_body", "parse_generate_request", "response_body"]

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    504: "DEADLINE_EXCEEDED",
}
_TOP_FIELDS = {
    "contents",
    "systemInstruction",
    "generationConfig",
    "safetySettings",
    "tools",
    "toolConfig",
    "cachedContent",
    "labels",
}
_CONFIG_FIELDS = {
    "temperature",
    "topP",
    "topK",
    "candidateCount",
    "maxOutputTokens",
    "stopSequences",
    "presencePenalty",
    "frequencyPenalty",
    "seed",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseLogprobs",
    "logprobs",
    "thinkingConfig",
    "responseModalities",
    "mediaResolution",
}
_PART_FIELDS = {"text", "inlineData", "fileData", "functionCall", "functionResponse", "thought", "thoughtSignature"}


class GeminiError(WireError):
    """An error in Google's shape."""

    def __init__(self, status: int, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details

    def response(self) -> JSONResponse:
        error: dict[str, Any] = {
            "code": self.status,
            "message": self.message,
            "status": _STATUS_NAMES.get(self.status, "UNKNOWN"),
        }
        if self.details:
            error["details"] = self.details
        return JSONResponse({"error": error}, status_code=self.status)

    def rpc_status(self) -> dict[str, Any]:
        """The error as a ``google.rpc.Status`` (a gRPC code), what a batch's inlined response carries."""
        return {"code": _GRPC_CODES.get(self.status, 2), "message": self.message}


# HTTP status -> gRPC code, as Google maps them (2 is UNKNOWN).
_GRPC_CODES = {400: 3, 403: 7, 404: 5, 429: 8, 500: 13, 503: 14, 504: 4}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def _fields(obj: dict[str, Any], known: set[str], where: str) -> dict[str, Any]:
    """``obj`` with camelCase keys; unknown ones refused as Google refuses them."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        camel = _camel(key)
        if camel not in known:
            at = f" at '{where}'" if where else ""
            raise GeminiError(400, f'Invalid JSON payload received. Unknown name "{key}"{at}: Cannot find field.')
        out[camel] = value
    return out


def _turn_content(parts: list[dict[str, Any]]) -> Any:
    if len(parts) == 1 and isinstance(parts[0].get("text"), str):
        return parts[0]["text"]
    return [{"type": "text", "text": p["text"]} if isinstance(p.get("text"), str) else p for p in parts]


def _parts(where: str, content: Any) -> list[dict[str, Any]]:
    if not isinstance(content, dict):
        raise GeminiError(400, f"Invalid value at '{where}': expected an object")
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        raise GeminiError(400, f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.")
    return [_fields(p, _PART_FIELDS, f"{where}.parts[{j}]") if isinstance(p, dict) else {} for j, p in enumerate(parts)]


def parse_generate_request(model: str, body: Any) -> Prompt:
    """Validate a decoded generateContent body; raise :class:`GeminiError` (400)."""
    if not isinstance(body, dict):
        raise GeminiError(400, "Invalid JSON payload received. Expected an object.")
    body = _fields(body, _TOP_FIELDS, "")
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise GeminiError(400, "* GenerateContentRequest.contents: contents is not specified")
    messages: list[dict[str, Any]] = []
    system = body.get("systemInstruction")
    if system is not None:
        parts = _parts("system_instruction", system)
        messages.append({"role": "system", "content": "\n".join(p.get("text", "") for p in parts)})
    for i, content in enumerate(contents):
        role = content.get("role", "user") if isinstance(content, dict) else None
        if role not in ("user", "model"):
            raise GeminiError(400, f"Please use a valid role: user, model. (contents[{i}])")
        messages.append(
            {"role": "assistant" if role == "model" else "user", "content": _turn_content(_parts(f"contents[{i}]", content))}
        )
    config = _fields(body.get("generationConfig") or {}, _CONFIG_FIELDS, "generation_config")
    max_tokens = config.get("maxOutputTokens")
    if max_tokens is not None and (not is_int(max_tokens) or max_tokens < 1):
        raise GeminiError(400, "* GenerateContentRequest.generation_config.max_output_tokens: must be positive")
    stop = config.get("stopSequences")
    if stop is not None and (not isinstance(stop, list) or not all(isinstance(s, str) for s in stop)):
        raise GeminiError(400, "Invalid value at 'generation_config.stop_sequences': expected a list of strings")
    n = config.get("candidateCount") or 1
    if not is_int(n) or n < 1:
        raise GeminiError(400, "* GenerateContentRequest.generation_config.candidate_count: must be positive")
    return Prompt(model=model, messages=messages, max_tokens=max_tokens, stop=stop, n=n)


def _model_of(request: Request) -> str:
    return str(request.path_params.get("model", "")).removeprefix("models/")


_ERRORS: dict[str, tuple[int, str]] = {
    "rate_limit_requests": (
        429,
        "You exceeded your current quota: {limit} requests per minute for model {model}. Please retry in {wait}.",
    ),
    "rate_limit_tokens": (
        429,
        "You exceeded your current quota: {limit} input tokens per minute for model {model}. Please retry in {wait}.",
    ),
    "request_too_large": (429, "The request ({requested} tokens) exceeds the quota of {limit} tokens per minute."),
    "context_length": (400, "The input token count ({total}) exceeds the maximum number of tokens allowed ({window})."),
    "server_error": (
        500,
        "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting",
    ),
    "timeout": (504, "The request timed out. Please try again."),
}


def _duration(seconds: float) -> str:
    return f"{round(seconds, 3):g}s"


class GeminiDialect:
    """``models/{model}:generateContent`` as the Gemini API serves it."""

    endpoint = "generate_content"
    processing_ms_header: str | None = None

    def authenticate(self, request: Request) -> WireError | None:
        if request.headers.get("x-goog-api-key", "").strip() or request.query_params.get("key", "").strip():
            return None
        return GeminiError(
            403,
            "Method doesn't allow unregistered callers (callers without established identity). "
            "Please use API Key or other form of API consumer identity to call this API.",
        )

    def model_hint(self, request: Request, body: Any) -> str | None:
        return _model_of(request) or None

    def unparseable(self) -> WireError:
        return GeminiError(400, "Invalid JSON payload received.")

    def validate(self, request: Request, body: Any) -> Prompt:
        return parse_generate_request(_model_of(request), body)

    def render(self, prompt: Prompt, completion: Completion, headers: Mapping[str, str]) -> Response:
        return JSONResponse(response_body(prompt, completion), headers=headers)

    def content_filtered(self, prompt: Prompt, prompt_tokens: int, headers: Mapping[str, str]) -> Response:
        """The candidate stopped by the safety filters: ``finishReason`` ``SAFETY``, no content."""
        return JSONResponse(filtered_body(prompt, prompt_tokens), headers=headers)

    def error(self, kind: ErrorKind, info: Mapping[str, Any], headers: Mapping[str, str]) -> Response:
        response = error_for(kind, info).response()
        response.headers.update(headers)
        return response

    def rate_headers(self, view: LimitView, retry_after_s: float | None) -> dict[str, str]:
        # Gemini reports neither limits nor retry-after in headers (see error()).
        return {}


def response_body(prompt: Prompt, completion: Completion) -> dict[str, Any]:
    """The GenerateContentResponse answering ``prompt`` (a batch's inlined response carries it too)."""
    finish = "MAX_TOKENS" if completion.finish_reason == "length" else "STOP"
    candidates = [
        {"content": {"parts": [{"text": completion.text}], "role": "model"}, "finishReason": finish, "index": i}
        for i in range(prompt.n)
    ]
    return _response(prompt, candidates, completion.prompt_tokens, completion.completion_tokens * prompt.n)


def filtered_body(prompt: Prompt, prompt_tokens: int) -> dict[str, Any]:
    """The GenerateContentResponse of a candidate the safety filters stopped."""
    rating = {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}
    candidates = [{"finishReason": "SAFETY", "index": i, "safetyRatings": [rating]} for i in range(prompt.n)]
    return _response(prompt, candidates, prompt_tokens, None)


def error_for(kind: ErrorKind, info: Mapping[str, Any]) -> GeminiError:
    """The error of the given kind in Google's words (see :data:`~.wire.ErrorKind` for ``info``)."""
    status, template = _ERRORS[kind]
    wait = info.get("retry_after_s")
    details = None
    if wait is not None:
        details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": _duration(wait)}]
    return GeminiError(status, template.format(**info, wait=_duration(wait or 0.0)), details)


def _response(
    prompt: Prompt, candidates: list[dict[str, Any]], prompt_tokens: int, completion_tokens: int | None
) -> dict[str, Any]:
    usage: dict[str, Any] = {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens + (completion_tokens or 0)}
    if completion_tokens is not None:
        usage["candidatesTokenCount"] = completion_tokens
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt_tokens}]
    return {
        "candidates": candidates,
        "usageMetadata": usage,
        "modelVersion": prompt.model,
        "responseId": secrets.token_urlsafe(16),
    }
