"""The Docker snapshots carry what they promise: Node.js, Python with uv, pandas and plotly, Chromium driven by
Playwright."""

from __future__ import annotations

import uuid

import pytest

from runs.sandboxes import Limits, SandboxSpec, create_sandbox


@pytest.fixture
def docker_sandbox(settings):
    settings.JETTY_SANDBOX_ROOT = settings.VAR_DIR / "test-sandboxes" / uuid.uuid4().hex[:8]
    made = []

    def factory(snapshot: str, **limits):
        spec = SandboxSpec(
            name=f"snap-{uuid.uuid4().hex[:8]}",
            snapshot=snapshot,
            network=False,
            limits=Limits(memory_mb=1536, pids=256, wall_s=90, **limits),
        )
        made.append(create_sandbox(spec, backend="docker"))
        return made[-1]

    yield factory
    for sandbox in made:
        sandbox.destroy()


def run(sandbox, script: str) -> list[str]:
    execution = sandbox.start(["/bin/bash", "-c", script])
    lines = list(execution.lines())
    outcome = execution.wait()
    assert outcome.exit_code == 0, (lines, outcome.stderr_tail)
    return lines


def test_general_has_node_and_npm(docker_sandbox):
    lines = run(docker_sandbox("general"), "node -e 'console.log(1 + 1)'; npm --version >/dev/null && echo npm")
    assert lines == ["2", "npm"]


def test_python_has_uv_and_venv(docker_sandbox):
    lines = run(docker_sandbox("python"), "uv --version | cut -d' ' -f1; python3 -m venv /tmp/v && echo venv")
    assert lines == ["uv", "venv"]


def test_python_has_pandas_and_plotly_offline(docker_sandbox):
    script = (
        "import pandas as pd, plotly.express as px; "
        "df = pd.DataFrame({'k': ['a', 'b', 'a'], 'v': [1, 2, 3]}); "
        "fig = px.bar(df.groupby('k', as_index=False)['v'].sum(), x='k', y='v'); "
        "print(fig.data[0].type); print([int(y) for y in fig.data[0].y])"
    )
    assert run(docker_sandbox("python"), f'python3 -c "{script}"') == ["bar", "[4, 2]"]


def test_browser_renders_a_page_with_playwright(docker_sandbox):
    script = (
        "from playwright.sync_api import sync_playwright\n"
        "with sync_playwright() as p:\n"
        "    b = p.chromium.launch(executable_path='/usr/bin/chromium', args=['--no-sandbox', '--disable-gpu',"
        " '--disable-dev-shm-usage'])\n"
        "    page = b.new_page()\n"
        "    page.set_content('<h1 id=t>jetty</h1><script>document.title = 1 + 2</script>')\n"
        "    print(page.inner_text('#t'), page.title())\n"
        "    page.screenshot(path='/app/results/shot.png')\n"
        "    b.close()\n"
    )
    sandbox = docker_sandbox("browser")
    (sandbox.assets / "check.py").write_text(script)
    assert run(sandbox, "HOME=/tmp python3 /app/assets/check.py") == ["jetty 3"]
    assert (sandbox.results / "shot.png").read_bytes()[:4] == b"\x89PNG"
