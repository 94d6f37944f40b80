"""One HTTP exchange at the ASGI level: the gateway reads and answers requests with it."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from orgs.api_errors import ApiError

if TYPE_CHECKING:
    from .wires import StreamEncoder, Wire

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
        if declared and declared.isdecimal() and int(declared) > limit:
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

    async def respond_error(self, error: ApiError, headers: dict[str, str] | None = None) -> None:
        await self.respond_json(error.status, error.body(), {**error.headers, **(headers or {})})

    async def stream_error(self, error: ApiError) -> None:
        """An error after the stream began travels as its last event."""
        await self.stream(b"data: " + json.dumps(error.body()).encode() + b"\n\n")
        await self.end_stream()

    @property
    def query_string(self) -> str:
        return self.scope.get("query_string", b"").decode("latin-1")

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(self.query_string))

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


class WireExchange(Exchange):
    """An exchange whose client speaks another wire format: the gateway answers it in OpenAI chat completions (as
    it answers everyone), and this translates each answer, chunk and error into the client's format as it goes.

    The stream's terminal events are kept back until ``release()``, after the call is recorded: an agent cannot
    act on a model call's answer before the call is in its trajectory.
    """

    def __init__(self, scope: Scope, receive: Receive, send: Send, wire: Wire):
        super().__init__(scope, receive, send)
        self.wire = wire
        self.model = ""
        self.encoder: StreamEncoder | None = None
        self._buffer = b""
        self._tail_pending = False
        self._native_tail: bytes | None = None

    def begin(self, stream: bool, model: str) -> None:
        self.model = model
        self.encoder = self.wire.encoder(model) if stream else None

    async def respond(
        self, status: int, body: bytes, headers: dict[str, str] | None = None, content_type: str = "application/json"
    ) -> None:
        # Only a model call's answer (after begin()) is a chat completion; count_tokens answers in the wire's shape.
        if self.model and not self.hold and status == 200 and content_type == "application/json":
            body = json.dumps(self.wire.from_chat(json.loads(body), self.model)).encode()
        await super().respond(status, body, headers, content_type)

    async def respond_error(self, error: ApiError, headers: dict[str, str] | None = None) -> None:
        await self.respond_json(error.status, self.wire.error_body(error), {**error.headers, **(headers or {})})

    async def stream(self, data: bytes) -> None:
        assert self.encoder is not None
        self._buffer += data
        *events, self._buffer = self._buffer.split(b"\n\n")
        out = []
        for event in events:
            payload = event.partition(b"data:")[2].strip()
            if not payload or payload == b"[DONE]":
                continue
            chunk = json.loads(payload)
            if isinstance(chunk, dict):
                out.append(self.encoder.feed(chunk))
        if any(out):
            await super().stream(b"".join(out))

    async def relay(self, event: bytes) -> None:
        """Pass a provider's own event through untranslated, one behind: the newest is the tail."""
        if self._native_tail is not None:
            await super().stream(self._native_tail)
        self._native_tail = event

    async def end_stream(self) -> None:
        self._tail_pending = True

    async def release(self) -> None:
        await super().release()
        if self._tail_pending:
            self._tail_pending = False
            tail = self.encoder.finish() if self.encoder is not None else self._native_tail or b""
            self._native_tail = None
            await super().stream(tail)
            await super().end_stream()

    async def stream_error(self, error: ApiError) -> None:
        self._tail_pending = False
        await super().stream(b"event: error\ndata: " + json.dumps(self.wire.error_body(error)).encode() + b"\n\n")
        await super().end_stream()
