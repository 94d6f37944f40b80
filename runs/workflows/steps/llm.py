"""Model steps through litellm: chat, vision, a simple judge, and the document-extraction pattern."""

from __future__ import annotations

import base64
import json
import mimetypes
from typing import Any

from ...llm import ModelError, complete
from ...models import Upload
from ..registry import ANY, BOOLEAN, INTEGER, STRING, STRINGS, Json, Step, StepContext, StepFailed, obj, register
from .data import schema_errors

MODEL_OUT = obj(
    {"text": STRING, "json": ANY, "model": STRING, "usage": {"type": "object"}, "cost_usd": {"type": "number"}},
    ("text", "model", "usage"),
)
SAMPLING = {
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "max_tokens": {"type": "integer", "minimum": 1},
    "seed": INTEGER,
}


def call_model(ctx: StepContext, model: str, messages: list[Json], **params: Any) -> Json:
    """One model call with the org's provider key, recorded as a ``model.call`` event of the workflow run.
    Returns {text, json, model, usage, cost_usd}."""
    try:
        answer = complete(ctx.run.org, model, messages, **params)
    except ModelError as exc:
        raise StepFailed(str(exc)) from None
    ctx.record(
        "model.call",
        answer.model_call(),
        model=model,
        provider=answer.provider,
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
        cost_usd=answer.cost_usd,
        latency_ms=answer.latency_ms,
    )
    return answer.outputs()


def json_format(name: str, schema: Json) -> Json:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}


@register
class LitellmChat(Step):
    type = "litellm_chat"
    category = "models"
    description = "Call any litellm model with a prompt (and optional system message) or full messages."
    params = obj(
        {
            "model": STRING,
            "prompt": STRING,
            "system": STRING,
            "messages": {"type": "array", "items": {"type": "object"}},
            "response_format": {"type": "object"},
            **SAMPLING,
        },
        ("model",),
    )
    outputs = MODEL_OUT

    def run(self, ctx: StepContext, params: Json) -> Json:
        messages = list(params.get("messages") or [])
        if params.get("system"):
            messages.insert(0, {"role": "system", "content": params["system"]})
        if params.get("prompt"):
            messages.append({"role": "user", "content": params["prompt"]})
        if not messages:
            raise StepFailed("give `prompt` or `messages`")
        extra = {k: params.get(k) for k in ("temperature", "max_tokens", "seed", "response_format")}
        return call_model(ctx, params["model"], messages, **extra)


def image_part(ctx: StepContext, image: str) -> Json:
    """An image as an OpenAI content part: a URL as it is, an upload key or file id as a data URL."""
    if image.startswith(("http://", "https://", "data:")):
        return {"type": "image_url", "image_url": {"url": image}}
    upload = Upload.objects.filter(org_id=ctx.run.org_id).filter(key=image).first() or (
        Upload.objects.filter(org_id=ctx.run.org_id, public_id=image).first()
    )
    if upload is None:
        raise StepFailed(f"images: no uploaded file {image!r}")
    with upload.file.open("rb") as handle:
        data = base64.b64encode(handle.read()).decode()
    kind = mimetypes.guess_type(upload.path)[0] or "image/png"
    return {"type": "image_url", "image_url": {"url": f"data:{kind};base64,{data}"}}


@register
class LitellmVision(Step):
    type = "litellm_vision"
    category = "models"
    description = "Ask a vision model about images (URLs, upload keys or file ids) with a prompt."
    params = obj(
        {"model": STRING, "prompt": STRING, "system": STRING, "images": {**STRINGS, "minItems": 1}, **SAMPLING},
        ("model", "prompt", "images"),
    )
    outputs = MODEL_OUT

    def run(self, ctx: StepContext, params: Json) -> Json:
        content = [{"type": "text", "text": params["prompt"]}, *(image_part(ctx, i) for i in params["images"])]
        messages: list[Json] = [{"role": "user", "content": content}]
        if params.get("system"):
            messages.insert(0, {"role": "system", "content": params["system"]})
        extra = {k: params.get(k) for k in ("temperature", "max_tokens", "seed")}
        return call_model(ctx, params["model"], messages, **extra)


JUDGE_PROMPT = """You are a strict evaluator. Judge the content below against the criteria.

Criteria:
{criteria}

Content:
<content>
{content}
</content>

Answer in JSON with `verdict` ({answer}) and a one-paragraph `explanation`."""


@register
class SimpleJudge(Step):
    type = "simple_judge"
    category = "judges"
    description = (
        "An LLM judge: a categorical verdict (`categories`, passing ones in `pass_categories`) or a score on a "
        "scale (`scale_min`..`scale_max`, passing at `pass_threshold`), with an explanation."
    )
    params = obj(
        {
            "model": STRING,
            "content": ANY,
            "criteria": STRING,
            "categories": {**STRINGS, "minItems": 2},
            "pass_categories": STRINGS,
            "scale_min": INTEGER,
            "scale_max": INTEGER,
            "pass_threshold": {"type": "number"},
        },
        ("model", "content", "criteria"),
    )
    outputs = obj(
        {
            "verdict": {"type": ["string", "number"]},
            "score": {"type": ["number", "null"]},
            "passed": BOOLEAN,
            "explanation": STRING,
            "model": STRING,
        },
        ("verdict", "passed", "explanation", "model"),
    )

    def run(self, ctx: StepContext, params: Json) -> Json:
        categories = params.get("categories")
        if categories:
            verdict_schema: Json = {"type": "string", "enum": categories}
            answer = "one of " + ", ".join(categories)
        else:
            low, high = params.get("scale_min", 1), params.get("scale_max", 5)
            if low >= high:
                raise StepFailed("scale_min must be below scale_max")
            verdict_schema = {"type": "integer", "minimum": low, "maximum": high}
            answer = f"an integer from {low} to {high}"
        schema = obj({"verdict": verdict_schema, "explanation": STRING}, ("verdict", "explanation"))
        content = params["content"] if isinstance(params["content"], str) else json.dumps(params["content"], indent=2)
        prompt = JUDGE_PROMPT.format(criteria=params["criteria"], content=content, answer=answer)
        answer_json = call_model(
            ctx, params["model"], [{"role": "user", "content": prompt}], response_format=json_format("verdict", schema)
        )
        verdict = answer_json["json"]
        if not isinstance(verdict, dict) or schema_errors(verdict, schema):
            raise StepFailed(f"the judge's answer does not fit the verdict schema: {answer_json['text'][:300]}")
        if categories:
            passing = params.get("pass_categories") or categories[:1]
            score, passed = None, verdict["verdict"] in passing
        else:
            score = float(verdict["verdict"])
            passed = score >= params.get(
                "pass_threshold", (params.get("scale_max", 5) + params.get("scale_min", 1)) / 2
            )
        return {
            "verdict": verdict["verdict"],
            "score": score,
            "passed": passed,
            "explanation": verdict["explanation"],
            "model": params["model"],
        }


EXTRACT_PROMPT = """Extract the data described by this JSON Schema from the document.

{instructions}

JSON Schema:
{schema}

Document:
<document>
{document}
</document>"""

FIX_PROMPT = """Your JSON does not match the schema. Fix it and answer with the corrected JSON only.

Errors:
{errors}"""


@register
class DocumentExtraction(Step):
    type = "document_extraction"
    category = "models"
    description = (
        "The document-extraction pattern: extract JSON from a document, validate it against a schema, and ask "
        "the model to fix it up to `max_fixes` (at most 3) times; reports every attempt's errors."
    )
    params = obj(
        {
            "model": STRING,
            "document": STRING,
            "schema": {"type": "object"},
            "instructions": STRING,
            "max_fixes": {"type": "integer", "minimum": 0, "maximum": 3},
            "fail_on_invalid": BOOLEAN,
        },
        ("model", "document", "schema"),
    )
    outputs = obj(
        {
            "data": ANY,
            "valid": BOOLEAN,
            "attempts": INTEGER,
            "errors": {"type": "array"},
            "history": {"type": "array"},
        },
        ("data", "valid", "attempts", "errors"),
    )

    def run(self, ctx: StepContext, params: Json) -> Json:
        schema = params["schema"]
        schema_errors({}, schema)  # a broken schema fails here, before any model call
        messages: list[Json] = [
            {
                "role": "user",
                "content": EXTRACT_PROMPT.format(
                    instructions=params.get("instructions", ""),
                    schema=json.dumps(schema, indent=2),
                    document=params["document"],
                ),
            }
        ]
        history: list[Json] = []
        data: Any = None
        errors: list[Json] = []
        for attempt in range(1, params.get("max_fixes", 3) + 2):
            answer = call_model(ctx, params["model"], messages, response_format=json_format("extraction", schema))
            data = answer["json"]
            errors = (
                schema_errors(data, schema)
                if answer["json"] is not None
                else [{"path": "/", "message": "the answer is not JSON"}]
            )
            history.append({"attempt": attempt, "errors": errors})
            if not errors:
                break
            messages += [
                {"role": "assistant", "content": answer["text"]},
                {
                    "role": "user",
                    "content": FIX_PROMPT.format(errors="\n".join(f"{e['path']}: {e['message']}" for e in errors)),
                },
            ]
        if errors and params.get("fail_on_invalid"):
            raise StepFailed(f"still {len(errors)} schema error(s) after {len(history)} attempts")
        return {"data": data, "valid": not errors, "attempts": len(history), "errors": errors, "history": history}
