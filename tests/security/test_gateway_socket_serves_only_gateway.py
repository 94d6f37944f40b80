"""Finding 4, the socket half: the unix socket sandboxes reach the gateway through served the whole web app.

Connected to the socket directly (as a sandbox's relay does), with a valid org token: the UI, the API, the admin
login, the health check and a WebSocket upgrade are refused; the model routes are served.
"""

from __future__ import annotations

import http.client
import json
import socket

from django.conf import settings


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(self.path)


def over_socket(
    process_env: dict, method: str, path: str, token: str, body: dict | None = None, headers: dict | None = None
) -> tuple[int, bytes]:
    connection = UnixConnection(process_env["JETTY_GATEWAY_SOCKET"])
    sent = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", **(headers or {})}
    connection.request(method, path, body=None if body is None else json.dumps(body), headers=sent)
    response = connection.getresponse()
    status, data = response.status, response.read()
    connection.close()
    return status, data


def test_the_gateway_socket_serves_only_the_model_routes(alice, jetty, process_env):
    for method, path in (
        ("GET", "/api/v1/runs"),
        ("GET", "/api/v1/tasks/"),
        ("GET", "/admin/login/"),
        ("GET", "/login/"),
        ("GET", "/runs/"),
        ("GET", "/"),
        ("GET", "/healthz"),
        ("POST", "/api/v1/runs/ingest"),
        ("GET", "/v1/not-a-gateway-route"),
    ):
        status, data = over_socket(process_env, method, path, alice.token)
        assert status in (403, 404), (method, path, status, data[:200])
        assert json.loads(data)["error"]["code"] == "gateway_only", (path, data[:200])
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13"}
    upgrade["Sec-WebSocket-Key"] = "dGhlIHNhbXBsZSBub25jZQ=="
    status, _ = over_socket(process_env, "GET", "/ws/runs/run_x/", alice.token, headers=upgrade)
    assert status != 101, status

    status, data = over_socket(process_env, "GET", "/v1/models", alice.token)
    assert status == 200 and json.loads(data)["object"] == "list"
    chat = {"model": "scripted/default", "messages": [{"role": "user", "content": "hi"}]}
    status, data = over_socket(process_env, "POST", "/v1/chat/completions", alice.token, chat)
    assert status == 200 and json.loads(data)["choices"][0]["message"]["content"] == "echo: hi"
    messages = {"model": "scripted/default", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}
    status, data = over_socket(process_env, "POST", "/v1/messages", alice.token, messages)
    assert status == 200, data[:200]
    status, data = over_socket(process_env, "POST", "/v1/messages/count_tokens", alice.token, messages)
    assert status == 200 and json.loads(data)["input_tokens"] > 0
    responses = {"model": "scripted/default", "input": "hi"}
    status, data = over_socket(process_env, "POST", "/v1/responses", alice.token, responses)
    assert status == 200, data[:200]
    gemini = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    status, data = over_socket(
        process_env, "POST", "/v1beta/models/scripted/default:generateContent", alice.token, gemini
    )
    assert status == 200, data[:200]
    # Over TCP the same server still serves the whole site.
    assert settings.ROOT_URLCONF == "jetty_site.urls"
