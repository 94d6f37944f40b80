"""The gateway's own ASGI routes, mounted in front of Django for its hot paths.

The model APIs are served here without Django's request and middleware stack (the gateway's whole per-request
budget is a few milliseconds of CPU); every other path goes on to Django. Besides OpenAI's chat completions and
model list, the gateway speaks what the agent CLIs speak: Anthropic Messages (Claude Code), OpenAI Responses
(Codex) and Gemini's generateContent (Gemini CLI).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from orgs.api_errors import error_body

from . import views
from .exchange import Exchange, Receive, Scope, Send, WireExchange
from .wires import WIRES

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]


def _plain(view: Callable[[Exchange], Awaitable[None]]) -> Handler:
    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        await view(Exchange(scope, receive, send))

    return handle


def _wire(name: str, view: Callable[[WireExchange], Awaitable[None]]) -> Handler:
    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        await view(WireExchange(scope, receive, send, WIRES[name]))

    return handle


EXACT: dict[str, tuple[str, Handler]] = {
    "/v1/chat/completions": ("POST", _plain(views.chat_completions)),
    "/v1/models": ("GET", _plain(views.models)),
    "/v1beta/models": ("GET", _plain(views.models)),
    "/v1/messages": ("POST", _wire("anthropic", lambda exchange: views.wire_call(exchange, None))),
    "/v1/messages/count_tokens": ("POST", _wire("anthropic", lambda exchange: views.count_tokens(exchange, None))),
    "/v1/responses": ("POST", _wire("responses", lambda exchange: views.wire_call(exchange, None))),
}
PREFIXES: tuple[tuple[str, str, Handler], ...] = (
    ("/v1/models/", "GET", _plain(views.models)),
    ("/v1beta/models/", "POST", GEMINI := _wire("gemini", views.gemini)),
)


def on_gateway_socket(scope: Scope) -> bool:
    """Whether the connection came in over a unix socket (the one sandboxes reach the gateway through).

    Decided by the listening address the server puts in the scope, which no client can choose: daphne sets
    ``server`` to None when its endpoint has no host and port (a unix socket), and the ASGI spec's unix form is
    ``[path, None]``. Only a scope without the key at all (an in-process test harness) counts as TCP.
    """
    if "server" not in scope:
        return False
    server = scope["server"]
    return server is None or server[1] is None


def socket_refusal(path: str) -> tuple[int, dict]:
    message = f"The sandbox gateway socket serves only the model routes, not {path}"
    return 403, error_body(403, message, code="gateway_only")


class GatewayRouter:
    """The model routes, served here; every other path goes to Django, except over the sandbox socket (403)."""

    def __init__(self, fallback: Handler):
        self.fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            route = EXACT.get(path) or next(((m, h) for p, m, h in PREFIXES if path.startswith(p)), None)
            if path.startswith("/v1/models/") and ":" in path and scope["method"] == "POST":
                route = ("POST", GEMINI)  # google-genai's default API version is v1
            if route is not None:
                method, handler = route
                if scope["method"] != method:
                    await Exchange(scope, receive, send).respond_json(
                        405, error_body(405, f"Method {scope['method']} not allowed on {path}"), {"allow": method}
                    )
                    return
                await handler(scope, receive, send)
                return
            if on_gateway_socket(scope):
                await Exchange(scope, receive, send).respond_json(*socket_refusal(path))
                return
        await self.fallback(scope, receive, send)


class OffTheGatewaySocket:
    """Wraps the WebSocket app: a connection over the sandbox socket is closed before it reaches the UI's views."""

    def __init__(self, app: Handler):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if on_gateway_socket(scope):
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 4403})
            return
        await self.app(scope, receive, send)
