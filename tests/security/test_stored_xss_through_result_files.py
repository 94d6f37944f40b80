"""Finding 3: stored XSS through result files. An agent writes `/app/results/x.html` and `x.svg` with script; no
way of opening them (the run page's links, the links without `?download`, the API, the workspace blobs, an
upload, a copy ingested into another org) may run that script as the platform's origin. Safe types (PNG, JSON)
still open inline, with exactly their type."""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request
from html.parser import HTMLParser

import pytest

from tests.support.browser import sign_in
from tests.test_agent_runs import final_run, start_async

PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c63000100000500010d0a2db40000000049454e44ae426082"
    )
).decode()
SCRIPT = "localStorage.setItem('xss', document.domain); document.title = 'pwned'"
HTML = f"<html><body><h1>results</h1><script>{SCRIPT}</script></body></html>"
SVG = f'<svg xmlns="http://www.w3.org/2000/svg"><script>{SCRIPT}</script><circle r="5"/></svg>'
HOSTILE = ("x.html", "x.svg")
SAFE = {"x.png": "image/png", "data.json": "application/json"}

RUNBOOK = f"""---
version: 1.0.0
evaluation: programmatic
---
# Objective
Leave results that script whoever opens them.

## Step 1
```bash
mkdir -p /app/results && cd /app/results && cat > x.html <<'END'
{HTML}
END
cat > x.svg <<'END'
{SVG}
END
echo '{{"ok": true}}' > data.json && echo {PNG} | base64 -d > x.png && ls
```
"""


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs.extend(v for k, v in attrs if k == "href" and v)


def opener_for(user, base_url: str):
    """GET with the user's session cookie (a session made in the database, as the browser tests do)."""
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    name = settings.SESSION_COOKIE_NAME
    cookie = client.cookies[name].value

    def get(path: str):
        request = urllib.request.Request(base_url + path, headers={"Cookie": f"{name}={cookie}"})
        try:
            return urllib.request.urlopen(request, timeout=30)
        except urllib.error.HTTPError as error:
            return error

    return get


def bearer(base_url: str, token: str):
    def get(path: str):
        request = urllib.request.Request(base_url + path, headers={"Authorization": f"Bearer {token}"})
        return urllib.request.urlopen(request, timeout=30)

    return get


def assert_cannot_script(response, where: str) -> None:
    headers = response.headers
    assert response.status == 200, where
    assert headers.get("X-Content-Type-Options") == "nosniff", (where, dict(headers))
    assert (headers.get("Content-Disposition") or "").startswith("attachment"), (where, dict(headers))
    assert re.search(r"(^|;)\s*sandbox\b", headers.get("Content-Security-Policy") or ""), (where, dict(headers))


def assert_safe_inline(response, content_type: str, where: str) -> None:
    headers = response.headers
    assert response.status == 200, where
    assert headers.get_content_type() == content_type, (where, dict(headers))
    assert headers.get("X-Content-Type-Options") == "nosniff", (where, dict(headers))
    assert not (headers.get("Content-Disposition") or "").startswith("attachment"), (where, dict(headers))
    assert re.search(r"(^|;)\s*sandbox\b", headers.get("Content-Security-Policy") or ""), (where, dict(headers))


def result_links(get, run_id: str) -> dict[str, str]:
    page = get(f"/runs/{run_id}/")
    assert page.status == 200
    parser = Links()
    parser.feed(page.read().decode())
    prefix = f"/runs/{run_id}/files/"
    return {href[len(prefix) :].split("?")[0]: href for href in parser.hrefs if href.startswith(prefix)}


def assert_run_files_cannot_script(get, api_get, run_id: str) -> None:
    links = result_links(get, run_id)
    assert set(HOSTILE) | set(SAFE) <= set(links), links
    for name in HOSTILE:
        assert_cannot_script(get(links[name]), f"{name} from the run page's link")
        assert_cannot_script(get(f"/runs/{run_id}/files/{name}"), f"{name} without ?download")
        assert_cannot_script(api_get(f"/api/v1/runs/{run_id}/artifacts/{name}"), f"{name} from the API")
    for name, content_type in SAFE.items():
        assert_safe_inline(get(f"/runs/{run_id}/files/{name}"), content_type, name)
        assert_safe_inline(api_get(f"/api/v1/runs/{run_id}/artifacts/{name}"), content_type, f"{name} from the API")


def upload(base_url: str, token: str, name: str, content: str) -> str:
    boundary = "jettyboundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"Content-Type: text/html\r\n\r\n{content}\r\n--{boundary}--\r\n"
    ).encode()
    request = urllib.request.Request(
        f"{base_url}/api/v1/files",
        data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    return json.loads(urllib.request.urlopen(request, timeout=30).read())["file_path"]


def ingest(base_url: str, token: str, doc: dict) -> str:
    request = urllib.request.Request(
        f"{base_url}/api/v1/runs/ingest",
        data=json.dumps(doc).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    return json.loads(urllib.request.urlopen(request, timeout=30).read())["run"]["id"]


@pytest.mark.browser
def test_result_files_cannot_script_the_platform(alice, alice_client, bob, jetty, each_backend_worker, chromium):
    run_id = start_async(alice_client, runbook=RUNBOOK, template_variables={}, task="xss")
    run = final_run(run_id, 120)
    assert run.status == "succeeded", (each_backend_worker.backend, run.error)
    get, api_get = opener_for(alice.member, jetty.url), bearer(jetty.url, alice.token)
    assert_run_files_cannot_script(get, api_get, run_id)

    # The workspace as each step left it (blobs of file changes).
    changes = {
        e.payload["path"].rsplit("/", 1)[-1]: e.payload["sha256"]
        for e in run.events.filter(kind="file.change")
        if e.payload.get("sha256")
    }
    for name in HOSTILE:
        assert name in changes, changes
        assert_cannot_script(get(f"/runs/{run_id}/blobs/{changes[name]}"), f"blob of {name}")

    # A copy ingested into another org, its hostile files declared text/html, is served the same way.
    exported = json.loads(api_get(f"/api/v1/runs/{run_id}/export?format=trajectory&artifacts=inline").read())
    for artifact in exported["artifacts"]:
        if artifact["path"].endswith((".html", ".svg")):
            artifact["content_type"] = "text/html"
    copy_id = ingest(jetty.url, bob.token, exported)
    assert_run_files_cannot_script(opener_for(bob.member, jetty.url), bearer(jetty.url, bob.token), copy_id)

    # Uploads read back through the files API.
    key = upload(jetty.url, alice.token, "x.html", HTML)
    assert_cannot_script(api_get(f"/api/v1/file/{key}"), "an upload")

    # In a real browser: opening the files' links runs no script in the platform's origin.
    context = chromium.new_context(base_url=jetty.url, accept_downloads=True)
    page = context.new_page()
    sign_in(page, jetty.url, alice.member)
    for name in HOSTILE:
        for url in (f"/runs/{run_id}/files/{name}", f"/runs/{run_id}/files/{name}?download=1"):
            try:
                page.goto(url)
            except Exception as error:  # a download aborts the navigation: that is the point
                assert "Download is starting" in str(error) or "ERR_ABORTED" in str(error), error
            page.goto(f"/runs/{run_id}/")
            assert page.evaluate("localStorage.getItem('xss')") is None, (name, url)
            assert page.title() != "pwned"
    context.close()
