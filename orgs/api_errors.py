"""Errors in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, for every API surface."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.parsers import BaseParser
from rest_framework.response import Response

logger = logging.getLogger(__name__)

DEFAULT_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "upstream_error",
    503: "server_error",
    504: "timeout_error",
}


def error_body(
    status: int, message: str, *, type: str | None = None, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": type or DEFAULT_TYPES.get(status, "api_error"),
            "param": param,
            "code": code,
        }
    }


def error_response(
    status: int,
    message: str,
    *,
    type: str | None = None,
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    return JsonResponse(error_body(status, message, type=type, code=code, param=param), status=status, headers=headers)


class ApiError(Exception):
    """Raised anywhere under an API view to end the request with an OpenAI-shaped error."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.type = status, message, code, param, type
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, type=self.type, code=self.code, param=self.param)

    def response(self) -> JsonResponse:
        return JsonResponse(self.body(), status=self.status, headers=self.headers)


def invalid(message: str, param: str | None = None, code: str = "invalid_value") -> ApiError:
    """A 400 for a bad value, naming the field."""
    return ApiError(400, message, code=code, param=param)


def json_object(request: Any) -> dict[str, Any]:
    """A DRF request's body, which must be a JSON object (400 otherwise)."""
    if not isinstance(request.data, dict):
        raise invalid("The body must be a JSON object")
    return request.data


def _drf_code(exc: drf_exceptions.APIException) -> str:
    codes = exc.get_codes()
    if isinstance(codes, str):
        return codes
    return "invalid_request"


def _drf_message(detail: Any) -> tuple[str, str | None]:
    """Flatten DRF's nested error detail into one sentence and the first offending parameter."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            inner, _ = _drf_message(value)
            return (f"{key}: {inner}" if key != "non_field_errors" else inner), str(key)
    if isinstance(detail, list) and detail:
        return _drf_message(detail[0])
    return str(detail), None


def drf_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    # Imported here: DRF's views read DEFAULT_PARSER_CLASSES, which names this module, as they load.
    from rest_framework.views import exception_handler

    if isinstance(exc, ApiError):
        return Response(exc.body(), status=exc.status, headers=exc.headers)
    response = exception_handler(exc, context)
    if response is None:
        return None
    detail = exc.detail if isinstance(exc, drf_exceptions.APIException) else response.data
    message, param = _drf_message(detail)
    code = _drf_code(exc) if isinstance(exc, drf_exceptions.APIException) else None
    if isinstance(exc, (drf_exceptions.NotAuthenticated, drf_exceptions.AuthenticationFailed)):
        response.status_code, code = 401, "invalid_api_key"
    if response.status_code == 404:
        message, code = "Not found", "not_found"
    response.data = error_body(response.status_code, message, code=code, param=param)
    return response


def is_api_path(path: str) -> bool:
    return path.startswith("/v1/") or path.startswith("/api/")


class ApiErrorMiddleware:
    """Under ``/v1`` and ``/api``, Django's own HTML 404/500 pages become OpenAI-shaped JSON errors."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if is_api_path(request.path) and response.status_code >= 400 and not _is_json(response):
            message = {404: f"Unknown URL: {request.method} {request.path}", 405: "Method not allowed"}.get(
                response.status_code, "The server could not handle this request"
            )
            return error_response(response.status_code, message)
        return response

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if isinstance(exc, ApiError):
            return exc.response()
        if is_api_path(request.path):
            logger.exception("unhandled error on %s", request.path)
            return error_response(500, "Internal error; it has been logged", code="internal_error")
        return None


def _is_json(response: HttpResponse) -> bool:
    return response.get("Content-Type", "").startswith("application/json")


# A JSON string escape of a UTF-16 surrogate; json.loads pairs them up, and any left alone cannot be stored or sent.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_NUL_ESCAPE = re.compile(rb"\\u0000")


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


MAX_JSON_DEPTH = 128


def _deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        if children and depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def load_json(raw: bytes | str, what: str = "the JSON body of your request", *, allow_nul: bool = False) -> Any:
    """Parse JSON from a client: any defect is a 400, never an internal error further on. NUL characters are one
    (PostgreSQL cannot store them) unless ``allow_nul``: the gateway forwards them and its recorder replaces them,
    and trajectories ingested from elsewhere keep them as U+FFFD."""
    try:
        value = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"We could not parse {what}: {exc}", code="invalid_json")
    except RecursionError:
        raise ApiError(400, f"We could not parse {what}: it nests deeper than {MAX_JSON_DEPTH}", code="invalid_json")
    if _deeper_than(value, MAX_JSON_DEPTH):  # what parses may still be too deep for the code that walks it
        raise ApiError(400, f"We could not parse {what}: it nests deeper than {MAX_JSON_DEPTH}", code="invalid_json")
    text = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(value, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise ApiError(400, f"We could not parse {what}: it holds a lone UTF-16 surrogate", code="invalid_json")
    if not allow_nul and _NUL_ESCAPE.search(text) and holds_nul(value):
        raise ApiError(400, f"{what[0].upper()}{what[1:]} holds a NUL character (\\u0000)", code="invalid_value")
    return value


def holds_nul(value: Any) -> bool:
    """Whether a NUL character is anywhere in the value (keys included)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(holds_nul(v) for v in value)
    if isinstance(value, dict):
        return any(holds_nul(k) or holds_nul(v) for k, v in value.items())
    return False


def parse_json_body(raw: bytes) -> dict[str, Any]:
    """A gateway request's body: NUL characters pass (they go to the provider; the recorder replaces them)."""
    body = load_json(raw, allow_nul=True)
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object", code="invalid_json")
    return body


class JSONParser(BaseParser):
    """DRF's JSON bodies, held to the gateway's size limit and parsed as strictly as its own."""

    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.JETTY_MAX_BODY_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise ApiError(413, f"Request body is larger than the limit of {limit} bytes", code="request_too_large")
        return load_json(raw)


# The errors any API operation may answer with, and those only a request with a body may.
EVERY_OPERATION_ERRORS = {
    400: "Invalid request",
    401: "Missing, wrong or revoked API key",
    403: "Not allowed for this token",
    404: "Not found (or another organisation's)",
}
BODY_ERRORS = {409: "Conflicts with what exists", 413: "Body over the size limit", 415: "Unsupported media type"}


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular hook: document the OpenAI-shaped errors every operation can answer with."""
    content = {"application/json": {"schema": {"$ref": "#/components/schemas/OpenAIError"}}}
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            errors = EVERY_OPERATION_ERRORS | (BODY_ERRORS if method in ("post", "put", "patch") else {})
            for code, description in errors.items():
                operation["responses"].setdefault(str(code), {"description": description, "content": content})
    return result
