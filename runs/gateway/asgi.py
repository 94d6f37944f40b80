"""The gateway's own ASGI routes, mounted in front of Django for its hot paths.

``/v1/chat/completions`` and ``/v1/models`` are served here without Django's request and middleware stack (the
gateway's whole per-request budget is a few milliseconds of CPU); every other path goes on to Django.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from orgs.api_errors import error_body

from . import views
from .exchange import Exchange, Receive, Scope, Send


class GatewayRouter:
    def __init__(self, fallback: Callable[[Scope, Receive, Send], Awaitable[None]]):
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path == "/v1/chat/completions" or path == "/v1/models" or path.startswith("/v1/models/"):
                exchange = Exchange(scope, receive, send)
                method = scope["method"]
                if path == "/v1/chat/completions":
                    handler = views.chat_completions if method == "POST" else None
                else:
                    handler = views.models if method == "GET" else None
                if handler is None:
                    await exchange.respond_json(
                        405,
                        error_body(405, f"Method {method} not allowed on {path}"),
                        {"allow": "POST" if path.endswith("completions") else "GET"},
                    )
                    return
                await handler(exchange)
                return
        await self.fallback(scope, receive, send)
