"""Write functions for orgs, members, tokens, provider keys and collection environments, shared by the admin,
management commands and the API. Each writes its audit row in the same transaction as the change."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from . import crypto
from .audit import SYSTEM, Actor, record
from .models import ApiToken, AuditAction, Collection, CollectionVariable, Membership, Org, ProviderKey, Role


@transaction.atomic
def create_org(
    name: str, owner_username: str | None = None, owner_password: str | None = None, *, actor: Actor = SYSTEM
) -> Org:
    org = Org.objects.create(name=name)
    record(AuditAction.ORG_CREATED, org, actor=actor, org=org, details={"name": name})
    if owner_username:
        User = get_user_model()
        user, created = User.objects.get_or_create(username=owner_username)
        if created or owner_password:
            if owner_password:
                user.set_password(owner_password)
            else:
                user.set_unusable_password()
            user.save()
        save_membership(Membership(org=org, user=user, role=Role.OWNER), actor=actor)
    return org


@transaction.atomic
def save_org(org: Org, *, fields: Iterable[str] = (), actor: Actor) -> None:
    """Create or change an org (the admin's form has set its fields)."""
    created = org.pk is None
    org.save()
    if created:
        record(AuditAction.ORG_CREATED, org, actor=actor, org=org, details={"name": org.name})
    elif fields:
        details = {"fields": sorted(fields), "name": org.name, "allowed_models": org.allowed_models}
        record(AuditAction.ORG_CHANGED, org, actor=actor, org=org, details=details)


@transaction.atomic
def delete_org(org: Org, *, actor: Actor) -> None:
    # Recorded first: the row outlives the org (its ``org`` becomes null, ``org_name`` stays).
    record(AuditAction.ORG_DELETED, org, actor=actor, org=org, details={"name": org.name})
    org.delete()


def _membership_details(membership: Membership, **extra: Any) -> dict[str, Any]:
    return {"user": membership.user.get_username(), "role": membership.role, **extra}


@transaction.atomic
def save_membership(
    membership: Membership, *, actor: Actor, previous_role: str | None = None, fields: Iterable[str] = ()
) -> None:
    """Add a member, or record a change to a membership (its role, usually)."""
    created = membership.pk is None
    membership.save()
    if created:
        record(
            AuditAction.MEMBERSHIP_ADDED,
            membership,
            actor=actor,
            org=membership.org,
            details=_membership_details(membership),
        )
    elif fields:
        details = _membership_details(membership, fields=sorted(fields), previous_role=previous_role)
        record(AuditAction.MEMBERSHIP_CHANGED, membership, actor=actor, org=membership.org, details=details)


def record_membership_removed(membership: Membership, *, actor: Actor) -> None:
    """Record a membership about to be deleted (the admin's inline deletes it itself)."""
    record(
        AuditAction.MEMBERSHIP_REMOVED,
        membership,
        actor=actor,
        org=membership.org,
        details=_membership_details(membership),
    )


@transaction.atomic
def remove_membership(membership: Membership, *, actor: Actor) -> None:
    record_membership_removed(membership, actor=actor)
    membership.delete()


def _token_details(token: ApiToken, **extra: Any) -> dict[str, Any]:
    return {
        "name": token.name,
        "prefix": token.prefix,
        "collection": token.collection.name if token.collection else None,
        "expires_at": token.expires_at.isoformat() if token.expires_at else None,
        **extra,
    }


@transaction.atomic
def create_token(
    org: Org,
    *,
    name: str = "default",
    collection: Collection | None = None,
    expires_at: datetime | None = None,
    created_by=None,
    actor: Actor = SYSTEM,
) -> tuple[ApiToken, str]:
    """Create a token; its plain value is returned once and never stored, logged or audited."""
    token, plain = ApiToken.generate(
        org, name=name, collection=collection, expires_at=expires_at, created_by=created_by
    )
    record(AuditAction.TOKEN_CREATED, token, actor=actor, org=org, details=_token_details(token))
    return token, plain


@transaction.atomic
def revoke_token(token: ApiToken, *, actor: Actor) -> bool:
    """Revoke a token now; False if it already was."""
    now = timezone.now()
    if not ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now):
        return False
    token.revoked_at = now
    record(AuditAction.TOKEN_REVOKED, token, actor=actor, org=token.org, details=_token_details(token))
    return True


@transaction.atomic
def revoke_tokens(tokens: Iterable[ApiToken], *, actor: Actor) -> int:
    return sum(revoke_token(token, actor=actor) for token in tokens)


@transaction.atomic
def save_token(token: ApiToken, *, fields: Iterable[str], actor: Actor) -> None:
    """Save an edited token: setting ``revoked_at`` revokes it (audited as such), other edits are changes."""
    fields = sorted(fields)
    token.save()
    if not fields:
        return
    if "revoked_at" in fields and token.revoked_at is not None:
        action = AuditAction.TOKEN_REVOKED
    else:
        action = AuditAction.TOKEN_CHANGED
    record(action, token, actor=actor, org=token.org, details=_token_details(token, fields=fields))


@transaction.atomic
def delete_token(token: ApiToken, *, actor: Actor) -> None:
    record(AuditAction.TOKEN_DELETED, token, actor=actor, org=token.org, details=_token_details(token))
    token.delete()


@transaction.atomic
def save_provider_key(key: ProviderKey, *, fields: Iterable[str], actor: Actor) -> None:
    """Create or change a provider key. ``fields`` names what changed (``key`` for the secret, never its value)."""
    created = key.pk is None
    key.save()
    fields = sorted(fields)
    if not created and not fields:
        return
    action = AuditAction.PROVIDER_KEY_CREATED if created else AuditAction.PROVIDER_KEY_CHANGED
    details = {"provider": key.provider, "api_base": key.api_base, "fields": fields}
    record(action, key, actor=actor, org=key.org, details=details)


@transaction.atomic
def delete_provider_key(key: ProviderKey, *, actor: Actor) -> None:
    details = {"provider": key.provider, "api_base": key.api_base}
    record(AuditAction.PROVIDER_KEY_DELETED, key, actor=actor, org=key.org, details=details)
    key.delete()


def record_environment_change(
    collection: Collection, *, set_names: dict[bool, list[str]], deleted_names: dict[bool, list[str]], actor: Actor
) -> None:
    """Audit a change to a collection's environment by variable names (``True``: secrets, ``False``: plain)."""
    details: dict[str, Any] = {}
    for secret, field in ((True, "secrets"), (False, "env")):
        changed = {"set": sorted(set(set_names.get(secret, []))), "deleted": sorted(set(deleted_names.get(secret, [])))}
        if changed["set"] or changed["deleted"]:
            details[field] = changed
    if details:
        record(AuditAction.ENVIRONMENT_CHANGED, collection, actor=actor, org=collection.org, details=details)


@transaction.atomic
def update_environment(
    collection: Collection, changes: Iterable[tuple[str, str | None, bool]], *, actor: Actor
) -> None:
    """Apply ``(name, value or None to delete, secret)`` changes to a collection's environment."""
    set_names: dict[bool, list[str]] = {True: [], False: []}
    deleted_names: dict[bool, list[str]] = {True: [], False: []}
    for name, value, secret in changes:
        if value is None:
            if CollectionVariable.objects.filter(collection=collection, name=name, secret=secret).delete()[0]:
                deleted_names[secret].append(name)
        else:
            CollectionVariable.objects.update_or_create(
                collection=collection,
                name=name,
                defaults={"secret": secret, "value_encrypted": crypto.encrypt(value)},
            )
            set_names[secret].append(name)
    record_environment_change(collection, set_names=set_names, deleted_names=deleted_names, actor=actor)
