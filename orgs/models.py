"""Organisations, their members, collections, API tokens and provider keys."""

from __future__ import annotations

import fnmatch
import hashlib
import re
import secrets
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from . import crypto, outbound

TOKEN_PREFIX = "jty_"
# Collection and task names: they go in URLs and paths, so one plain alphabet (the API's and agent mode's rule).
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}\Z")  # \Z: "$" would let a final newline through
NAME_RULE = "lower-case letters, digits, `-` or `_` (at most 100)"


def public_code(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


class Org(models.Model):
    public_id = models.CharField(max_length=32, unique=True, editable=False)
    name = models.CharField(max_length=100, unique=True)
    # Glob patterns (``openai/*``, ``scripted/*``) of the models members may call; empty means all.
    allowed_models = models.JSONField(default=list, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        if not self.public_id:
            self.public_id = public_code("org")
        super().save(*args, **kwargs)

    def may_use_model(self, model: str) -> bool:
        return not self.allowed_models or any(fnmatch.fnmatchcase(model, p) for p in self.allowed_models)


class Role(models.TextChoices):
    OWNER = "owner"
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"

    @property
    def can_write(self) -> bool:
        return self != Role.VIEWER

    @property
    def can_manage(self) -> bool:
        return self in (Role.OWNER, Role.ADMIN)


class Membership(models.Model):
    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "user"], name="one_membership_per_org")]

    def __str__(self) -> str:
        return f"{self.user} in {self.org} ({self.role})"


class Collection(models.Model):
    """A namespace of tasks inside an org; tokens may be scoped to one."""

    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="collections")
    name = models.SlugField(max_length=100)
    description = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "name"], name="collection_name_per_org")]
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.org}/{self.name}"


class CollectionVariable(models.Model):
    """An environment variable of a collection's runs. Secrets are encrypted at rest and never returned in clear."""

    NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}\Z"

    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="variables")
    name = models.CharField(max_length=128)
    secret = models.BooleanField(default=True)
    value_encrypted = models.TextField()
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["collection", "name"], name="variable_name_per_collection")]
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.collection}:{self.name}"

    @property
    def value(self) -> str:
        return crypto.decrypt(self.value_encrypted)


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    def usable(self) -> ApiTokenQuerySet:
        now = timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


def hash_token(plain: str) -> str:
    return hashlib.sha256(plain.encode()).hexdigest()


class ApiToken(models.Model):
    """A bearer token. The plain value is shown once at creation; only its SHA-256 is stored."""

    LAST_USED_RESOLUTION = timedelta(minutes=1)

    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="tokens")
    name = models.CharField(max_length=100, default="default")
    prefix = models.CharField(max_length=16, editable=False, help_text="The first characters, to recognise it by.")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    collection = models.ForeignKey(
        Collection,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="tokens",
        help_text="If set, the token only reaches this collection's tasks and runs.",
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"

    @classmethod
    def generate(cls, org: Org, **fields) -> tuple[ApiToken, str]:
        """Create a token and return it with its plain value, which is never stored."""
        plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(org=org, prefix=plain[:12], token_hash=hash_token(plain), **fields)
        return token, plain

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > timezone.now())


class ProviderKey(models.Model):
    """An org's credentials for one litellm provider, encrypted at rest; agents and logs never see them."""

    org = models.ForeignKey(Org, on_delete=models.CASCADE, related_name="provider_keys")
    provider = models.CharField(max_length=50, help_text="litellm provider name: openai, anthropic, gemini, …")
    encrypted_key = models.TextField(editable=False)
    api_base = models.URLField(blank=True, help_text="Override the provider's endpoint (self-hosted or proxy).")
    model_names = models.JSONField(
        default=list, blank=True, help_text="Model names to list for this provider (beyond litellm's catalogue)."
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["org", "provider"], name="one_key_per_provider")]

    def __str__(self) -> str:
        return f"{self.provider} key of {self.org}"

    def clean(self) -> None:
        """An org's endpoint is fetched for its members' calls: it must pass the outbound policy when saved (and is
        checked again at each call)."""
        if self.api_base:
            try:
                outbound.check_url(self.api_base)
            except outbound.OutboundForbidden as exc:
                raise ValidationError({"api_base": exc.message}) from None

    def set_key(self, plain: str) -> None:
        self.encrypted_key = crypto.encrypt(plain)

    def get_key(self) -> str:
        return crypto.decrypt(self.encrypted_key)

    @property
    def masked(self) -> str:
        plain = self.get_key()
        return f"{plain[:3]}…{plain[-4:]}" if len(plain) > 10 else "…"


class RateLimitCounter(models.Model):
    """Requests counted in the current fixed window of one rate-limit key (one row per key, reused each window).

    Used when no Redis is configured: every process (daphne, workers) counts through the database.
    """

    key = models.CharField(max_length=64, unique=True)
    window = models.BigIntegerField(help_text="Index of the window: seconds since the epoch // window length")
    count = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.key}: {self.count} in window {self.window}"


class AuditAction(models.TextChoices):
    ORG_CREATED = "org.created"
    ORG_CHANGED = "org.changed"
    ORG_DELETED = "org.deleted"
    MEMBERSHIP_ADDED = "membership.added"
    MEMBERSHIP_CHANGED = "membership.changed"
    MEMBERSHIP_REMOVED = "membership.removed"
    TOKEN_CREATED = "token.created"
    TOKEN_CHANGED = "token.changed"
    TOKEN_REVOKED = "token.revoked"
    TOKEN_DELETED = "token.deleted"
    PROVIDER_KEY_CREATED = "provider_key.created"
    PROVIDER_KEY_CHANGED = "provider_key.changed"
    PROVIDER_KEY_DELETED = "provider_key.deleted"
    ENVIRONMENT_CHANGED = "collection.environment_changed"
    RUNS_PRUNED = "runs.pruned"


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    def for_org(self, org: Org) -> AuditEventQuerySet:
        return self.filter(org=org)


class AuditEvent(models.Model):
    """Who did what to an org's members, tokens, provider keys and secrets. Never holds a secret's value: details
    name what changed (fields, variable names), not the values."""

    org = models.ForeignKey(Org, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_events")
    org_name = models.CharField(max_length=100, blank=True, help_text="Kept when the org is deleted.")
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor = models.CharField(max_length=200, help_text="user <name>, token <prefix>…, command <name> or system")
    action = models.CharField(max_length=40, choices=AuditAction.choices)
    target_type = models.CharField(max_length=50)
    target_id = models.CharField(max_length=64, blank=True)
    target_repr = models.CharField(max_length=200, blank=True)
    details = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    created = models.DateTimeField(default=timezone.now, db_index=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["org", "-created"], name="audit_org_created")]

    def __str__(self) -> str:
        return f"{self.actor} {self.action} {self.target_type} {self.target_repr}"
