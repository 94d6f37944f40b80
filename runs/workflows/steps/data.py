"""Data steps: reshape JSON with path expressions, validate JSON against a schema."""

from __future__ import annotations

import json
from typing import Any

import jsonschema

from ..paths import PathError, resolve
from ..registry import ANY, BOOLEAN, INTEGER, STRING, Json, Step, StepContext, StepFailed, obj, register


def parsed(value: Any, parse: bool) -> Any:
    if parse and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise StepFailed(f"input is not valid JSON: {exc}") from None
    return value


@register
class JsonTransform(Step):
    type = "json_transform"
    category = "data"
    description = (
        "Build a new JSON value from `input`: `mapping` gives each output key a path read from `input` "
        "(`input.items[*].name`); without a mapping, `input` itself (parsed from text when `parse`)."
    )
    params = obj({"input": ANY, "mapping": {"type": "object", "additionalProperties": STRING}, "parse": BOOLEAN})
    outputs = obj({"result": ANY}, ("result",))

    def run(self, ctx: StepContext, params: Json) -> Json:
        data = parsed(params.get("input"), params.get("parse", True))
        mapping = params.get("mapping")
        if not mapping:
            return {"result": data}
        try:
            return {"result": {key: resolve(path, {"input": data}) for key, path in mapping.items()}}
        except PathError as exc:
            raise StepFailed(f"mapping: {exc}") from None


def schema_errors(data: Any, schema: Json) -> list[Json]:
    """Every way the data breaks the schema, as {path, message}; raises StepFailed for a broken schema."""
    try:
        validator = jsonschema.Draft202012Validator(schema)
        validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise StepFailed(f"schema: {exc.message}") from None
    return [
        {"path": "/" + "/".join(str(p) for p in error.absolute_path), "message": error.message}
        for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))
    ]


@register
class JsonSchemaValidate(Step):
    type = "json_schema_validate"
    category = "data"
    description = "Check JSON (or JSON text) against a JSON Schema; lists every error. Fails only if asked to."
    params = obj({"data": ANY, "schema": {"type": "object"}, "parse": BOOLEAN, "fail_on_invalid": BOOLEAN}, ("schema",))
    outputs = obj(
        {
            "valid": BOOLEAN,
            "errors": {"type": "array", "items": obj({"path": STRING, "message": STRING})},
            "error_count": INTEGER,
            "data": ANY,
        },
        ("valid", "errors", "error_count"),
    )

    def run(self, ctx: StepContext, params: Json) -> Json:
        try:
            data = parsed(params.get("data"), params.get("parse", True))
        except StepFailed as exc:
            if params.get("fail_on_invalid"):
                raise
            return {"valid": False, "errors": [{"path": "/", "message": str(exc)}], "data": None}
        errors = schema_errors(data, params["schema"])
        if errors and params.get("fail_on_invalid"):
            raise StepFailed(f"{len(errors)} schema error(s), first: {errors[0]['path']}: {errors[0]['message']}")
        return {"valid": not errors, "errors": errors, "data": data, "error_count": len(errors)}
