"""The audit log: who changed an org's members, tokens, provider keys and secrets, and how.

Write functions (``orgs.actions``, the admin) call ``record`` inside their own transaction, so a change and its
audit row commit together. Details name what changed (fields, variable names), never a secret's value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import models
from django.http import HttpRequest

from .auth import Principal
from .models import AuditAction, AuditEvent, Org

TARGET_REPR_CHARS = 200


@dataclass(frozen=True)
class Actor:
    """Who acts: a signed-in user, an API token, a management command or the system itself."""

    label: str
    user: Any = None
    ip: str | None = None

    @classmethod
    def of(cls, request: HttpRequest | Any) -> Actor:
        """The actor of a Django or DRF request: its API token if it came with one, else its signed-in user."""
        ip = request.META.get("REMOTE_ADDR") or None
        user = request.user
        if isinstance(user, Principal):
            return cls(f"token {user.prefix}…", None, ip)
        if user is not None and user.is_authenticated:
            return cls(f"user {user.get_username()}", user, ip)
        return cls("anonymous", None, ip)

    @classmethod
    def command(cls, name: str) -> Actor:
        return cls(f"command {name}")


SYSTEM = Actor("system")


def record(
    action: AuditAction,
    target: models.Model,
    *,
    actor: Actor,
    org: Org | None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Write one audit row about ``target``. Callers pass names and non-secret values only in ``details``."""
    return AuditEvent.objects.create(
        org=org,
        org_name=org.name if org is not None else "",
        actor_user=actor.user,
        actor=actor.label[:200],
        action=action,
        target_type=target._meta.model_name or type(target).__name__.lower(),
        target_id=str(target.pk or ""),
        target_repr=str(target)[:TARGET_REPR_CHARS],
        details=details or {},
        ip=actor.ip,
    )
