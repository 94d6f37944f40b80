"""One model call from inside the platform (workflow steps, judges): through litellm with the org's provider key,
priced, and shaped for recording. The model gateway is for callers outside; this is for the platform's own calls."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any

import litellm
import openai
from django.conf import settings

from orgs import outbound
from orgs.api_errors import ApiError
from orgs.models import Org, ProviderKey
from trajectories.schemas import model_call

from .gateway import scripted
from .gateway.calls import redact_request
from .gateway.pricing import cost_of
from .gateway.routing import guarded_endpoint, provider_of


class ModelError(Exception):
    """The model could not be called (unknown, not allowed, the provider failed)."""


@dataclass
class Answer:
    model: str
    provider: str
    request: dict[str, Any]
    response: dict[str, Any]
    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_ms: int

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.text)
        except ValueError:
            return None

    def model_call(self) -> dict[str, Any]:
        """The call as a ``model.call`` payload (``trajectories.schemas.ModelCall``)."""
        return model_call(
            "chat",
            self.request,
            self.response,
            usage={"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens},
            finish_reason=self.finish_reason,
            status_code=200,
            stream=False,
        )

    def outputs(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "json": self.json,
            "model": self.model,
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens,
            },
            "cost_usd": self.cost_usd,
        }


def complete(org: Org, model: str, messages: list[dict[str, Any]], **params: Any) -> Answer:
    """Call ``model`` for ``org``; raises ModelError with a message fit for the user."""
    try:
        provider, upstream_model = provider_of(model)
    except ApiError as exc:
        raise ModelError(exc.message) from None
    if not org.may_use_model(model):
        raise ModelError(f"the model {model!r} is not enabled for this organisation")
    api_key = api_base = None
    if provider != scripted.PROVIDER:
        key = ProviderKey.objects.filter(org=org, provider=provider).first()
        if key is not None:
            api_key, api_base = key.get_key(), key.api_base or None
    if api_base:
        # The org's own endpoint: checked against the outbound policy just before the call (litellm's client
        # cannot be pinned to the checked address).
        try:
            outbound.check_url(api_base)
        except outbound.OutboundForbidden as exc:
            raise ModelError(f"{model}: the organisation's provider endpoint is refused: {exc.message}") from None
    params = {k: v for k, v in params.items() if v is not None}
    started = time.time()
    guarded = guarded_endpoint(provider, api_base)  # as in the gateway
    try:
        with outbound.guarded_connections() if guarded else contextlib.nullcontext():
            response = litellm.completion(
                model=model,
                messages=messages,
                api_key=api_key,
                api_base=api_base,
                timeout=settings.JETTY_GATEWAY_TIMEOUT_S,
                **params,
            ).model_dump()
    except outbound.OutboundForbidden as exc:
        raise ModelError(f"{model}: the provider endpoint is refused: {exc.message}") from None
    except (openai.OpenAIError, litellm.UnsupportedParamsError) as exc:
        reason = outbound.refusal_in(exc)
        if reason is not None:
            raise ModelError(f"{model}: the provider endpoint is refused: {reason}") from None
        raise ModelError(f"{model}: {exc.__class__.__name__}: {str(exc)[:500]}") from None
    usage = response.get("usage") or {}
    prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    choice = (response.get("choices") or [{}])[0]
    return Answer(
        model=model,
        provider=provider,
        request=redact_request({"model": model, "messages": messages, **params}),
        response=response,
        text=(choice.get("message") or {}).get("content") or "",
        finish_reason=choice.get("finish_reason"),
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost_usd=cost_of(upstream_model, provider, prompt, completion),
        latency_ms=int((time.time() - started) * 1000),
    )
