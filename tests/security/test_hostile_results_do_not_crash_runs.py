"""Found by the outside attack pass (finding 8's class): what an agent writes ended its run as a platform fault, or
stored rows that broke every later read of the run.

A result named `@` or with a 600-character path failed the storage's own file-name rules; a name in bytes that are
not UTF-8 (in results, or anywhere in /app while the workspace is watched) and an output line holding a lone
surrogate could not be encoded; a validation report with NaN, 1e400 or deep nesting failed the database or the
parser. Each ended the run `failed` as an internal error, or stored a trajectory whose events, export and page
answered 500. Now the run ends as the agent's doing and everything about it reads back.
"""

from __future__ import annotations

import json

import httpx
import pytest

from runs.execution import parse_validation_report
from tests.test_agent_runs import assert_clean_trajectory, final_run, start_async
from tests.test_escape import runbook

HOSTILE = runbook(
    "mkdir -p /app/results && echo at > /app/results/@ && echo ok > /app/results/ok.txt",
    "python3 -c \"open(b'/app/results/bad\\xff\\xfe.txt', 'w').write('x');"
    " open(b'/app/work\\xff.txt', 'w').write('y')\"",
    "d=/app/results/$(printf 'a%.0s' $(seq 200)); mkdir -p $d/$(printf 'b%.0s' $(seq 200)) &&"
    " echo deep > $d/$(printf 'b%.0s' $(seq 200))/$(printf 'c%.0s' $(seq 150)).txt",
    'echo \'{"version": "1", "overall_score": NaN, "stages": []}\' > /app/results/validation_report.json',
    'echo \'{"type": "message", "content": "\\udcff lone"}\'; echo planted',
    "printf 'binary output \\xff\\xfe\\n'",
)


def test_hostile_names_and_reports_end_as_the_agents_doing(alice, alice_client, jetty, each_backend_worker):
    backend = each_backend_worker.backend
    run = final_run(start_async(alice_client, runbook=HOSTILE, template_variables={}, task="hostile-results"), 120)
    # The agent's doing: its report is no JSON, so its contract is broken; a user error, never a platform fault.
    assert (run.status, run.error_kind, run.error_code) == ("failed", "user", "contract_failed"), (backend, run.error)
    assert "validation_report: validation_report.json is not valid JSON" in run.error
    assert_clean_trajectory(run)
    kept = set(run.artifacts.values_list("path", flat=True))
    assert {"@", "ok.txt"} <= kept, (backend, kept)
    assert not any("bad" in path for path in kept) and not any(len(path) > 500 for path in kept)
    assert "not valid JSON" in run.job.validation["error"]
    headers = {"Authorization": f"Bearer {alice.token}"}
    for path in (f"/api/v1/runs/{run.public_id}/events", f"/api/v1/runs/{run.public_id}/export",
                 f"/api/v1/runs/{run.public_id}/artifacts/@"):  # fmt: skip
        response = httpx.get(f"{jetty.url}{path}", headers=headers, timeout=30)
        assert response.status_code == 200, (backend, path, response.status_code, response.text[:300])
    logs = " ".join(str(e.payload.get("message")) for e in run.events.filter(kind="log"))
    assert "not UTF-8" in logs and "characters and was not kept" in logs, logs


@pytest.mark.parametrize(
    "text",
    [
        b'{"overall_score": NaN}',
        b'{"overall_score": Infinity}',
        b'{"rubric_scores": {"x": 1e400}}',
        b"[" * 200_000,
        b'{"x": 1' + b"0" * 5000 + b"}",
        b'"just a string"',
    ],
)
def test_a_report_the_database_cannot_hold_is_an_error_not_a_crash(text):
    report = parse_validation_report(text)
    assert set(report) == {"error"}, report
    json.dumps(report, allow_nan=False)


def test_a_reports_nul_characters_and_lone_surrogates_are_replaced():
    report = parse_validation_report(b'{"stages": [{"name": "a\\u0000b\\udcff", "passed": true}]}')
    name = report["stages"][0]["name"]
    assert name.startswith("a\ufffdb\ufffd") and name.encode("utf-8"), name


def test_a_run_stores_its_snapshot_budget_and_no_more(alice, tmp_path, settings):
    """An agent rewriting the same files at every step stored every version: the snapshots now stop at the run's
    budget, and the file changes are still recorded."""
    from runs.agents import WorkspaceWatch

    settings.JETTY_RUN_MAX_SNAPSHOT_BYTES = 2500
    watch = WorkspaceWatch(tmp_path, alice.org.pk)
    recorded = []
    for step in range(4):
        (tmp_path / "f.bin").write_bytes(bytes([step]) * 1000)
        recorded += [e.payload for e in watch.changes(float(step))]
    assert [("sha256" in p, p.get("snapshot")) for p in recorded] == [
        (True, None),
        (True, None),
        (False, "not kept: the run stored its JETTY_RUN_MAX_SNAPSHOT_BYTES of snapshots"),
        (False, "not kept: the run stored its JETTY_RUN_MAX_SNAPSHOT_BYTES of snapshots"),
    ]
