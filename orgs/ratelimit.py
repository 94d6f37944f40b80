"""Request rate limits per API token: a fixed window counted where every process sees it.

With ``REDIS_URL`` the count is a Redis key per token and window (``INCR`` + ``EXPIRE``); without it, one database
row per token (``RateLimitCounter``). Both the DRF API (``orgs.throttling``) and the model gateway (``enforce``
after it resolves the caller) count into the same window, so a token's limit covers everything it calls.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass

import redis
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, F, Value, When

from .api_errors import ApiError
from .auth import Principal
from .models import RateLimitCounter

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    count: int
    retry_after: int  # whole seconds until the window resets

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.count)


def window_of(now: float, length: float) -> tuple[int, int]:
    """(index of the window ``now`` falls in, whole seconds until it ends, at least 1)."""
    index = int(now // length)
    return index, max(1, math.ceil((index + 1) * length - now))


@functools.lru_cache(maxsize=4)
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)


def _count_in_redis(url: str, key: str, index: int, length: float) -> int:
    name = f"jetty:ratelimit:{key}:{index}"
    pipe = _redis(url).pipeline(transaction=True)
    pipe.incr(name)
    pipe.expire(name, math.ceil(length) + 1)  # the key names its window: it only has to outlive it
    count, _ = pipe.execute()
    return int(count)


def _count_in_database(key: str, index: int) -> int:
    for _ in range(3):
        with transaction.atomic():
            # One statement moves the row to this window and counts: concurrent requests queue on its row lock
            # (PostgreSQL) or on SQLite's write lock, so none is lost.
            updated = RateLimitCounter.objects.filter(key=key).update(
                count=Case(When(window=index, then=F("count") + 1), default=Value(1)), window=index
            )
            if updated:
                return RateLimitCounter.objects.filter(key=key).values_list("count", flat=True).get()
            try:
                with transaction.atomic():
                    RateLimitCounter.objects.create(key=key, window=index, count=1)
                return 1
            except IntegrityError:  # another process created the row first: count in it
                continue
    raise RuntimeError(f"could not count rate-limit key {key}")


def hit(key: str, limit: int, length: float, now: float | None = None) -> Verdict:
    """Count one request for ``key`` in the current window and say whether it is within ``limit``."""
    index, retry_after = window_of(time.time() if now is None else now, length)
    if settings.REDIS_URL:
        try:
            count = _count_in_redis(settings.REDIS_URL, key, index, length)
        except redis.RedisError:
            # A limiter is a guard, not a gate: with Redis down (the broker is down too) requests go on uncounted.
            logger.exception("rate limit not counted: Redis failed")
            return Verdict(True, limit, 0, retry_after)
    else:
        count = _count_in_database(key, index)
    return Verdict(count <= limit, limit, count, retry_after)


def enforce(principal: Principal) -> None:
    """Count a request of this principal; over its token's limit, ApiError 429 with ``Retry-After``.

    A sandbox's run token (``principal.run_id`` set) counts against a limit of its own per run
    (``JETTY_RUN_RATE_LIMIT_REQUESTS``), not its org's: a busy agent does not starve the org's own API calls, and
    an agent calling in a loop is held back whatever the org's limit.
    """
    if principal.run_id is not None:
        limit, key, who = settings.JETTY_RUN_RATE_LIMIT_REQUESTS, f"run:{principal.run_id}", "this run's token"
    elif principal.token is not None:
        limit, key = settings.JETTY_RATE_LIMIT_REQUESTS, f"token:{principal.token.pk}"
        who = f"token {principal.prefix}…"
    else:
        return
    if limit <= 0:
        return
    length = settings.JETTY_RATE_LIMIT_WINDOW_S
    verdict = hit(key, limit, length)
    if verdict.allowed:
        return
    raise ApiError(
        429,
        f"Rate limit reached for {who}: {limit} requests per {length:g}s. Try again in {verdict.retry_after}s.",
        type="requests",
        code="rate_limit_exceeded",
        headers={
            "Retry-After": str(verdict.retry_after),
            "x-ratelimit-limit-requests": str(limit),
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": f"{verdict.retry_after}s",
        },
    )
