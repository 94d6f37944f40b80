"""Finding 5: another org's blobs. Workspace snapshots are stored once for all orgs by their SHA-256, and a run
page served any blob its run's events named, ingested events included, so a tenant read any blob whose digest it
knew.

Org A's agent run writes a secret file (the platform stores its snapshot); org B ingests a trajectory naming that
digest: the reference is dropped and reported, B's run page cannot serve it, and A still can.
"""

from __future__ import annotations

import time

from django.test import Client

from tests.test_agent_runs import final_run, start_async
from tests.test_escape import runbook
from trajectories.models import Run

SECRET = "acme launch codes 0000\n"


def test_another_orgs_blob_cannot_be_read_by_naming_its_digest(alice, alice_client, bob, bob_api, worker):
    run_id = start_async(
        alice_client, runbook=runbook(f"printf '{SECRET}' > /app/secret.txt; sleep 1; echo done"), template_variables={}
    )
    run = final_run(run_id, 120)
    assert run.status == "succeeded", run.error
    change = run.events.get(kind="file.change", payload__path="/app/secret.txt")
    digest = change.payload["sha256"]

    home = Client()
    home.force_login(alice.member)
    mine = home.get(f"/runs/{run_id}/blobs/{digest}")
    assert mine.status_code == 200 and b"".join(mine.streaming_content).decode() == SECRET

    now = time.time()
    doc = {
        "format": "jetty.trajectory",
        "version": 1,
        "run": {"id": "run_elsewhere0000000001", "task": "steal", "kind": "agent", "status": "succeeded",
                "created": now, "metadata": {}},
        "events": [
            {"seq": 1, "kind": "file.change", "ts": now,
             "payload": {"path": "/app/secret.txt", "action": "created", "size": len(SECRET), "source": "workspace",
                         "sha256": digest, "previous_sha256": digest}},
        ],
        "labels": [],
        "steps": {},
        "artifacts": [],
    }  # fmt: skip
    answer = bob_api.post("/api/v1/runs/ingest", doc, format="json")
    assert answer.status_code == 201, answer.content
    body = answer.json()
    dropped = [item for item in body["report"]["unmapped"] if digest in item["what"]]
    assert dropped and "dropped" in dropped[0]["kept"], body["report"]
    stolen = Run.objects.get(public_id=body["run"]["id"])
    assert "sha256" not in stolen.events.get(kind="file.change").payload

    thief = Client()
    thief.force_login(bob.member)
    assert thief.get(f"/runs/{stolen.public_id}/blobs/{digest}").status_code == 404
    assert thief.get(f"/runs/{run_id}/blobs/{digest}").status_code == 404
    # Even an event naming the digest written straight into B's run (as a hostile agent's own output line
    # would be) serves nothing: B's org never held the content.
    event = stolen.events.get(kind="file.change")
    event.payload = {**event.payload, "sha256": digest}
    event.save(update_fields=["payload"])
    assert thief.get(f"/runs/{stolen.public_id}/blobs/{digest}").status_code == 404

    again = home.get(f"/runs/{run_id}/blobs/{digest}")
    assert again.status_code == 200 and b"".join(again.streaming_content).decode() == SECRET
