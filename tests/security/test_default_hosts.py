"""The defaults: the site answers only for its public URL's host and loopback (ALLOWED_HOSTS was "*"), so the
WebSocket origin check (Channels' AllowedHostsOriginValidator, which reads the same list) refuses pages of other
sites; and session and CSRF cookies are Secure whenever the public URL is https."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.factories import make_run

ROOT = Path(__file__).resolve().parents[2]


def status_for_host(base_url: str, host: str) -> int:
    request = urllib.request.Request(f"{base_url}/login/", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_a_host_not_in_the_list_is_a_400(jetty):
    port = jetty.url.rsplit(":", 1)[1]
    assert status_for_host(jetty.url, "evil.example") == 400
    assert status_for_host(jetty.url, f"evil.example:{port}") == 400
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
        assert status_for_host(jetty.url, host) == 200, host


def session_cookie(user) -> str:
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def test_a_websocket_from_a_foreign_origin_is_refused(jetty, alice):
    run = make_run(alice.org)
    url = jetty.url.replace("http://", "ws://") + f"/ws/runs/{run.public_id}/"
    cookie = session_cookie(alice.member)
    with pytest.raises(InvalidStatus) as refused:
        connect(url, origin="http://evil.example", additional_headers={"Cookie": cookie}, open_timeout=10)
    assert refused.value.response.status_code == 403
    with connect(url, origin=jetty.url, additional_headers={"Cookie": cookie}, open_timeout=10) as socket:
        socket.close()


def settings_under(env: dict[str, str]) -> dict:
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({'hosts': s.ALLOWED_HOSTS, 'session': s.SESSION_COOKIE_SECURE, "
        "'csrf': s.CSRF_COOKIE_SECURE}))"
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(("JETTY_", "ALLOWED_HOSTS"))}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**base, "DJANGO_SETTINGS_MODULE": "jetty_site.settings", **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_hosts_and_secure_cookies_follow_the_public_url():
    https = settings_under({"JETTY_PUBLIC_URL": "https://jetty.example.com"})
    assert https == {
        "hosts": ["jetty.example.com", "127.0.0.1", "localhost", "[::1]"],
        "session": True,
        "csrf": True,
    }
    plain = settings_under({"JETTY_PUBLIC_URL": "http://10.1.2.3:8000", "JETTY_ALLOWED_HOSTS": "jetty.internal, a.b"})
    assert plain == {
        "hosts": ["10.1.2.3", "127.0.0.1", "localhost", "[::1]", "jetty.internal", "a.b"],
        "session": False,
        "csrf": False,
    }
