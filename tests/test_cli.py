"""The `jetty` console script against a live server: login, validate, run (streamed), status, logs, download."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from .test_runbooks import GOOD

JETTY = Path(sys.executable).parent / "jetty"
RUNBOOK = """---
version: 1.0.0
evaluation: programmatic
agent: jetty-agent
---
# Objective
Greet {{name}}.

```bash
mkdir -p /app/results && cat /app/assets/names.txt > /app/results/names.txt && echo "hi {{name}}" > /app/results/hi.txt
```
"""


def cli(home: Path, *args: str, url: str | None = None, token: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JETTY_")} | {"HOME": str(home)}
    env.pop("XDG_CONFIG_HOME", None)
    env |= {"JETTY_URL": url} if url else {}
    env |= {"JETTY_TOKEN": token} if token else {}
    return subprocess.run([str(JETTY), *args], env=env, capture_output=True, text=True, timeout=180, cwd=home)


def test_login_stores_the_token_privately_and_a_bad_token_is_refused(tmp_path, alice, jetty):
    refused = cli(tmp_path, "login", "--url", jetty.url, "--token", "jty_wrong")
    assert refused.returncode == 2 and "401" in refused.stderr
    done = cli(tmp_path, "login", "--url", jetty.url, "--token", alice.token)
    assert done.returncode == 0, done.stderr
    token = tmp_path / ".config/jetty/token"
    assert token.read_text().strip() == alice.token
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert cli(tmp_path, "status", "run_nope").returncode == 2  # logged in: a 404 is a clear failure


def test_validate_prints_findings_and_fails_on_errors(tmp_path, alice, jetty):
    (tmp_path / "good.md").write_text(GOOD)
    (tmp_path / "bad.md").write_text(GOOD.replace("evaluation: programmatic", "evaluation: vibes"))
    good = cli(tmp_path, "validate", "good.md", url=jetty.url, token=alice.token)
    assert good.returncode == 0 and "0 error(s), 0 warning(s)" in good.stdout
    bad = cli(tmp_path, "validate", "bad.md", url=jetty.url, token=alice.token)
    assert bad.returncode == 1
    assert "bad.md:3: error:" in bad.stdout and "[evaluation_unknown]" in bad.stdout


def test_run_streams_then_status_logs_and_download(tmp_path, alice, jetty, worker):
    (tmp_path / "greet.md").write_text(RUNBOOK)
    (tmp_path / "names.txt").write_text("ada\nbo\n")
    ran = cli(
        tmp_path, "run", "greet.md", "--param", "name=ada", "--file", "names.txt", url=jetty.url, token=alice.token
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "] command " in ran.stdout and "] model.call " in ran.stdout
    run_id = next(line.split(":")[0] for line in ran.stdout.splitlines() if line.endswith(": succeeded"))

    status = cli(tmp_path, "status", run_id, url=jetty.url, token=alice.token)
    assert status.returncode == 0 and f"{run_id}: succeeded" in status.stdout and "agent=jetty-agent" in status.stdout
    logs = cli(tmp_path, "logs", run_id, url=jetty.url, token=alice.token)
    assert logs.stdout.splitlines()[0].startswith("[1] run.state") and "] command " in logs.stdout
    fetched = cli(tmp_path, "download", run_id, "--dir", "out", url=jetty.url, token=alice.token)
    assert fetched.returncode == 0, fetched.stderr
    assert (tmp_path / "out/hi.txt").read_text() == "hi ada\n"
    assert (tmp_path / "out/names.txt").read_text() == "ada\nbo\n"


def test_push_stores_a_runbook_folder_as_versions_that_diff(tmp_path, alice, jetty):
    import shutil

    from runs.models import Task

    folder = tmp_path / "pr-review"
    shutil.copytree(Path(__file__).resolve().parents[1] / "examples" / "pr-review", folder)
    (folder / "logo.png").write_bytes(b"\x89PNG")
    first = cli(
        tmp_path, "push", "pr-review", "--collection", "reviews", "-m", "first", url=jetty.url, token=alice.token
    )
    assert first.returncode == 0, first.stderr
    assert "pushed reviews/pr-review version 1" in first.stdout and "skipping logo.png" in first.stderr
    task = Task.objects.get(collection__org=alice.org, collection__name="reviews", name="pr-review")
    stored = task.version(1)
    assert stored.runbook == (folder / "RUNBOOK.md").read_text() and stored.message == "first"
    assert "README.md" in stored.files and any(p.startswith("examples/") for p in stored.files)
    runbook = folder / "RUNBOOK.md"
    runbook.write_text(runbook.read_text().replace("# Objective", "# Objective\nReview carefully.", 1))
    second = cli(tmp_path, "push", "pr-review", "--collection", "reviews", url=jetty.url, token=alice.token)
    assert "version 2" in second.stdout
    shown = cli(tmp_path, "diff", "reviews/pr-review", url=jetty.url, token=alice.token)
    assert shown.returncode == 0 and "+Review carefully." in shown.stdout
    (folder / "RUNBOOK.md").write_text("no frontmatter\n")
    refused = cli(tmp_path, "push", "pr-review", "--collection", "reviews", url=jetty.url, token=alice.token)
    assert refused.returncode == 2 and "422" in refused.stderr and "frontmatter" in refused.stderr
    assert Task.objects.get(pk=task.pk).latest_version == 2
