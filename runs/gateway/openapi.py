"""The gateway's routes are plain ASGI, so drf-spectacular cannot see them: describe them here."""

from __future__ import annotations

from typing import Any

ERROR = {"$ref": "#/components/schemas/OpenAIError"}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): {"description": "Error", "content": {"application/json": {"schema": ERROR}}} for c in codes}


def add_gateway_paths(result: dict[str, Any], generator, request, public) -> dict[str, Any]:
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["OpenAIError"] = {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "param": {"type": "string", "nullable": True},
                    "code": {"type": "string", "nullable": True},
                },
            }
        },
    }
    schemas["ChatCompletionRequest"] = {
        "type": "object",
        "required": ["model", "messages"],
        "additionalProperties": True,
        "properties": {
            "model": {"type": "string", "description": "Any litellm model string, e.g. `scripted/default`."},
            "messages": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["role"],
                    "additionalProperties": True,
                    "properties": {
                        "role": {
                            "type": "string",
                            "enum": ["system", "developer", "user", "assistant", "tool", "function"],
                        }
                    },
                },
            },
            "stream": {"type": "boolean"},
            "n": {"type": "integer", "minimum": 1, "maximum": 128},
            "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
            "tools": {"type": "array", "items": {"type": "object"}},
            "tool_choice": {},
            "response_format": {"type": "object"},
            "seed": {"type": "integer"},
            "stream_options": {"type": "object"},
            "jetty": {"type": "object", "description": "Jetty's extension: `task`, `collection`, and agent mode."},
        },
    }
    schemas["ChatCompletion"] = {
        "type": "object",
        "additionalProperties": True,
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string"},
            "choices": {"type": "array", "items": {"type": "object"}},
            "usage": {"type": "object", "nullable": True},
        },
    }
    security: list[dict[str, list[str]]] = [{"bearerAuth": []}]
    result.setdefault("components", {}).setdefault("securitySchemes", {})["bearerAuth"] = {
        "type": "http",
        "scheme": "bearer",
    }
    paths = result.setdefault("paths", {})
    paths["/v1/chat/completions"] = {
        "post": {
            "operationId": "chat_completions_create",
            "summary": "OpenAI-compatible chat completions (passthrough, or agent mode with a `jetty` block)",
            "tags": ["gateway"],
            "security": security,
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ChatCompletionRequest"}}},
            },
            "responses": {
                "200": {
                    "description": "A chat.completion, or an SSE stream of chat.completion.chunk when `stream`",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ChatCompletion"}},
                        "text/event-stream": {"schema": {"type": "string"}},
                    },
                },
                **_errors(400, 401, 404, 413, 429, 502, 504),
            },
        }
    }
    model = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string"},
            "created": {"type": "integer"},
            "owned_by": {"type": "string"},
        },
    }
    paths["/v1/models"] = {
        "get": {
            "operationId": "models_list",
            "summary": "Models this organisation may use",
            "tags": ["gateway"],
            "security": security,
            "responses": {
                "200": {
                    "description": "Model list",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"object": {"type": "string"}, "data": {"type": "array", "items": model}},
                            }
                        }
                    },
                },
                **_errors(401),
            },
        }
    }
    paths["/v1/models/{model}"] = {
        "get": {
            "operationId": "models_retrieve",
            "summary": "One model",
            "tags": ["gateway"],
            "security": security,
            "parameters": [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {
                "200": {"description": "Model", "content": {"application/json": {"schema": model}}},
                **_errors(401, 404),
            },
        }
    }
    return result
