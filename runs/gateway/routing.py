"""Who is calling, which provider serves the model they named, and with which credentials.

Resolved in one synchronous step (one thread hop from the event loop): the token, the org's rules, litellm's
provider resolution and the org's provider key.
"""

from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass

import litellm
from django.db import InterfaceError, OperationalError, close_old_connections

from orgs import ratelimit
from orgs.api_errors import ApiError
from orgs.auth import Principal, principal_for
from orgs.models import NAME_PATTERN, NAME_RULE, Collection, ProviderKey, hash_token

from ..models import RUN_TOKEN_PREFIX, RunToken
from . import scripted

# Providers whose wire format *is* OpenAI's chat completions: the request is forwarded as the client sent it
# (litellm has resolved the provider, endpoint and key). Every other provider goes through litellm.acompletion,
# which translates the request.
DIRECT_PROVIDERS = frozenset({"openai"})
DEFAULT_API_BASES = {"openai": "https://api.openai.com/v1"}


@dataclass(frozen=True)
class Route:
    model: str
    provider: str
    upstream_model: str
    api_key: str | None
    api_base: str | None
    direct: bool
    guarded: bool = False  # see guarded_endpoint()


@dataclass(frozen=True)
class Caller:
    principal: Principal
    collection: Collection | None
    # An agent-mode call's collection that does not exist yet: its run creates it (only once the call is valid).
    new_collection: str = ""


def run_principal(plain: str | None) -> Principal | None:
    """A sandbox's per-run token: valid while its run is, and only for that run."""
    token = (
        RunToken.objects.usable()
        .select_related("run__org", "run__collection")
        .filter(token_hash=hash_token(plain or ""))
        .first()
    )
    if token is None or token.run.status not in ("queued", "running"):
        return None
    run = token.run
    return Principal(
        org=run.org, token=None, collection=run.collection, prefix="run-token", run_id=run.pk, run_model=run.model
    )


@functools.lru_cache(maxsize=4096)
def provider_of(model: str) -> tuple[str, str]:
    """(provider, the model name the provider knows) for a litellm model string, or ApiError 404."""
    scripted.register()
    try:
        upstream_model, provider, _, _ = litellm.get_llm_provider(model)
    except Exception:  # litellm raises BadRequestError or a bare Exception for strings it cannot place
        raise ApiError(
            404,
            f"The model `{model}` does not exist or no provider serves it. Use a litellm model string such "
            "as `openai/gpt-4o-mini`, `anthropic/claude-sonnet-4-5` or `scripted/default`.",
            code="model_not_found",
            param="model",
        ) from None
    return provider, upstream_model


class ResolutionCache:
    """Recent successful resolutions, so the hot path usually needs no database round trip.

    Entries live ``ttl`` seconds: a revoked token, a removed provider key or a changed model list takes effect
    within that time in every process (``JETTY_AUTH_CACHE_S``; 0 turns the cache off).
    """

    def __init__(self, ttl: float, size: int = 10_000):
        self.ttl, self.size = ttl, size
        self._entries: dict[tuple[str, str, str | None], tuple[float, Caller, Route]] = {}

    def get(self, key: tuple[str, str, str | None]) -> tuple[Caller, Route] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            self._entries.pop(key, None)
            return None
        return entry[1], entry[2]

    def put(self, key: tuple[str, str, str | None], value: tuple[Caller, Route]) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= self.size:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + self.ttl, *value)


def resolve(
    plain_token: str | None, model: str, collection_name: str | None, direct_enabled: bool, agent_mode: bool = False
) -> tuple[Caller, Route]:
    for attempt in (1, 2):
        try:
            return _resolve(plain_token, model, collection_name, direct_enabled, agent_mode)
        except (OperationalError, InterfaceError):
            # The gateway bypasses Django's request signals, so a dropped database connection is noticed here.
            close_old_connections()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def admit(principal: Principal) -> None:
    """Count a gateway request against its token's rate limit (ApiError 429 over it)."""
    for attempt in (1, 2):
        try:
            ratelimit.enforce(principal)
            return
        except (OperationalError, InterfaceError):
            close_old_connections()  # as in resolve(): the gateway notices a dropped connection itself
            if attempt == 2:
                raise


def any_principal(plain_token: str | None) -> Principal | None:
    """The principal of an API token or of a sandbox's run token."""
    if (plain_token or "").startswith(RUN_TOKEN_PREFIX):
        return run_principal(plain_token)
    return principal_for(plain_token)


def _resolve(
    plain_token: str | None, model: str, collection_name: str | None, direct_enabled: bool, agent_mode: bool
) -> tuple[Caller, Route]:
    principal = any_principal(plain_token)
    if principal is None:
        raise ApiError(401, "Incorrect API key provided, or it was revoked or has expired.", code="invalid_api_key")
    collection, new_collection = principal.collection, ""
    model = principal.run_model or model
    if collection_name is not None and (collection is None or collection.name != collection_name):
        if collection is not None:  # a collection-scoped token reaches its own collection only
            raise ApiError(404, f"Collection `{collection_name}` not found", code="not_found", param="jetty.collection")
        collection = Collection.objects.filter(org=principal.org, name=collection_name).first()
        if collection is None:
            new_collection = unknown_collection(collection_name, agent_mode)
    provider, upstream_model = provider_of(model)
    if not principal.org.may_use_model(model):
        raise ApiError(
            404, f"The model `{model}` is not enabled for this organisation", code="model_not_found", param="model"
        )
    api_key = api_base = None
    if provider != scripted.PROVIDER:
        key = ProviderKey.objects.filter(org=principal.org, provider=provider).first()
        if key is not None:
            api_key, api_base = key.get_key(), key.api_base or None
    guarded = guarded_endpoint(provider, api_base)
    direct = direct_enabled and provider in DIRECT_PROVIDERS
    if direct:
        api_key = api_key or os.environ.get(f"{provider.upper()}_API_KEY")
        api_base = api_base or os.environ.get(f"{provider.upper()}_API_BASE") or DEFAULT_API_BASES[provider]
        if not api_key:
            raise ApiError(
                400,
                f"No API key for provider `{provider}` is configured for this organisation",
                code="provider_not_configured",
                param="model",
            )
    route = Route(
        model=model,
        provider=provider,
        upstream_model=upstream_model,
        api_key=api_key,
        api_base=api_base,
        direct=direct,
        guarded=guarded,
    )
    return Caller(principal=principal, collection=collection, new_collection=new_collection), route


def unknown_collection(name: str, agent_mode: bool) -> str:
    """A collection the org does not have: agent mode makes it on the call's first run (as the hosted product does);
    anywhere else it is a 404."""
    if not agent_mode:
        raise ApiError(404, f"Collection `{name}` not found", code="not_found", param="jetty.collection")
    if not NAME_PATTERN.match(name):
        raise ApiError(400, f"`jetty.collection` must be {NAME_RULE}", code="invalid_value", param="jetty.collection")
    return name


def guarded_endpoint(provider: str, org_base: str | None) -> bool:
    """Whether calls to this provider pass the outbound policy: an org's own endpoint does, and so does none at all
    (litellm then picks its default, which for some providers is local, such as ollama's localhost:11434). Only an
    endpoint the operator configured (``<PROVIDER>_API_BASE``) is trusted."""
    return org_base is not None or not os.environ.get(f"{provider.upper()}_API_BASE")


def has_credentials(route: Route) -> bool:
    """Whether the provider can be called: the scripted model, an org key, or the server's own environment."""
    if route.provider == scripted.PROVIDER or route.api_key:
        return True
    return bool(litellm.validate_environment(model=route.model).get("keys_in_environment"))


def models_for(principal: Principal) -> list[dict[str, object]]:
    """The models an org may call: the scripted ones, and each configured provider's catalogue (a sandbox: the
    one model of its run)."""
    if principal.run_model:
        return [{"id": principal.run_model, "object": "model", "created": 0, "owned_by": "jetty"}]
    names: dict[str, str] = {m: scripted.PROVIDER for m in scripted.MODELS}
    for key in ProviderKey.objects.filter(org=principal.org):
        for name in key.model_names:
            names.setdefault(name if "/" in name else f"{key.provider}/{name}", key.provider)
        for name in sorted(litellm.models_by_provider.get(key.provider, [])):
            names.setdefault(name if name.startswith(f"{key.provider}/") else f"{key.provider}/{name}", key.provider)
    return [
        {"id": name, "object": "model", "created": 0, "owned_by": owner}
        for name, owner in names.items()
        if principal.org.may_use_model(name)
    ]
