"""Path expressions and ``{{ … }}`` templates: how a workflow step reads what came before it.

A path is dot-separated names, each followed by any number of ``[n]`` (index, negative from the end) or ``[*]``
(every item: the rest of the path is applied to each, giving a list). It starts at ``init_params``, ``env`` or
an earlier step's name, then ``inputs`` or ``outputs``: ``summarise.outputs.files[0].path``,
``split.outputs.items[*].text``, ``init_params.topic``, ``env.REGION``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

NAME = r"[A-Za-z_][A-Za-z0-9_-]*"
SEGMENT = re.compile(rf"({NAME})((?:\[(?:-?\d+|\*)\])*)")
INDEX = re.compile(r"\[(-?\d+|\*)\]")
TEMPLATE = re.compile(r"{{\s*(.+?)\s*}}")
ROOTS = ("init_params", "env")
STEP_PARTS = ("inputs", "outputs")
EVERY = "*"


class PathError(ValueError):
    """A path that cannot be read: malformed, or naming something that is not there."""


@dataclass(frozen=True)
class Path:
    text: str
    parts: tuple[str | int, ...]  # names, indexes, and EVERY

    @property
    def root(self) -> str:
        return str(self.parts[0])


def parse(text: str) -> Path:
    """Parse a path, or raise PathError saying what is wrong with it."""
    if not isinstance(text, str) or not text.strip():
        raise PathError("a path must be a non-empty string")
    parts: list[str | int] = []
    for raw in text.strip().split("."):
        match = SEGMENT.fullmatch(raw)
        if match is None:
            raise PathError(f"bad path {text!r}: cannot read {raw!r} (a name, then optional [n] or [*])")
        parts.append(match.group(1))
        for index in INDEX.findall(match.group(2)):
            parts.append(EVERY if index == EVERY else int(index))
    return Path(text.strip(), tuple(parts))


def check(text: str, earlier_steps: set[str] | list[str], all_steps: set[str] | list[str] | tuple = ()) -> Path:
    """Check a path statically: well formed, and reading only init_params, env or an earlier step's inputs or
    outputs. Raises PathError naming the problem."""
    path = parse(text)
    root = path.parts[0]
    if root in ROOTS:
        if root == "env" and (len(path.parts) != 2 or not isinstance(path.parts[1], str)):
            raise PathError(f"bad path {text!r}: env paths name one variable, like env.REGION")
        return path
    if root not in earlier_steps:
        if root in all_steps:
            raise PathError(f"bad path {text!r}: step {root!r} does not run before this one (forward reference)")
        raise PathError(f"bad path {text!r}: {root!r} is not init_params, env or an earlier step")
    if len(path.parts) < 2 or path.parts[1] not in STEP_PARTS:
        raise PathError(f"bad path {text!r}: after a step name comes `inputs` or `outputs`")
    return path


def _walk(value: Any, parts: tuple[str | int, ...], path: Path, depth: int) -> Any:
    for i, part in enumerate(parts):
        where = ".".join(str(p) for p in path.parts[: depth + i + 1])
        if part == EVERY:
            if not isinstance(value, list):
                raise PathError(f"{path.text}: [*] needs a list at {where!r}, found {type(value).__name__}")
            return [_walk(item, parts[i + 1 :], path, depth + i + 1) for item in value]
        if isinstance(part, int):
            if not isinstance(value, list):
                raise PathError(f"{path.text}: [{part}] needs a list at {where!r}, found {type(value).__name__}")
            if not -len(value) <= part < len(value):
                raise PathError(f"{path.text}: index {part} is out of range (the list has {len(value)} items)")
            value = value[part]
            continue
        if not isinstance(value, dict):
            raise PathError(f"{path.text}: cannot read {part!r} from {type(value).__name__} at {where!r}")
        if part not in value:
            raise PathError(f"{path.text}: no {part!r} at {where!r}")
        value = value[part]
    return value


def resolve(text: str | Path, context: dict[str, Any]) -> Any:
    """The value a path names in the context ({"init_params": …, "env": …, step name: {inputs, outputs}})."""
    path = text if isinstance(text, Path) else parse(text)
    if path.root not in context:
        raise PathError(f"{path.text}: nothing called {path.root!r} has run")
    return _walk(context[path.root], path.parts[1:], path, 0)


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def render(template: str, context: dict[str, Any]) -> str:
    """Fill every ``{{ path }}`` in a text; strings go in as they are, anything else as JSON."""
    return TEMPLATE.sub(lambda m: as_text(resolve(m.group(1), context)), template)


def template_paths(template: str) -> list[str]:
    return TEMPLATE.findall(template)


def resolve_params(params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """A step's parameters at run time: each ``foo_path`` read into ``foo`` (the path wins over a literal ``foo``),
    and ``{{ … }}`` filled in every string, however deep."""
    resolved: dict[str, Any] = {}
    for key, value in params.items():
        if key.endswith("_path"):
            continue
        resolved[key] = fill(value, context)
    for key, value in params.items():
        if key.endswith("_path"):
            resolved[key.removesuffix("_path")] = resolve(value, context)
    return resolved


def fill(value: Any, context: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return render(value, context) if "{{" in value else value
    if isinstance(value, list):
        return [fill(v, context) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, context) for k, v in value.items()}
    return value
