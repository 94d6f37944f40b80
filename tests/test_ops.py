"""Operations settings: HTTPS behind a proxy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEPLOY_WARNINGS = ("security.W004", "security.W008", "security.W012", "security.W016")


def manage(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``manage.py`` in a process of its own, with settings read from this environment."""
    # A database, broker and files of its own: nothing of the developer's configuration leaks in.
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("JETTY_", "CSRF_", "S3_", "DATABASE_", "REDIS_"))
    }
    environ.update({"JETTY_VAR_DIR": str(tmp_path), "SECRET_KEY": "x" * 60, **env})
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120
    )


HTTPS = {"JETTY_HTTPS": "true", "JETTY_SSL_REDIRECT": "true", "JETTY_PUBLIC_URL": "https://jetty.example.com/"}


def test_check_deploy_finds_no_https_warnings_with_jetty_https(tmp_path):
    plain = manage(tmp_path, "check", "--deploy")
    assert all(w in plain.stderr + plain.stdout for w in DEPLOY_WARNINGS)  # the check does see them without it
    secured = manage(tmp_path, "check", "--deploy", **HTTPS)
    assert secured.returncode == 0, secured.stderr
    assert not [w for w in DEPLOY_WARNINGS if w in secured.stderr + secured.stdout]


PROBE = """
import json
import os
from django.test import Client, RequestFactory
client = Client()
print(json.dumps({
    "forwarded": RequestFactory().get("/", HTTP_X_FORWARDED_PROTO="https").is_secure(),
    "bare": RequestFactory().get("/").is_secure(),
    "login": client.get("/login/").status_code,
    "login_forwarded": client.get("/login/", HTTP_X_FORWARDED_PROTO="https").status_code,
    "healthz": client.get("/healthz").status_code,
    "hsts": client.get("/login/", HTTP_X_FORWARDED_PROTO="https").headers.get("Strict-Transport-Security"),
    "trusted": settings.CSRF_TRUSTED_ORIGINS,
    "cookies": [settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE],
}))
"""


def test_a_request_forwarded_as_https_is_secure_and_plain_ones_are_redirected(tmp_path):
    migrated = manage(tmp_path, "migrate", "--noinput", **HTTPS)  # /healthz asks the database
    assert migrated.returncode == 0, migrated.stderr
    done = manage(tmp_path, "shell", "-c", PROBE, **HTTPS, ALLOWED_HOSTS="testserver", JETTY_HSTS_SECONDS="600")
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["forwarded"] is True and seen["bare"] is False
    assert (seen["login"], seen["login_forwarded"], seen["healthz"]) == (301, 200, 200)
    assert seen["hsts"] == "max-age=600"
    assert seen["trusted"] == ["https://jetty.example.com"]
    assert seen["cookies"] == [True, True]


def test_jetty_https_refuses_a_plain_http_public_url(tmp_path):
    done = manage(tmp_path, "check", JETTY_HTTPS="true", JETTY_PUBLIC_URL="http://jetty.example.com")
    assert done.returncode != 0 and "JETTY_HTTPS=true needs an https JETTY_PUBLIC_URL" in done.stderr
