"""Finding 1 (critical): host files read as root through links an agent planted in /app/results.

After a run the worker, as root, collects /app/results from the host side. A runbook that replaced summary.md by a
link to a host file (and stopped its agent before the final answer) got that file as its final answer; links in
subfolders, hard links, a FIFO named like the validation report and the results folder itself swapped for a link
are the rest of the class. Each attack runs as a whole agent run in both sandbox backends; afterwards no byte of
the host secret is in any stored row, artifact, blob, export, run page or API answer, and every run ended as the
agent's doing (succeeded, or failed as a user error), never as a platform fault.
"""

from __future__ import annotations

from tests.security.host_secret import host_secret_fixture, places_holding  # noqa: F401 (the fixture)
from tests.test_agent_runs import assert_clean_trajectory, final_run, start_async
from tests.test_escape import runbook

STOP_AGENT = "kill -9 $PPID"  # the agent dies before its final answer: the summary file stands in for it


def attacks(secret) -> dict[str, str]:
    folder = secret.folder
    return {
        "links-in-results": runbook(
            f"ln -sf {folder}/summary.md /app/results/summary.md; ln -s /etc /app/results/etc;"
            f" mkdir -p /app/results/sub && ln -s {folder}/secret.txt /app/results/sub/leak.txt;"
            f" ln -s {folder} /app/results/sub/host;"
            " echo mine > /app/mine.txt && ln /app/mine.txt /app/results/hard.txt;"
            " mkfifo /app/results/validation_report.json; echo planted > /app/results/ok.txt;"
            " ls -la /app/results; echo planted",
            STOP_AGENT,
        ),
        "report-is-a-link": runbook(
            f"ln -s {folder}/validation_report.json /app/results/validation_report.json;"
            f" ln -s {folder}/summary.md /app/results/summary.md; echo planted",
            STOP_AGENT,
        ),
        "results-folder-is-a-link": runbook(
            f"rm -rf /app/results && ln -s {folder} /app/results; echo planted", STOP_AGENT
        ),
    }


def test_links_in_results_hand_no_host_file_to_the_tenant(alice, alice_client, host_secret, each_backend_worker):
    backend = each_backend_worker.backend
    started = {
        name: start_async(alice_client, runbook=text, template_variables={}, task=f"results-{name}")
        for name, text in attacks(host_secret).items()
    }
    runs = {name: final_run(run_id, 120) for name, run_id in started.items()}
    for name, run in runs.items():
        assert run.status in ("succeeded", "failed"), (backend, name, run.status, run.error)
        assert run.error_kind in ("", "user"), (backend, name, run.error_kind, run.error)
        assert_clean_trajectory(run)
        commands = [e.payload.get("output", "") for e in run.events.filter(kind="command")]
        assert any("planted" in output for output in commands), (backend, name, commands)  # the attack did run
    leaks = places_holding(host_secret, list(runs.values()), alice)
    assert leaks == [], (backend, leaks)
    kept = set(runs["links-in-results"].artifacts.values_list("path", flat=True))
    assert "ok.txt" in kept and not kept & {"summary.md", "validation_report.json", "sub/leak.txt", "hard.txt"}
    logged = {e.payload.get("message") for e in runs["links-in-results"].events.filter(kind="log")}
    assert {
        "/app/results/summary.md is a link and was not read",
        "/app/results/validation_report.json is not a regular file and was not read",
        "/app/results/hard.txt is a hard link and was not kept",
        "/app/results/sub/leak.txt is a link and was not kept",
    } <= logged, (backend, logged)
