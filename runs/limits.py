"""A run's sandbox limits: what it may ask for (``jetty.limits``, a runbook's ``limits``) within the operator's
bounds (``JETTY_SANDBOX_MAX_*``), on top of the defaults (``JETTY_SANDBOX_*``). Wall time is ``timeout_s``."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from orgs.api_errors import ApiError

from .runbooks import LIMIT_NAMES
from .sandboxes import Limits, Outcome

SMALLEST = dict(zip(LIMIT_NAMES, (0.1, 64, 16, 16), strict=True))


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
        most = settings.JETTY_SANDBOX_MAX_LIMITS[name]
        numeric = isinstance(value, (int, float)) if name == "cpus" else isinstance(value, int)
        if isinstance(value, bool) or not numeric or not SMALLEST[name] <= value <= most:
            kind = "a number" if name == "cpus" else "an integer"
            raise ValueError(f"`limits.{name}` must be {kind} from {SMALLEST[name]} to {most}")
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
    return Limits(**{**settings.JETTY_SANDBOX_LIMITS, **asked}, wall_s=wall_s)
