"""Replay and fork: a recorded run runs again in a fresh sandbox with the gateway answering its model calls from
the recording (three real CLIs and jetty-agent), a changed runbook stops the replay at the first mismatch, a fork
replays k calls and goes on with another model, and the per-step workspace snapshots rebuild the files on disk."""

from __future__ import annotations

import pytest
from django.core.files.storage import default_storage

from trajectories.actions import blob_name
from trajectories.models import Run

from .test_agent_clis import describe, run_cli
from .test_workflows import finished as wait_for_final

VOLATILE = {
    "id",
    "ts",
    "created",
    "created_at",
    "latency_ms",
    "ttfb_ms",
    "duration_ms",
    "duration_s",
    "elapsed_ms",
    "usage",
    "replayed_from",
}


def finished(public_id: str, timeout: float = 180) -> Run:
    return wait_for_final(public_id, timeout)


def steady(value):
    """An event payload without what differs between two runs by nature (times, durations, usage, run ids)."""
    if isinstance(value, dict):
        return {k: steady(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [steady(v) for v in value]
    return value


def trajectory(run: Run) -> list[tuple[str, object]]:
    """The run's events as comparable values. File changes are left to ``workspace``: the watcher notices them
    when it next scans, which may catch a file half written or after the next model call."""
    out = []
    for event in run.events.order_by("seq"):
        if event.kind == "file.change":
            continue
        if event.kind == "model.call":
            out.append((event.kind, steady(event.payload.get("response"))))
        elif event.kind == "run.state":
            out.append((event.kind, event.payload.get("status")))
        elif event.kind != "log":
            out.append((event.kind, steady(event.payload)))
    return out


def workspace(run: Run) -> dict[str, str | None]:
    """Each file's last recorded content (its digest), as the file changes left it."""
    return {e.payload["path"]: e.payload.get("sha256") for e in run.events.filter(kind="file.change").order_by("seq")}


def artifacts(run: Run) -> dict[str, str]:
    return {a.path: a.sha256 for a in run.artifacts.all()}


def replay(api, run: Run, path: str = "replay", **body) -> Run:
    response = api.post(f"/api/v1/runs/{run.public_id}/{path}", body, format="json")
    assert response.status_code == 202, response.content
    return finished(response.json()["run_id"])


@pytest.mark.parametrize("agent", ["jetty-agent", "claude-code", "codex", "gemini-cli"])
def test_a_replay_redoes_the_run_from_its_recording(agent, alice_client, alice_api, worker):
    _, summary = run_cli(alice_client, agent, "off")
    source = Run.objects.get(public_id=summary["run_id"])
    assert source.status == "succeeded", describe(source.public_id)
    again = replay(alice_api, source)
    assert again.status == "succeeded", describe(again.public_id)
    assert again.metadata["replay"]["source"] == source.public_id and again.metadata["replay"]["until"] is None
    assert artifacts(again) == artifacts(source)
    assert trajectory(again) == trajectory(source)
    assert workspace(again) == workspace(source)
    calls = list(again.events.filter(kind="model.call").order_by("seq"))
    assert calls and [c.payload["replayed_from"]["index"] for c in calls] == list(range(len(calls)))
    assert all(c.provider == "replay" and c.prompt_tokens == 0 and not c.cost_usd for c in calls)
    assert again.total_tokens == 0 and again.cost_usd == 0


@pytest.mark.parametrize("agent", ["jetty-agent", "claude-code"])
def test_a_changed_runbook_stops_the_replay_at_the_first_mismatch(agent, alice_client, alice_api, worker):
    _, summary = run_cli(alice_client, agent, "off")
    source = Run.objects.get(public_id=summary["run_id"])
    changed = source.job.runbook.replace("Count the words", "Count the letters")
    assert changed != source.job.runbook
    again = replay(alice_api, source, runbook=changed)
    assert again.status == "failed"
    assert again.error.startswith(f"Replay stopped at model call 1 of the replay of {source.public_id}")
    assert "Count the words" in again.error and "Count the letters" in again.error
    assert again.events.filter(kind="model.call").count() == 0


def test_a_fork_replays_k_calls_then_goes_on_with_another_model(alice_client, alice_api, worker):
    _, summary = run_cli(alice_client, "jetty-agent", "off")
    source = Run.objects.get(public_id=summary["run_id"])
    total = source.events.filter(kind="model.call").count()
    assert total >= 4
    fork = replay(alice_api, source, "fork", at=2, model="scripted/alt")
    assert fork.status == "succeeded", describe(fork.public_id)
    assert fork.model == "scripted/alt" and fork.metadata["replay"] == {
        **fork.metadata["replay"],
        "mode": "fork",
        "until": 2,
        "source": source.public_id,
    }
    calls = list(fork.events.filter(kind="model.call").order_by("seq"))
    replayed, live = calls[:2], calls[2:]
    assert [c.payload.get("replayed_from", {}).get("index") for c in replayed] == [0, 1]
    assert all(c.prompt_tokens == 0 and not c.cost_usd for c in replayed)
    assert live and all("replayed_from" not in c.payload and c.model == "scripted/alt" for c in live)
    assert all(c.prompt_tokens > 0 for c in live)
    bad = alice_api.post(f"/api/v1/runs/{source.public_id}/fork", {"at": total + 1}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "at"
    assert alice_api.post(f"/api/v1/runs/{source.public_id}/fork", {}, format="json").status_code == 400


def test_workspace_snapshots_rebuild_the_files_on_disk(alice_client, worker):
    _, summary = run_cli(alice_client, "jetty-agent", "off")
    run = Run.objects.get(public_id=summary["run_id"])
    changes = list(run.events.filter(kind="file.change").order_by("seq"))
    latest = {}
    for change in changes:
        latest[change.payload["path"]] = change.payload.get("sha256")
    for path, sha in artifacts(run).items():
        assert latest[f"/app/results/{path}"] == sha, path
        with default_storage.open(blob_name(sha), "rb") as blob, run.artifacts.get(path=path).file.open("rb") as disk:
            assert blob.read() == disk.read()
    greeting = next(c for c in changes if c.payload["path"] == "/app/results/greeting.txt")
    assert "+hello ada from jetty" in greeting.payload["diff"]


def test_other_orgs_cannot_replay_or_fork(alice_client, bob_api, worker):
    _, summary = run_cli(alice_client, "jetty-agent", "off")
    for path, body in (("replay", {}), ("fork", {"at": 1})):
        response = bob_api.post(f"/api/v1/runs/{summary['run_id']}/{path}", body, format="json")
        assert response.status_code == 404


def test_the_cli_replays_and_forks(tmp_path, alice, alice_client, jetty, worker):
    from .test_cli import cli

    _, summary = run_cli(alice_client, "jetty-agent", "off")
    source = summary["run_id"]
    done = cli(tmp_path, "replay", source, "--wait", url=jetty.url, token=alice.token)
    assert done.returncode == 0, done.stderr
    replay_id = done.stdout.split()[3]
    assert f"{replay_id}: succeeded" in done.stdout
    assert Run.objects.get(public_id=replay_id).metadata["replay"]["source"] == source
    forked = cli(
        tmp_path, "fork", source, "--at", "1", "--model", "scripted/alt", "--wait", url=jetty.url, token=alice.token
    )
    assert forked.returncode == 0, forked.stderr
    fork = Run.objects.get(public_id=forked.stdout.split()[3])
    assert fork.model == "scripted/alt" and fork.metadata["replay"]["until"] == 1
    refused = cli(tmp_path, "fork", source, "--at", "999", url=jetty.url, token=alice.token)
    assert refused.returncode != 0 and "`at` must be from 0 to" in refused.stderr


def test_the_run_page_replays_forks_and_lists_them(alice, bob, alice_client, worker):
    from django.test import Client

    _, summary = run_cli(alice_client, "jetty-agent", "off")
    source = Run.objects.get(public_id=summary["run_id"])
    member, viewer, outsider = Client(), Client(), Client()
    member.force_login(alice.member)
    viewer.force_login(alice.viewer)
    outsider.force_login(bob.owner)
    page = member.get(f"/runs/{source.public_id}/").content.decode()
    assert 'id="replay-run"' in page
    assert 'id="replay-run"' not in viewer.get(f"/runs/{source.public_id}/").content.decode()
    assert viewer.post(f"/runs/{source.public_id}/replay").status_code == 403
    assert outsider.post(f"/runs/{source.public_id}/replay").status_code == 404
    second_call = source.events.filter(kind="model.call").order_by("seq")[1]
    detail = member.get(f"/runs/{source.public_id}/events/{second_call.seq}").content.decode()
    assert f'data-url="/runs/{source.public_id}/fork-form?at=1"' in detail
    form = member.get(f"/runs/{source.public_id}/fork-form?at=1").content.decode()
    assert "<option>scripted/default</option>" in form and "<option>scripted/alt</option>" in form
    response = member.post(f"/runs/{source.public_id}/fork", {"at": "1", "model": "scripted/alt"})
    assert response.status_code == 302 and response["Location"].startswith(f"/compare/?runs={source.public_id},run_")
    fork = finished(response["Location"].rsplit(",", 1)[1])
    assert fork.status == "succeeded" and fork.model == "scripted/alt"
    replayed = member.post(f"/runs/{source.public_id}/replay")
    again = finished(replayed["Location"].split("/")[2])
    assert again.status == "succeeded"
    listing = member.get(f"/runs/{source.public_id}/").content.decode()
    assert fork.public_id in listing and again.public_id in listing and "fork after 1" in listing
    assert "Replay of" in member.get(f"/runs/{again.public_id}/").content.decode()
    change = source.events.filter(kind="file.change").first()
    blob = member.get(f"/runs/{source.public_id}/blobs/{change.payload['sha256']}")
    assert blob.status_code == 200 and b"".join(blob.streaming_content)
    assert outsider.get(f"/runs/{source.public_id}/blobs/{change.payload['sha256']}").status_code == 404
    assert member.get(f"/runs/{source.public_id}/blobs/{'0' * 64}").status_code == 404
