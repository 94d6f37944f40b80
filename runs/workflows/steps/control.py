"""Control flow: branch on a condition, loop back with a cap. Fan-out and fan-in live with the agent steps."""

from __future__ import annotations

import operator
from typing import Any

from ..registry import ANY, BOOLEAN, INTEGER, STRING, Json, Jump, Step, StepContext, StepFailed, obj, register

OPERATORS = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
    "contains": lambda a, b: b in a,
    "in": lambda a, b: a in b,
}
CONDITION = {
    "condition": ANY,
    "left": ANY,
    "operator": {"enum": sorted(OPERATORS)},
    "right": ANY,
}


def truth(params: Json, name: str = "condition") -> bool:
    """A condition: `left operator right` when an operator is given, else the truth of `condition`."""
    if "operator" in params:
        try:
            return bool(OPERATORS[params["operator"]](params.get("left"), params.get("right")))
        except TypeError as exc:
            raise StepFailed(f"cannot compare {params.get('left')!r} and {params.get('right')!r}: {exc}") from None
    value: Any = params.get(name)
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "no", "none", "null")
    return bool(value)


@register
class ConditionalBranch(Step):
    type = "conditional_branch"
    category = "control"
    description = (
        "Go to `true_step` or `false_step` (by name; leave one out to go on to the next step) depending on "
        "`condition`, or on `left operator right`."
    )
    params = obj({**CONDITION, "true_step": STRING, "false_step": STRING})
    outputs = obj({"result": BOOLEAN, "next": {"type": ["string", "null"]}}, ("result", "next"))

    def run(self, ctx: StepContext, params: Json) -> Jump:
        result = truth(params)
        target = params.get("true_step") if result else params.get("false_step")
        return Jump({"result": result, "next": target}, target)


@register
class LoopCounter(Step):
    type = "loop_counter"
    category = "control"
    description = (
        "Loop: go back to `loop_to` until the step has been reached `max` times or `until` is true. The cap is "
        "required, so a loop always ends."
    )
    params = obj(
        {
            "max": {"type": "integer", "minimum": 1, "maximum": 1000},
            "loop_to": STRING,
            "until": ANY,
            "left": ANY,
            "operator": CONDITION["operator"],
            "right": ANY,
        },
        ("max", "loop_to"),
    )
    outputs = obj({"count": INTEGER, "looping": BOOLEAN, "capped": BOOLEAN}, ("count", "looping", "capped"))

    def run(self, ctx: StepContext, params: Json) -> Jump:
        count = ctx.visit
        done = ("until" in params or "operator" in params) and truth(params, "until")
        capped = count >= params["max"]
        looping = not done and not capped
        return Jump(
            {"count": count, "looping": looping, "capped": capped and not done}, params["loop_to"] if looping else None
        )
