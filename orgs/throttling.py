"""The DRF API's side of the per-token rate limit (``orgs.ratelimit``)."""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from .auth import Principal


class TokenRateThrottle(BaseThrottle):
    """Raises the same 429 as the gateway (DRF's own ``Throttled`` cannot say ``rate_limit_exceeded``)."""

    def allow_request(self, request: Request, view: object) -> bool:
        # Imported here: DRF loads this class while ``rest_framework.views`` is still being imported, and the
        # limiter's ApiError module imports that.
        from .ratelimit import enforce

        if isinstance(request.user, Principal):
            enforce(request.user)
        return True
