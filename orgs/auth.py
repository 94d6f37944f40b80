"""Bearer-token authentication, shared by DRF views and the model gateway."""

from __future__ import annotations

from dataclasses import dataclass

from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from .models import ApiToken, Collection, Org, hash_token


@dataclass(frozen=True)
class Principal:
    """Who is calling: an org, through an API token (perhaps limited to one collection) or a run's token."""

    org: Org
    token: ApiToken | None
    collection: Collection | None = None
    prefix: str = ""
    run_id: int | None = None  # set for a sandbox's per-run token: its model calls belong to that run
    run_model: str = ""  # and they all go to the run's model, whatever model name the agent asks for

    is_authenticated = True
    is_anonymous = False

    def __str__(self) -> str:
        return f"token {self.prefix} of {self.org}"


def principal_of(request: Request) -> Principal:
    """The authenticated principal of a DRF request (views require authentication first)."""
    user = request.user
    if not isinstance(user, Principal):
        raise exceptions.NotAuthenticated()
    return user


def bearer_value(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _touch(token: ApiToken) -> None:
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > ApiToken.LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now


def principal_for(plain: str | None) -> Principal | None:
    """The principal a plain token stands for, or None if it is unknown, revoked or expired."""
    if not plain:
        return None
    token = ApiToken.objects.usable().select_related("org", "collection").filter(token_hash=hash_token(plain)).first()
    if token is None:
        return None
    _touch(token)
    return Principal(org=token.org, token=token, collection=token.collection, prefix=token.prefix)


class BearerTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Principal, ApiToken] | None:
        header = request.META.get("HTTP_AUTHORIZATION")
        if not header:
            return None
        principal = principal_for(bearer_value(header))
        if principal is None or principal.token is None:
            raise exceptions.AuthenticationFailed("Incorrect API key provided, or it was revoked or has expired.")
        return principal, principal.token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="jetty"'
