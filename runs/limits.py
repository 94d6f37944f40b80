"""A run's limits: what it may ask for (``jetty.limits``, a runbook's ``limits``) within the operator's bounds
(``JETTY_SANDBOX_MAX_*``, ``JETTY_RUN_MAX_MODEL_CALLS``), on top of the defaults (``JETTY_SANDBOX_*``,
``JETTY_RUN_MODEL_CALLS``). Wall time is ``timeout_s``.

``model_calls`` is the run's budget of gateway model calls, counted on its ``Job`` as the calls arrive (a call that
is refused before it reaches the provider does not count). The first call past it is answered 429
``model_call_budget_exhausted`` and the run is stopped, failed as a user error naming the limit: an agent that
cannot call its model can only wait for its wall time.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F

from orgs.api_errors import ApiError

from .models import Job
from .runbooks import LIMIT_NAMES
from .sandboxes import Limits, Outcome

SMALLEST = dict(zip(LIMIT_NAMES, (0.1, 64, 16, 16, 1), strict=True))
SANDBOX_LIMITS = ("cpus", "memory_mb", "pids", "disk_mb")


def most(name: str) -> int | float:
    """The most of a limit a run may ask for on this server."""
    return settings.JETTY_RUN_MAX_MODEL_CALLS if name == "model_calls" else settings.JETTY_SANDBOX_MAX_LIMITS[name]


def check_limits(raw: Any) -> dict[str, int | float]:
    """The limits a run asks for, or ValueError saying what is wrong with them."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"`limits` must be an object with any of {', '.join(SMALLEST)}")
    unknown = sorted(set(raw) - set(SMALLEST))
    if unknown:
        raise ValueError(f"Unknown limits: {', '.join(unknown)}; known: {', '.join(SMALLEST)}")
    checked: dict[str, int | float] = {}
    for name, value in raw.items():
        highest = most(name)
        numeric = isinstance(value, (int, float)) if name == "cpus" else isinstance(value, int)
        if isinstance(value, bool) or not numeric or not SMALLEST[name] <= value <= highest:
            kind = "a number" if name == "cpus" else "an integer"
            raise ValueError(f"`limits.{name}` must be {kind} from {SMALLEST[name]} to {highest}")
        checked[name] = value
    return checked


def runbook_limits(frontmatter: dict[str, Any]) -> dict[str, int | float]:
    """The limits a stored runbook's frontmatter asks for; ApiError 400 when they are out of this server's bounds."""
    try:
        return check_limits(frontmatter.get("limits"))
    except ValueError as exc:
        raise ApiError(400, f"The runbook's {exc.args[0][0].lower()}{exc.args[0][1:]}", param="limits") from None


def limit_error(outcome: Outcome, limits: Limits) -> str:
    """The user error of a sandbox ended by one of its limits, naming the limit."""
    if outcome.oom_killed:
        return f"memory limit exceeded: the sandbox used all of its {limits.memory_mb} MB"
    if outcome.disk_exceeded:
        return f"disk limit exceeded: the files under /app grew past {limits.disk_mb} MB"
    if outcome.pids_exceeded:
        return f"process limit exceeded: the sandbox held all of its {limits.pids} processes (a fork bomb?)"
    return outcome.user_error or "a sandbox limit was exceeded"


def sandbox_limits(asked: dict[str, Any], wall_s: float) -> Limits:
    sandbox = {name: value for name, value in asked.items() if name in SANDBOX_LIMITS}
    return Limits(**{**settings.JETTY_SANDBOX_LIMITS, **sandbox}, wall_s=wall_s)


def model_call_budget(asked: dict[str, Any]) -> int:
    return int(asked.get("model_calls") or settings.JETTY_RUN_MODEL_CALLS)


def take_model_call(run_id: int) -> int:
    """Count one model call of the run against its budget and return its 0-based position among the run's calls
    (a replay answers it from the recording at that position). Past the budget: the run is stopped and the call
    refused, ApiError 429."""
    with transaction.atomic():
        job = Job.objects.select_for_update().only("id", "model_calls", "limits").get(run_id=run_id)
        budget = model_call_budget(job.limits)
        if job.model_calls < budget:
            Job.objects.filter(pk=job.pk).update(model_calls=F("model_calls") + 1)
            return job.model_calls
        reason = f"model-call budget exhausted: the run made its {budget} model calls (`limits.model_calls`)"
        Job.objects.filter(pk=job.pk).update(cancel_requested=True)
        Job.objects.filter(pk=job.pk, stop_reason="").update(stop_reason=reason)
    raise ApiError(429, f"{reason}; the run is being stopped", type="requests", code="model_call_budget_exhausted")
