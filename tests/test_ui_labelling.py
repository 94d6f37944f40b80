"""Labelling queues in the web UI, in process: making a queue, several reviewers scoring the same items under their
own names, progress, disagreements and settling them, bad input, viewers and outsiders. The browser test
(test_ui_browser_evals.py) scores an item with the keyboard."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from evals.actions import ADJUDICATED
from evals.models import LabelQueue
from tests.conftest import api_for
from tests.factories import command, make_rubric, make_run
from trajectories.actions import EventRecord, append_events
from trajectories.models import Label, LabelChange


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def rubric(alice):
    return make_rubric(alice.org)


@pytest.fixture
def queue(alice, rubric) -> LabelQueue:
    for i in range(3):
        make_run(alice.org, task="essay", model=f"scripted/m{i % 2}")
    response = signed_in(alice.owner).post(
        "/labelling/new", {"name": "essays", "rubric": rubric.public_id, "reviewers_per_item": "2", "task": "essay"}
    )
    assert response.status_code == 302
    return LabelQueue.objects.get(name="essays")


def score(client: Client, queue: LabelQueue, position: int, correctness, clarity, comment: str = ""):
    return client.post(
        f"/labelling/{queue.public_id}/items/{position}/",
        {"score.correctness": str(correctness), "score.clarity": str(clarity), "comment": comment},
    )


def test_a_member_makes_a_queue_of_the_latest_runs_of_a_task(alice, rubric):
    runs = [make_run(alice.org, task="essay") for _ in range(4)]
    make_run(alice.org, task="other")
    client = signed_in(alice.member)
    response = client.post(
        "/labelling/new",
        {"name": "latest essays", "rubric": rubric.public_id, "reviewers_per_item": "3", "task": "essay", "latest": 3},
    )
    queue = LabelQueue.objects.get(org=alice.org)
    assert response["Location"] == f"/labelling/{queue.public_id}/"
    assert queue.reviewers_per_item == 3 and queue.created_by == alice.member and queue.rubric == rubric
    assert [i.run for i in queue.items.order_by("position")] == runs[::-1][:3]
    page = client.get("/labelling/").content.decode()
    assert "latest essays" in page and "0/3 \u00d7 3" in page


def test_a_queue_can_be_made_from_the_runs_picked_in_the_runs_table(alice, rubric):
    first, second, _ = (make_run(alice.org, task="essay") for _ in range(3))
    client = signed_in(alice.owner)
    table = client.get("/runs/").content.decode()
    assert 'formaction="/labelling/new"' in table and 'id="compare-selected"' in table
    form = client.get(f"/labelling/new?runs={second.public_id}&runs={first.public_id}").content.decode()
    assert "2 runs picked" in form and f'value="{second.public_id}"' in form
    client.post(
        "/labelling/new",
        {"name": "picked", "rubric": rubric.public_id, "runs": [second.public_id, first.public_id]},
    )
    queue = LabelQueue.objects.get(name="picked")
    assert [i.run for i in queue.items.order_by("position")] == [second, first]


def test_an_event_queue_has_one_item_per_event_of_the_kind(alice, rubric):
    run = make_run(alice.org, events=0)
    append_events(
        run.pk,
        [
            command("ls", 1.0, output="a b"),
            EventRecord(kind="log", ts=2.0, payload={"message": "hi"}),
            command("cat a", 3.0, output="secret plan"),
        ],
    )
    client = signed_in(alice.owner)
    form = {"name": "commands", "rubric": rubric.public_id, "runs": run.public_id, "event_kind": "command"}
    client.post("/labelling/new", form)
    queue = LabelQueue.objects.get(name="commands")
    assert [(i.run, i.event.seq) for i in queue.items.order_by("position")] == [(run, 1), (run, 3)]
    page = client.get(f"/labelling/{queue.public_id}/items/2/").content.decode()
    assert "cat a" in page and "secret plan" in page
    score(client, queue, 2, 4, 4)
    label = Label.objects.get(run=run, key="score.correctness")
    assert label.event.seq == 3 and label.author == "acme-owner"


def test_two_reviewers_score_the_same_item_each_under_their_own_name(alice, rubric, queue):
    owner, member = signed_in(alice.owner), signed_in(alice.member)
    response = score(owner, queue, 1, 5, 4, "solid")
    assert response.status_code == 302 and response["Location"] == f"/labelling/{queue.public_id}/next?after=1"
    score(member, queue, 1, 4, 4)
    run = queue.items.get(position=1).run
    mine = {(lab.key, lab.author): lab for lab in Label.objects.filter(run=run)}
    correctness = mine[("score.correctness", "acme-owner")]
    assert (correctness.value, correctness.source, correctness.criterion, correctness.rubric) == (
        5,
        "human",
        "correctness",
        rubric.public_id,
    )
    assert correctness.user == alice.owner and correctness.event is None
    assert mine[("score.correctness", "acme-member")].value == 4
    # The rubric's verdict under each reviewer's name, like a judge's: (5*2 + 4) / 3 and (4*2 + 4) / 3.
    assert mine[("eval.grade", "acme-owner")].value == pytest.approx(4.6667)
    assert mine[("eval.grade", "acme-owner")].explanation == "solid"
    assert mine[("eval.pass", "acme-owner")].value is True and mine[("eval.pass", "acme-member")].value is True
    # Scoring again replaces the reviewer's label and keeps the change.
    score(owner, queue, 1, 3, 4)
    assert Label.objects.get(run=run, key="score.correctness", author="acme-owner").value == 3
    changes = LabelChange.objects.filter(run=run, key="score.correctness", author="acme-owner")
    assert [(c.previous, c.value) for c in changes] == [(None, 5), (5, 3)]
    # The agreement statistics see both reviewers.
    agreement = api_for(alice.token).get("/api/v1/evals/agreement").json()
    assert {row["criterion"]: row["n_raters"] for row in agreement["reviewers"]} == {"clarity": 2, "correctness": 2}


def test_the_queue_shows_progress_per_reviewer(alice, queue):
    owner, member = signed_in(alice.owner), signed_in(alice.member)
    score(owner, queue, 1, 4, 4)
    score(owner, queue, 2, 4, 4)
    score(member, queue, 1, 4, 5)
    page = owner.get(f"/labelling/{queue.public_id}/").content.decode()
    reviewers = dict(re.findall(r'data-reviewer="([\w-]+)">.*?<td class="num">(\d+/\d+)</td>', page, re.S))
    assert reviewers == {"acme-owner": "2/3", "acme-member": "1/3"}
    assert "1 of 3 items have 2 reviewers" in page
    listing = owner.get("/labelling/").content.decode()
    assert "1/3 \u00d7 2" in listing and "acme-owner 2" in listing


def test_a_reviewer_sees_only_their_own_scores_on_the_item(alice, queue):
    owner, member = signed_in(alice.owner), signed_in(alice.member)
    score(owner, queue, 1, 2, 5, "owner's note")
    mine = owner.get(f"/labelling/{queue.public_id}/items/1/").content.decode()
    assert re.search(r'name="score.correctness" value="2"\s+checked', mine)
    assert "owner&#x27;s note" in mine
    theirs = member.get(f"/labelling/{queue.public_id}/items/1/").content.decode()
    assert "checked" not in theirs and "owner&#x27;s note" not in theirs
    assert "eval.grade" not in theirs  # the run header's labels are left out too


def test_start_labelling_goes_to_the_next_item_the_reviewer_has_not_scored(alice, queue):
    owner, member = signed_in(alice.owner), signed_in(alice.member)
    url = f"/labelling/{queue.public_id}/next"
    assert owner.get(url)["Location"] == f"/labelling/{queue.public_id}/items/1/"
    score(owner, queue, 1, 4, 4)
    assert owner.get(url)["Location"] == f"/labelling/{queue.public_id}/items/2/"
    assert owner.get(url + "?after=2")["Location"] == f"/labelling/{queue.public_id}/items/3/"
    score(member, queue, 2, 4, 4)
    assert member.get(url)["Location"] == f"/labelling/{queue.public_id}/items/1/"
    for position in (2, 3):
        score(owner, queue, position, 4, 4)
    done = owner.get(url, follow=True)
    assert done.redirect_chain[-1][0] == f"/labelling/{queue.public_id}/"
    assert "Nothing left for you" in done.content.decode()


def test_disagreements_are_listed_and_settled(alice, rubric, queue):
    owner, member = signed_in(alice.owner), signed_in(alice.member)
    score(owner, queue, 1, 5, 4)  # 4.67: pass
    score(member, queue, 1, 2, 4)  # 2.67: fail, and 3 apart on correctness
    score(owner, queue, 2, 4, 4)
    score(member, queue, 2, 4, 3)  # close enough
    page = owner.get(f"/labelling/{queue.public_id}/").content.decode()
    assert "item 1</a>: correctness, pass" in page and "item 2</a>" not in page
    listed = owner.get(f"/labelling/{queue.public_id}/disagreements/").content.decode()
    assert 'id="item-1"' in listed and 'id="item-2"' not in listed
    run = queue.items.get(position=1).run
    response = member.post(
        f"/labelling/{queue.public_id}/items/1/adjudicate",
        {"score.correctness": "4", "score.clarity": "4", "comment": "the tests pass after all"},
    )
    assert response.status_code == 302
    settled = {lab.key: lab for lab in Label.objects.filter(run=run, author=ADJUDICATED)}
    assert settled["score.correctness"].value == 4 and settled["eval.pass"].value is True
    assert settled["score.correctness"].source == "system" and settled["score.correctness"].rubric == rubric.public_id
    assert LabelChange.objects.filter(run=run, author=ADJUDICATED).first().changed_by == "acme-member"
    # The reviewers keep their own; the settled scores are not a third reviewer in the agreement figures.
    assert Label.objects.get(run=run, key="score.correctness", author="acme-owner").value == 5
    agreement = api_for(alice.token).get("/api/v1/evals/agreement").json()
    assert {row["n_raters"] for row in agreement["reviewers"]} == {2}
    assert "settled" in owner.get(f"/labelling/{queue.public_id}/disagreements/").content.decode()


def test_bad_scores_change_nothing_and_say_why(alice, queue):
    owner = signed_in(alice.owner)
    url = f"/labelling/{queue.public_id}/items/1/"
    cases = [
        ({"score.correctness": "7", "score.clarity": "3"}, "a whole number from 1 to 5"),
        ({"score.correctness": "3", "score.clarity": "3", "score.charm": "5"}, "no criterion charm"),
        ({"score.correctness": "3"}, "clarity has no score"),
        ({"score.correctness": "three", "score.clarity": "3"}, "a whole number from 1 to 5"),
    ]
    for data, message in cases:
        response = owner.post(url, data)
        assert response.status_code == 400 and message in response.content.decode(), data
    adjudicated = owner.post(url + "adjudicate", {"score.correctness": "0", "score.clarity": "3"})
    assert adjudicated.status_code == 400 and "from 1 to 5" in adjudicated.content.decode()
    assert not Label.objects.filter(run__org=alice.org).exists()


def test_a_queue_needs_a_name_a_rubric_and_runs_of_the_org(alice, bob, rubric):
    make_run(alice.org, task="essay")
    theirs = make_run(bob.org, task="essay")
    client = signed_in(alice.owner)
    cases = [
        ({"name": "", "rubric": rubric.public_id}, "Give the queue a name"),
        ({"name": "q", "rubric": make_rubric(bob.org).public_id}, "Pick one of the organisation"),
        ({"name": "q", "rubric": rubric.public_id, "runs": theirs.public_id}, "No such run"),
        ({"name": "q", "rubric": rubric.public_id, "task": "nothing"}, "No runs to label"),
        ({"name": "q", "rubric": rubric.public_id, "latest": "100000"}, "from 1 to 500"),
        ({"name": "q", "rubric": rubric.public_id, "event_kind": "party"}, "no event kind"),
        ({"name": "q", "rubric": rubric.public_id, "reviewers_per_item": "11"}, "from 1 to 10"),
    ]
    for data, message in cases:
        response = client.post("/labelling/new", data)
        assert response.status_code == 400 and message in response.content.decode(), data
    assert not LabelQueue.objects.exists()


def test_a_viewer_reads_queues_but_cannot_score_or_make_them(alice, rubric, queue):
    viewer = signed_in(alice.viewer)
    assert viewer.get(f"/labelling/{queue.public_id}/").status_code == 200
    page = viewer.get(f"/labelling/{queue.public_id}/items/1/").content.decode()
    assert "disabled" in page and 'id="submit-review"' not in page
    assert score(viewer, queue, 1, 4, 4).status_code == 403
    assert viewer.post(f"/labelling/{queue.public_id}/items/1/adjudicate", {}).status_code == 403
    made = viewer.post("/labelling/new", {"name": "mine", "rubric": rubric.public_id})
    assert made.status_code == 403
    assert not Label.objects.exists() and LabelQueue.objects.count() == 1


def test_another_orgs_queue_and_items_are_not_found(alice, bob, queue):
    outsider = signed_in(bob.owner)
    for url in (
        f"/labelling/{queue.public_id}/",
        f"/labelling/{queue.public_id}/items/1/",
        f"/labelling/{queue.public_id}/next",
        f"/labelling/{queue.public_id}/disagreements/",
    ):
        assert outsider.get(url).status_code == 404, url
    assert score(outsider, queue, 1, 4, 4).status_code == 404
    assert outsider.post(f"/labelling/{queue.public_id}/items/1/adjudicate", {}).status_code == 404
    assert "essays" not in outsider.get("/labelling/").content.decode()
    assert not Label.objects.exists()
    assert signed_in(alice.owner).get(f"/labelling/{queue.public_id}/items/99/").status_code == 404
