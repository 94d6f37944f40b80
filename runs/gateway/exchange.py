"""One HTTP exchange at the ASGI level: the gateway reads and answers requests with it."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from orgs.api_errors import ApiError

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class ClientGone(Exception):
    """The client hung up before the response was complete."""


class Exchange:
    """One HTTP request/response pair, at the ASGI level."""

    def __init__(self, scope: Scope, receive: Receive, send: Send):
        self.scope, self._receive, self._send = scope, receive, send
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        self.started = False
        self.hold = False  # when set, a whole response is kept until release()
        self._held: tuple[int, bytes, dict[str, str] | None, str] | None = None

    async def body(self, limit: int) -> bytes:
        declared = self.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, f"Request body is larger than the limit of {limit} bytes", code="request_too_large")
        parts: list[bytes] = []
        size = 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"Request body is larger than the limit of {limit} bytes", code="request_too_large")
            parts.append(chunk)
            if not message.get("more_body"):
                return b"".join(parts)

    async def respond(
        self, status: int, body: bytes, headers: dict[str, str] | None = None, content_type: str = "application/json"
    ) -> None:
        if self.hold:
            self._held = (status, body, headers, content_type)
            return
        raw_headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
        raw_headers += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        await self._send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await self._send({"type": "http.response.body", "body": body})

    async def release(self) -> None:
        """Send a response kept back by ``hold``."""
        self.hold = False
        if self._held is not None:
            held, self._held = self._held, None
            await self.respond(*held)

    async def respond_json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        await self.respond(status, json.dumps(data).encode(), headers)

    async def respond_error(self, error: ApiError) -> None:
        await self.respond_json(error.status, error.body(), error.headers)

    async def start_stream(self, headers: dict[str, str]) -> None:
        raw_headers = [
            (b"content-type", b"text/event-stream"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ]
        raw_headers += [(k.encode(), v.encode()) for k, v in headers.items()]
        await self._send({"type": "http.response.start", "status": 200, "headers": raw_headers})
        self.started = True

    async def stream(self, data: bytes) -> None:
        try:
            await self._send({"type": "http.response.body", "body": data, "more_body": True})
        except Exception as exc:  # servers raise their own types once the peer is gone
            raise ClientGone() from exc

    async def end_stream(self) -> None:
        try:
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})
        except Exception as exc:
            raise ClientGone() from exc
