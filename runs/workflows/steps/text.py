"""Text steps: echo, template, concatenate, split."""

from __future__ import annotations

from ..paths import as_text, render
from ..registry import ANY, BOOLEAN, INTEGER, STRING, Json, Step, StepContext, obj, register

TEXT_OUT = obj({"text": STRING}, ("text",))


@register
class TextEcho(Step):
    type = "text_echo"
    category = "text"
    description = "Pass a text through unchanged (handy to name a value, or to fill a template once)."
    params = obj({"text": STRING}, ("text",))
    outputs = TEXT_OUT

    def run(self, ctx: StepContext, params: Json) -> Json:
        return {"text": params["text"]}


@register
class TextTemplate(Step):
    type = "text_template"
    category = "text"
    description = "Fill `{{ path }}` placeholders from earlier steps, init_params, env and the given variables."
    params = obj({"template": STRING, "variables": {"type": "object"}}, ("template",))
    outputs = TEXT_OUT
    raw_params = ("template",)

    def run(self, ctx: StepContext, params: Json) -> Json:
        return {"text": render(params["template"], {**ctx.values, **params.get("variables", {})})}


@register
class TextConcatenate(Step):
    type = "text_concatenate"
    category = "text"
    description = "Join texts (anything else as JSON) with a separator."
    params = obj({"texts": {"type": "array", "items": ANY}, "separator": STRING}, ("texts",))
    outputs = TEXT_OUT

    def run(self, ctx: StepContext, params: Json) -> Json:
        return {"text": params.get("separator", "\n").join(as_text(t) for t in params["texts"])}


@register
class TextSplit(Step):
    type = "text_split"
    category = "text"
    description = "Split a text into items (by a separator, default a newline), dropping empty ones."
    params = obj(
        {
            "text": STRING,
            "separator": {"type": "string", "minLength": 1},
            "strip": BOOLEAN,
            "drop_empty": BOOLEAN,
            "max_items": {"type": "integer", "minimum": 1},
        },
        ("text",),
    )
    outputs = obj(
        {"items": {"type": "array", "items": obj({"text": STRING, "index": INTEGER})}, "count": INTEGER},
        ("items", "count"),
    )

    def run(self, ctx: StepContext, params: Json) -> Json:
        pieces = params["text"].split(params.get("separator", "\n"))
        if params.get("strip", True):
            pieces = [p.strip() for p in pieces]
        if params.get("drop_empty", True):
            pieces = [p for p in pieces if p]
        if params.get("max_items"):
            pieces = pieces[: params["max_items"]]
        return {"items": [{"text": p, "index": i} for i, p in enumerate(pieces)], "count": len(pieces)}
