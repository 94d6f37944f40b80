"""The web UI's pages, in process: who sees what, the runs table's filters, the timeline's windows and search,
the compare view, the task pages. The browser tests (test_ui_browser.py) drive the same pages in Chromium."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from orgs.models import Collection, Membership, Role
from runs.models import Task, TaskVersion
from tests.factories import STORED_RUNBOOK, command, make_run
from trajectories.actions import EventRecord, append_events, record_label
from trajectories.models import Run
from trajectories.schemas import model_call


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def seqs(html: str) -> list[int]:
    return [int(s) for s in re.findall(r'data-seq="(\d+)"', html)]


@pytest.fixture
def long_run(alice) -> Run:
    run = make_run(alice.org, task="long", events=0)
    append_events(
        run.pk,
        [command(f"echo step {i}", 1.0 + i, output=f"line {i}") for i in range(1, 1001)],
    )
    run.refresh_from_db()
    return run


def test_pages_need_a_login():
    for url in ("/runs/", "/collections/", "/labelling/", "/dashboards/", "/compare/?runs=a,b"):
        response = Client().get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), url


def test_it_logs_in_with_a_password(alice):
    client = Client()
    response = client.post("/login/", {"username": "acme-owner", "password": "pw-acme"})
    assert response.status_code == 302 and response["Location"] == "/runs/"
    assert client.get("/runs/").status_code == 200
    wrong = Client().post("/login/", {"username": "acme-owner", "password": "nope"})
    assert wrong.status_code == 200 and b"correct username and password" in wrong.content


def test_runs_table_filters_and_pages(alice):
    for i in range(55):
        make_run(alice.org, task="alpha" if i % 2 else "beta", model="scripted/one" if i < 5 else "scripted/two")
    client = signed_in(alice.member)
    page = client.get("/runs/").content.decode()
    assert page.count('class="run-row"') == 50 and "page 1 of 2" in page
    assert client.get("/runs/?page=2").content.decode().count('class="run-row"') == 5
    assert client.get("/runs/?task=alpha").content.decode().count('class="run-row"') == 27
    assert client.get("/runs/?model=scripted/one").content.decode().count('class="run-row"') == 5
    assert client.get("/runs/?status=failed").content.decode().count('class="run-row"') == 0
    fragment = client.get("/runs/?task=beta", HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in fragment and fragment.count('class="run-row"') == 28


def test_runs_table_filters_by_label_date_and_event_text(alice):
    graded = make_run(alice.org, task="t")
    make_run(alice.org, task="t")
    record_label(graded, "eval.pass", True, source="human", author="acme-owner")
    searched = make_run(alice.org, task="t", events=0)
    append_events(searched.pk, [command("grep needle-42 file")])
    client = signed_in(alice.owner)
    assert re.findall(r'data-run="(\w+)"', client.get("/runs/?label=eval.pass=true").content.decode()) == [
        graded.public_id
    ]
    assert client.get("/runs/?label=eval.pass=false").content.decode().count('class="run-row"') == 0
    assert re.findall(r'data-run="(\w+)"', client.get("/runs/?q=NEEDLE-42").content.decode()) == [searched.public_id]
    assert client.get("/runs/?since=2000-01-01&until=2100-01-01").content.decode().count('class="run-row"') == 3
    assert client.get("/runs/?until=2000-01-01").content.decode().count('class="run-row"') == 0


def test_it_shows_only_the_users_org(alice, bob):
    mine, theirs = make_run(alice.org), make_run(bob.org)
    client = signed_in(alice.viewer)
    table = client.get("/runs/").content.decode()
    assert mine.public_id in table and theirs.public_id not in table
    for url in (
        f"/runs/{theirs.public_id}/",
        f"/runs/{theirs.public_id}/events?after=0",
        f"/runs/{theirs.public_id}/events/1",
        f"/runs/{theirs.public_id}/search?q=i",
        f"/runs/{theirs.public_id}/header",
        f"/compare/?runs={mine.public_id},{theirs.public_id}",
    ):
        assert client.get(url).status_code == 404, url
    assert client.post(f"/runs/{theirs.public_id}/cancel").status_code == 404


def test_a_member_of_two_orgs_switches_between_them(alice, bob):
    Membership.objects.create(org=bob.org, user=alice.owner, role=Role.VIEWER)
    mine, theirs = make_run(alice.org), make_run(bob.org)
    client = signed_in(alice.owner)
    assert mine.public_id in client.get("/runs/").content.decode()
    assert client.post("/switch-org/", {"org": bob.org.public_id, "next": "/runs/"}).status_code == 302
    table = client.get("/runs/").content.decode()
    assert theirs.public_id in table and mine.public_id not in table
    assert client.get(f"/runs/{mine.public_id}/").status_code == 404
    assert client.post("/switch-org/", {"org": "org_nope"}).status_code == 404


def test_the_run_page_holds_one_window_of_a_long_run(alice, long_run):
    client = signed_in(alice.member)
    page = client.get(f"/runs/{long_run.public_id}/").content.decode()
    assert seqs(page) == list(range(1, 101))
    assert 'class="loader after"' in page and 'class="loader before"' not in page
    around = client.get(f"/runs/{long_run.public_id}/?at=700").content.decode()
    assert 700 in seqs(around) and len(seqs(around)) == 100 and 'class="loader before"' in around
    later = client.get(f"/runs/{long_run.public_id}/events?after=100").content.decode()
    assert seqs(later) == list(range(101, 201))
    earlier = client.get(f"/runs/{long_run.public_id}/events?before=101&limit=30").content.decode()
    assert seqs(earlier) == list(range(71, 101))
    tail = client.get(f"/runs/{long_run.public_id}/events?after=990")
    assert seqs(tail.content.decode()) == list(range(991, 1001)) and tail["X-Jetty-Last-Seq"] == "1000"
    assert 'class="loader after"' not in tail.content.decode()
    assert client.get(f"/runs/{long_run.public_id}/events?after=-1").status_code == 400
    assert client.get(f"/runs/{long_run.public_id}/events?limit=abc").status_code == 400


def test_search_finds_events_inside_a_run(alice, long_run):
    client = signed_in(alice.member)
    hits = client.get(f"/runs/{long_run.public_id}/search?q=step 777").content.decode()
    assert re.findall(r'class="hit" href="[^"]+" data-seq="(\d+)"', hits) == ["777"]
    assert "<mark>step 777</mark>" in hits
    many = client.get(f"/runs/{long_run.public_id}/search?q=step").content.decode()
    assert many.count('class="hit"') == 50 and "first 50 hits" in many
    assert "No event mentions" in client.get(f"/runs/{long_run.public_id}/search?q=zzz-absent").content.decode()


def test_event_detail_shows_a_model_call_and_an_edit_diff(alice):
    run = make_run(alice.org, events=0)
    append_events(
        run.pk,
        [
            EventRecord(
                kind="model.call",
                ts=1.0,
                model="scripted/default",
                provider="scripted",
                prompt_tokens=12,
                completion_tokens=3,
                cost_usd=0.0,
                latency_ms=5,
                payload=model_call(
                    "chat",
                    {"messages": [{"role": "user", "content": "fix the bug please"}]},
                    {"choices": [{"message": {"role": "assistant", "content": "on it"}}]},
                    usage={"prompt_tokens": 12, "completion_tokens": 3},
                    finish_reason="stop",
                    status_code=200,
                    stream=False,
                ),
            ),
            EventRecord(
                kind="tool.call",
                ts=2.0,
                payload={"name": "Edit", "input": {"file_path": "a.py", "old_string": "x = 1", "new_string": "x = 2"}},
            ),
        ],
    )
    client = signed_in(alice.viewer)
    call = client.get(f"/runs/{run.public_id}/events/1").content.decode()
    assert "fix the bug please" in call and "on it" in call and "prompt tokens" in call and ">12<" in call
    edit = client.get(f"/runs/{run.public_id}/events/2").content.decode()
    assert '<span class="del">-x = 1</span>' in edit and '<span class="add">+x = 2</span>' in edit
    assert client.get(f"/runs/{run.public_id}/events/9").status_code == 404


def test_compare_marks_the_first_divergence(alice):
    def agent_run(commands: list[str]) -> Run:
        run = make_run(alice.org, task="same", events=0)
        append_events(run.pk, [command(c, float(i)) for i, c in enumerate(commands)])
        return run

    a = agent_run(["ls", "cat a", "pytest", "git diff"])
    b = agent_run(["ls", "cat a", "vim a", "pytest", "git diff"])
    client = signed_in(alice.member)
    page = client.get(f"/compare/?runs={a.public_id}&runs={b.public_id}").content.decode()
    assert "first divergence: row 3" in page
    assert re.search(r'class="divergence" id="divergence" data-row="3"', page)
    assert page.count('class="cell gap"') == 1
    same = client.get(f"/compare/?runs={a.public_id},{a.public_id}")
    assert same.status_code == 400
    assert client.get(f"/compare/?runs={a.public_id}").status_code == 400


def test_task_pages_render_the_runbook_versions_and_diff(alice):
    collection = Collection.objects.create(org=alice.org, name="demo")
    task = Task.objects.create(collection=collection, name="count", kind="runbook", latest_version=2)
    for number, text in ((1, STORED_RUNBOOK), (2, STORED_RUNBOOK.replace("Count the words", "Count all the words"))):
        TaskVersion.objects.create(
            task=task, number=number, runbook=text, validation={"valid": True, "errors": [], "warnings": []}
        )
    client = signed_in(alice.viewer)
    assert "/collections/demo/count/" in client.get("/collections/").content.decode()
    page = client.get("/collections/demo/count/").content.decode()
    assert "<h1>Objective</h1>" in page and "Count all the words" in page and "No errors, no warnings" in page
    assert 'id="run-form"' not in page  # a viewer cannot start runs
    diff = client.get("/collections/demo/count/?from=1&to=2").content.decode()
    assert '<span class="add">+Count all the words' in diff
    assert client.get("/collections/demo/nope/").status_code == 404
    assert client.post("/collections/demo/count/run", {"init_params": "{}"}).status_code == 403
    assert 'id="run-form"' in signed_in(alice.member).get("/collections/demo/count/").content.decode()


def test_markdown_cannot_inject_markup(alice):
    collection = Collection.objects.create(org=alice.org, name="demo")
    task = Task.objects.create(collection=collection, name="x", kind="runbook", latest_version=1)
    TaskVersion.objects.create(
        task=task, number=1, runbook=STORED_RUNBOOK + "\n<script>alert(1)</script>\n[x](javascript:alert(1))\n"
    )
    page = signed_in(alice.member).get("/collections/demo/x/").content.decode()
    assert "<script>alert(1)</script>" not in page and 'href="javascript:' not in page


def test_staff_reach_django_admin_from_the_ui(alice):
    assert 'href="/admin/"' not in signed_in(alice.owner).get("/runs/").content.decode()
    alice.owner.is_staff = alice.owner.is_superuser = True
    alice.owner.save()
    client = signed_in(alice.owner)
    assert 'href="/admin/"' in client.get("/runs/").content.decode()
    for page in ("orgs/org/", "orgs/membership/", "orgs/apitoken/", "orgs/providerkey/"):
        assert client.get(f"/admin/{page}").status_code == 200, page


def test_a_member_cancels_a_queued_run_and_a_viewer_cannot(alice):
    from runs.models import Job

    run = make_run(alice.org, task="greet", status="queued", events=1)
    Run.objects.filter(pk=run.pk).update(kind="agent", finished_at=None)
    Job.objects.create(run=run, org=alice.org, runbook="# Objective")  # never enqueued: no worker takes it
    page = signed_in(alice.member).get(f"/runs/{run.public_id}/").content.decode()
    assert 'id="cancel-run"' in page
    assert signed_in(alice.viewer).post(f"/runs/{run.public_id}/cancel").status_code == 403
    run.refresh_from_db()
    assert run.status == "queued"
    header = signed_in(alice.member).post(f"/runs/{run.public_id}/cancel", HTTP_HX_REQUEST="true")
    assert header.status_code == 200 and 'data-status="cancelled"' in header.content.decode()
    run.refresh_from_db()
    assert run.status == "cancelled"


def test_the_run_form_starts_a_run_with_parameters_and_files(alice, alice_api, worker):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from runs.models import Job
    from tests.test_ui_browser import SLOW_RUNBOOK
    from tests.test_workflows import push

    assert push(alice_api, "demo", "greet", runbook=SLOW_RUNBOOK).status_code == 201
    client = signed_in(alice.member)
    bad = client.post("/collections/demo/greet/run", {"init_params": "[1, 2]"}, follow=True)
    assert "Parameters must be a JSON object" in bad.content.decode() and not Run.objects.filter(task="greet").exists()
    upload = SimpleUploadedFile("notes.txt", b"remember the milk\n", content_type="text/plain")
    response = client.post("/collections/demo/greet/run", {"init_params": '{"name": "Ada"}', "files": upload})
    run = Run.objects.get(task="greet")
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.public_id}/"
    job = Job.objects.get(run=run)
    assert job.params == {"name": "Ada"} and [p.rsplit("/", 1)[-1] for p in job.file_paths] == ["notes.txt"]
    assert run.token_prefix == "web:acme-member"
    from tests.test_workflows import finished

    assert finished(run.public_id).status == "succeeded"  # (and no worker is left holding it when the test ends)
