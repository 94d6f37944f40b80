"""Checks a workflow definition passes before it is stored or run, each problem naming the step and field."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import jsonschema

from .paths import NAME, PathError, check, template_paths
from .registry import step_types

STEP_NAME = re.compile(rf"^{NAME}$")
TOP_LEVEL = {"init_params", "step_configs", "steps", "description", "outputs"}
CONFIG_KEYS = {"type", "params", "retries", "retry_backoff_s", "timeout_s", "continue_on_error", "description"}
JUMPS = {"true_step": "forward or back", "false_step": "forward or back", "loop_to": "back"}
RESERVED = {"init_params", "env", "input", "run"}
MAX_STEPS = 500


@dataclass
class Problem:
    message: str
    param: str


def check_definition(definition: Any) -> list[Problem]:
    """Every problem of a definition (empty when it can run)."""
    if not isinstance(definition, dict):
        return [Problem("a workflow is a JSON object {init_params, step_configs, steps}", "workflow")]
    problems = [Problem(f"unknown top-level key {k!r}", f"workflow.{k}") for k in sorted(set(definition) - TOP_LEVEL)]
    steps, configs = definition.get("steps"), definition.get("step_configs")
    init_params = definition.get("init_params", {})
    if not isinstance(init_params, dict):
        problems.append(Problem("`init_params` must be an object of default values", "workflow.init_params"))
    if not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
        return [*problems, Problem("`steps` must be a non-empty list of step names", "workflow.steps")]
    if len(steps) > MAX_STEPS:
        problems.append(Problem(f"at most {MAX_STEPS} steps", "workflow.steps"))
    if not isinstance(configs, dict):
        return [*problems, Problem("`step_configs` must be an object: step name -> {type, params}", "workflow")]
    seen: set[str] = set()
    for name in steps:
        if name in seen:
            problems.append(Problem(f"step {name!r} is listed twice in `steps`", f"workflow.steps.{name}"))
        seen.add(name)
        if not STEP_NAME.match(name) or name in RESERVED:
            problems.append(Problem(f"step name {name!r} must be a plain name, not {sorted(RESERVED)}", "steps"))
    for name in sorted(set(configs) - set(steps)):
        problems.append(Problem(f"step {name!r} has a config but is not in `steps`", f"workflow.step_configs.{name}"))
    for index, name in enumerate(steps):
        if name not in configs:
            problems.append(Problem(f"step {name!r} has no entry in `step_configs`", f"workflow.step_configs.{name}"))
            continue
        problems += check_step(name, configs[name], steps[:index], steps)
    return problems


def check_step(name: str, config: Any, earlier: list[str], steps: list[str]) -> list[Problem]:
    where = f"workflow.step_configs.{name}"
    if not isinstance(config, dict):
        return [Problem(f"step {name!r}: the config must be an object {{type, params}}", where)]
    problems = [
        Problem(f"step {name!r}: unknown config key {k!r} (params go inside `params`)", f"{where}.{k}")
        for k in sorted(set(config) - CONFIG_KEYS)
    ]
    kind = config.get("type")
    types = step_types()
    if kind not in types:
        known = ", ".join(sorted(types))
        return [*problems, Problem(f"step {name!r}: unknown step type {kind!r} (known: {known})", f"{where}.type")]
    for key, bounds in (("retries", (0, 10)), ("timeout_s", (1, 86400)), ("retry_backoff_s", (0, 600))):
        value = config.get(key)
        if value is not None and (not isinstance(value, int | float) or not bounds[0] <= value <= bounds[1]):
            problems.append(Problem(f"step {name!r}: `{key}` must be a number from {bounds[0]} to {bounds[1]}", where))
    params = config.get("params", {})
    if not isinstance(params, dict):
        return [*problems, Problem(f"step {name!r}: `params` must be an object", f"{where}.params")]
    step = types[kind]
    schema = step.params
    properties: dict[str, Any] = schema.get("properties", {})
    open_schema = schema.get("additionalProperties", False) is not False
    given = set()
    for key, value in params.items():
        field = f"{where}.params.{key}"
        base = key.removesuffix("_path") if key.endswith("_path") else key
        if base not in properties and not open_schema:
            problems.append(
                Problem(f"step {name!r}: unknown param {key!r} for {kind} (has {sorted(properties)})", field)
            )
            continue
        given.add(base)
        if key.endswith("_path"):
            try:
                check(value, set(earlier), set(steps))
            except PathError as exc:
                problems.append(Problem(f"step {name!r}: {key}: {exc}", field))
            continue
        if key not in step.raw_params:
            problems += check_templates(name, key, value, earlier, steps, field)
        if not contains_template(value) and key in properties:
            try:
                jsonschema.validate(value, properties[key])
            except jsonschema.ValidationError as exc:
                problems.append(Problem(f"step {name!r}: {key}: {exc.message}", field))
    for key in schema.get("required", []):
        if key not in given:
            problems.append(Problem(f"step {name!r}: {kind} needs param {key!r} (or {key}_path)", f"{where}.params"))
    for key, direction in JUMPS.items():
        target = params.get(key)
        if key in properties and isinstance(target, str):
            if target not in steps:
                problems.append(Problem(f"step {name!r}: {key} names no step: {target!r}", f"{where}.params.{key}"))
            elif direction == "back" and target not in [*earlier, name]:
                problems.append(
                    Problem(f"step {name!r}: {key} must name this or an earlier step", f"{where}.params.{key}")
                )
    return problems


def outbound_problems(definition: Any) -> list[Problem]:
    """URLs given literally to steps that fetch them, which the outbound policy refuses now (run for a definition
    that passed ``check_definition``). A URL from a path or a template is checked when the step runs."""
    from orgs.outbound import OutboundForbidden, check_url

    problems = []
    types = step_types()
    for name in definition["steps"]:
        config = definition["step_configs"][name]
        params = config.get("params", {})
        for key in types[config["type"]].outbound_params:
            value = params.get(key)
            if f"{key}_path" in params or not isinstance(value, str) or contains_template(value):
                continue
            try:
                check_url(value)
            except OutboundForbidden as exc:
                problems.append(
                    Problem(f"step {name!r}: {key}: {exc.message}", f"workflow.step_configs.{name}.params.{key}")
                )
    return problems


def contains_template(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value
    if isinstance(value, list):
        return any(contains_template(v) for v in value)
    if isinstance(value, dict):
        return any(contains_template(v) for v in value.values())
    return False


def check_templates(name: str, key: str, value: Any, earlier: list[str], steps: list[str], field: str) -> list[Problem]:
    problems = []
    if isinstance(value, str):
        for path in template_paths(value):
            try:
                check(path, set(earlier), set(steps))
            except PathError as exc:
                problems.append(Problem(f"step {name!r}: {key}: {exc}", field))
    elif isinstance(value, list):
        for item in value:
            problems += check_templates(name, key, item, earlier, steps, field)
    elif isinstance(value, dict):
        for item in value.values():
            problems += check_templates(name, key, item, earlier, steps, field)
    return problems
