"""Found by the outside attack pass: a chat call's body chose where the server connected.

The gateway handed every body key but `model` and `messages` to `litellm.acompletion(**params)`, and litellm takes
`base_url`, `api_base`, `custom_llm_provider`, `extra_headers` as routing: any tenant token (and a sandbox's run
token) sent the org's or the operator's provider key to a URL of its choosing and read the platform's own API back
through `hosted_vllm`. Providers whose litellm default is local (`ollama/...` -> localhost:11434) were called with
no check, and litellm followed a redirect from an org's allowed `api_base` to loopback.

Now only model parameters become litellm arguments (the rest travels in the provider's request body), and every
connection litellm makes for a tenant is checked by the outbound policy when it connects.
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from orgs.models import ProviderKey
from tests.support.servers import RECEIVER_HOST, free_port

SECRET_KEY = "sk-ant-TENANT-KEY-0123456789"


class Listener:
    """A receiver that records every request and answers as it is told (a status and headers)."""

    def __init__(self, host: str, port: int, status: int = 500, headers: dict[str, str] | None = None):
        self.hits: list[tuple[str, dict[str, str]]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                outer.hits.append((self.path, dict(self.headers)))
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"error": {"message": "LISTENER-SAW-IT"}}')

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((host, port), Handler)
        self.url = f"http://{host}:{port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def listening(host: str, port: int | None = None, **kwargs) -> Iterator[Listener]:
    listener = Listener(host, port or free_port(host), **kwargs)
    try:
        yield listener
    finally:
        listener.close()


def chat(jetty, token: str, body: dict) -> httpx.Response:
    message = [{"role": "user", "content": "hi"}]
    return httpx.post(
        f"{jetty.url}/v1/chat/completions",
        json={"messages": message, **body},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def give_key(tenant, provider: str, api_base: str = "") -> None:
    key = ProviderKey(org=tenant.org, provider=provider, api_base=api_base)
    key.set_key(SECRET_KEY)
    key.save()


def test_a_body_cannot_choose_where_litellm_connects(jetty, alice):
    """`base_url`, `api_base`, `custom_llm_provider` and `extra_headers` in the body route nowhere: the org's key
    never reaches the URL they name, even one the operator allows, and the platform's own API is never read."""
    with listening(RECEIVER_HOST) as org_base, listening(RECEIVER_HOST) as evil:
        give_key(alice, "anthropic", api_base=org_base.url)
        steering = [
            {"model": "anthropic/claude-3-haiku-20240307", "base_url": evil.url},
            {"model": "anthropic/claude-3-haiku-20240307", "api_base": evil.url},
            {"model": "anthropic/claude-3-haiku-20240307", "custom_llm_provider": "hosted_vllm", "base_url": evil.url},
            {"model": "anthropic/claude-3-haiku-20240307", "extra_headers": {"x-steer": "1"}, "base_url": evil.url},
            {"model": "anthropic/claude-3-haiku-20240307", "custom_llm_provider": "hosted_vllm",
             "base_url": f"{jetty.url}/api/v1/runs#"},
        ]  # fmt: skip
        for body in steering:
            response = chat(jetty, alice.token, body)
            assert response.status_code != 500, (body, response.text)
            assert '"object": "list"' not in response.text and '"data"' not in response.text, response.text
        assert evil.hits == [], evil.hits
        # What did reach the org's own endpoint carried no steering header.
        assert org_base.hits and all("x-steer" not in headers for _, headers in org_base.hits)


def test_a_providers_local_default_endpoint_is_refused(jetty, alice):
    """`ollama/...` with no endpoint configured would go to litellm's default, localhost:11434."""
    port = 11434
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            pytest.skip("something already listens on 127.0.0.1:11434")
    with listening("127.0.0.1", port) as local:
        for model in ("ollama/llama3", "ollama_chat/llama3"):
            response = chat(jetty, alice.token, {"model": model})
            assert response.status_code == 400, response.text
            assert response.json()["error"]["code"] == "outbound_forbidden", response.text
            assert "LISTENER-SAW-IT" not in response.text
        assert local.hits == []


def test_a_redirect_from_an_allowed_endpoint_to_loopback_is_refused(jetty, alice):
    """An org's `api_base` the operator allows answers 307 to loopback: litellm follows redirects, and each
    connection it makes is checked."""
    with listening("127.0.0.1") as internal:
        location = f"{internal.url}/internal"
        with listening(RECEIVER_HOST, status=307, headers={"Location": location}) as redirector:
            give_key(alice, "anthropic", api_base=redirector.url)
            response = chat(jetty, alice.token, {"model": "anthropic/claude-3-haiku-20240307"})
        assert redirector.hits, "the org's own endpoint was called"
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "outbound_forbidden", response.text
        assert internal.hits == []


def test_a_malformed_wire_request_gets_no_server_traceback(jetty, alice):
    """Found by the outside attack pass: a Responses request whose `text.format.schema` is not an object, and a
    Gemini tool whose `parameters` is a string, came back as a 502 carrying a Python traceback and server paths."""
    headers = {"Authorization": f"Bearer {alice.token}", "x-goog-api-key": alice.token}
    requests = [
        ("/v1/responses", {"model": "scripted/default", "input": "hi", "text": {"format": {"type": "json_schema",
                                                                                         "name": "x", "schema": 5}}}),
        ("/v1beta/models/scripted-default:generateContent", {"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
         "tools": [{"functionDeclarations": [{"name": "f", "parameters": "x"}]}]}),
    ]  # fmt: skip
    for path, body in requests:
        response = httpx.post(f"{jetty.url}{path}", json=body, headers=headers, timeout=30)
        assert "Traceback" not in response.text and "site-packages" not in response.text, (path, response.text)
