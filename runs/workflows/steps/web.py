"""Steps that reach out: an HTTP request, a signed webhook notification. Both go through the outbound policy
(orgs/outbound.py): a URL that is, or resolves to, an internal address fails the step, and nothing read is kept."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx

from orgs import outbound

from ..registry import ANY, BOOLEAN, INTEGER, STRING, Json, Step, StepContext, StepFailed, obj, register

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]
MAX_RESPONSE_BYTES = outbound.MAX_RESPONSE_BYTES


@register
class HttpRequest(Step):
    type = "http_request"
    category = "web"
    description = (
        "Make an HTTP request. An `Idempotency-Key` header unique to this step's pass is always sent, so a "
        "request repeated after a crash can be recognised by the server."
    )
    params = obj(
        {
            "url": {"type": "string", "pattern": "^https?://"},
            "method": {"enum": METHODS},
            "headers": {"type": "object", "additionalProperties": STRING},
            "json": ANY,
            "body": STRING,
            "timeout_s": {"type": "number", "minimum": 0.1, "maximum": 600},
            "fail_on_status": BOOLEAN,
        },
        ("url",),
    )
    outputs = obj(
        {"status": INTEGER, "headers": {"type": "object"}, "text": STRING, "json": ANY, "ok": BOOLEAN},
        ("status", "text", "ok"),
    )

    outbound_params = ("url",)

    def run(self, ctx: StepContext, params: Json) -> Json:
        headers = {"Idempotency-Key": ctx.key, **params.get("headers", {})}
        try:
            reply = outbound.fetch(
                params.get("method", "GET"),
                params["url"],
                headers=headers,
                json=params.get("json"),
                content=params.get("body"),
                timeout=params.get("timeout_s", 30),
                max_bytes=MAX_RESPONSE_BYTES,
            )
        except outbound.OutboundForbidden as exc:
            raise StepFailed(exc.message) from None
        except httpx.HTTPError as exc:
            raise StepFailed(f"{params['url']}: {exc.__class__.__name__}: {exc}") from None
        text = reply.content.decode("utf-8", errors="replace")
        if params.get("fail_on_status", True) and reply.status >= 400:
            raise StepFailed(f"{params['url']} answered {reply.status}: {text[:300]}")
        try:
            body = json.loads(reply.content) if not reply.truncated else None
        except ValueError:
            body = None
        return {
            "status": reply.status,
            "headers": reply.headers,
            "text": text,
            "json": body,
            "ok": 200 <= reply.status < 300,
        }


@register
class WebhookNotify(Step):
    type = "webhook_notify"
    category = "web"
    description = (
        "POST a JSON payload to a URL, signed like run webhooks when a `secret` is given "
        "(`X-Jetty-Signature: hex(HMAC_SHA256(secret, f'{timestamp}.{body}'))`), retried with backoff."
    )
    params = obj(
        {
            "url": {"type": "string", "pattern": "^https?://"},
            "payload": ANY,
            "secret": STRING,
            "attempts": {"type": "integer", "minimum": 1, "maximum": 10},
        },
        ("url",),
    )
    outputs = obj({"delivered": BOOLEAN, "status": {"type": ["integer", "null"]}, "attempts": INTEGER})

    outbound_params = ("url",)

    def run(self, ctx: StepContext, params: Json) -> Json:
        body = json.dumps(params.get("payload")).encode()
        status = None
        attempts = params.get("attempts", 3)
        for attempt in range(1, attempts + 1):
            timestamp = str(int(time.time()))
            headers = {"Content-Type": "application/json", "Idempotency-Key": ctx.key, "X-Jetty-Timestamp": timestamp}
            if params.get("secret"):
                signed = f"{timestamp}.".encode() + body
                headers["X-Jetty-Signature"] = hmac.new(params["secret"].encode(), signed, hashlib.sha256).hexdigest()
            try:
                status = outbound.fetch("POST", params["url"], content=body, headers=headers, timeout=10).status
            except outbound.OutboundForbidden as exc:
                raise StepFailed(exc.message) from None
            except httpx.HTTPError:
                status = None
            if status is not None and status < 300:
                return {"delivered": True, "status": status, "attempts": attempt}
            if attempt < attempts:
                time.sleep(min(0.5 * 2 ** (attempt - 1), 8))
        raise StepFailed(f"webhook {params['url']} not delivered after {attempts} attempts (last status {status})")
