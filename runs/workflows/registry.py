"""The step registry: every step type is a class with a params schema, an outputs schema and ``run()``."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import jsonschema

from trajectories.actions import EventRecord
from trajectories.models import Run

from ..timeline import append_with_usage

Json = dict[str, Any]


class StepFailed(Exception):
    """The step cannot succeed with these inputs (a user error): the workflow fails at this step."""


@dataclass
class Jump:
    """Outputs, and the step to continue at instead of the next one (None: the next one)."""

    outputs: Json
    to: str | None


@dataclass
class Wait:
    """The step started work elsewhere (child runs) and must be called again until it is done."""

    state: Json = field(default_factory=dict)


@dataclass
class StepContext:
    """What a step may use while it runs: the workflow run, what earlier steps produced, and its own state."""

    run: Run
    step_name: str
    visit: int
    values: Json  # {"init_params": …, "env": …, step name: {"inputs", "outputs"}}
    state: Json  # kept between calls of a waiting step, and across a crash
    secrets: dict[str, str]
    env: dict[str, str]

    @property
    def key(self) -> str:
        """A key unique to this pass over this step: what side effects are made idempotent with."""
        return f"{self.run.public_id}:{self.step_name}:{self.visit}"

    def record(self, kind: str, payload: Json, **columns: Any) -> None:
        record = EventRecord(kind=kind, ts=time.time(), payload={"step": self.step_name, **payload}, **columns)
        record.span = self.step_name
        append_with_usage(self.run.pk, [record])


class Step(ABC):
    """A step type. Subclasses set ``type``, ``description``, ``params`` and ``outputs`` (JSON schemas of
    objects) and implement ``run``. ``raw_params`` are handed over without filling ``{{ … }}`` in them."""

    type: ClassVar[str]
    description: ClassVar[str]
    params: ClassVar[Json]
    outputs: ClassVar[Json]
    raw_params: ClassVar[tuple[str, ...]] = ()
    # Params holding a URL the server will fetch: checked against the outbound policy when given literally.
    outbound_params: ClassVar[tuple[str, ...]] = ()
    category: ClassVar[str] = "general"

    @abstractmethod
    def run(self, ctx: StepContext, params: Json) -> Json | Jump | Wait:
        """Do the step with resolved, checked params: its outputs, a jump, or a wait for child runs."""

    @classmethod
    def check_params(cls, params: Json) -> None:
        """Validate resolved params against the schema; raises StepFailed naming the field."""
        error = jsonschema.exceptions.best_match(validator(cls).iter_errors(params))
        if error is not None:
            where = ".".join(str(p) for p in error.absolute_path) or "params"
            raise StepFailed(f"{where}: {error.message}")

    @classmethod
    def describe(cls) -> Json:
        return {
            "type": cls.type,
            "category": cls.category,
            "description": cls.description,
            "params": cls.params,
            "outputs": cls.outputs,
        }


_VALIDATORS: dict[str, jsonschema.protocols.Validator] = {}


def validator(cls: type[Step]) -> jsonschema.protocols.Validator:
    """The params validator of a step type, built once (building one checks the schema itself)."""
    if cls.type not in _VALIDATORS:
        _VALIDATORS[cls.type] = jsonschema.Draft202012Validator(cls.params)
    return _VALIDATORS[cls.type]


REGISTRY: dict[str, type[Step]] = {}


def register(cls: type[Step]) -> type[Step]:
    """Class decorator: add a step type to the registry (evals registers its judges the same way)."""
    if cls.type in REGISTRY and REGISTRY[cls.type] is not cls:
        raise ValueError(f"step type {cls.type!r} registered twice")
    REGISTRY[cls.type] = cls
    return cls


def step_types() -> dict[str, type[Step]]:
    from . import steps  # noqa: F401  (importing registers them)

    return REGISTRY


def obj(properties: Json, required: tuple[str, ...] = (), extra: bool = False) -> Json:
    """An object schema: these properties, these required, nothing else unless ``extra``."""
    schema: Json = {"type": "object", "properties": properties, "additionalProperties": extra}
    if required:
        schema["required"] = list(required)
    return schema


STRING: Json = {"type": "string"}
INTEGER: Json = {"type": "integer"}
BOOLEAN: Json = {"type": "boolean"}
ANY: Json = {}
STRINGS: Json = {"type": "array", "items": STRING}
