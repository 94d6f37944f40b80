"""Writes of the labelling queues: make a queue, record one reviewer's scores of an item, settle an item the
reviewers disagree on. Scores are ``trajectories.Label`` rows keyed as the judges key theirs (``score.<criterion>``,
``eval.grade``, ``eval.pass``), so the agreement statistics and the runs table read them with no special case."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db import transaction

from orgs.models import Org
from trajectories.actions import record_label
from trajectories.models import Event, LabelSource, Run

from .models import LabelQueue, LabelQueueItem, Rubric

MAX_ITEMS = 2000
# The author of the settled labels. Their source is `system`, not `human`: the agreement statistics count human
# authors as reviewers, and a settled score is not one more independent opinion.
ADJUDICATED = "adjudicated"


class ReviewError(ValueError):
    """Scores that do not fit the rubric, or a queue that cannot be made; the message says which."""


def check_scores(rubric: Rubric, scores: Mapping[str, Any]) -> dict[str, int]:
    """The scores as {criterion: 1..5}, one for every criterion of the rubric and nothing else."""
    names = [c["name"] for c in rubric.criteria]
    unknown = sorted(set(scores) - set(names))
    if unknown:
        raise ReviewError(f"The rubric has no criterion {', '.join(unknown)}")
    missing = [n for n in names if n not in scores or scores[n] in (None, "")]
    if missing:
        raise ReviewError(f"Score every criterion: {', '.join(missing)} has no score")
    checked = {}
    for name in names:
        value = scores[name]
        if isinstance(value, str) and value.strip().isdecimal():
            value = int(value)
        if type(value) is not int or not 1 <= value <= 5:
            raise ReviewError(f"{name}: a score is a whole number from 1 to 5, not {scores[name]!r}")
        checked[name] = value
    return checked


def create_queue(
    org: Org,
    name: str,
    rubric: Rubric,
    runs: Sequence[Run],
    *,
    event_kind: str = "",
    reviewers_per_item: int = 2,
    description: str = "",
    created_by: Any = None,
) -> LabelQueue:
    """A queue of the runs, in the order given, or of their events of ``event_kind`` (run by run, in order)."""
    if rubric.org_id != org.pk or any(run.org_id != org.pk for run in runs):
        raise ReviewError("The rubric and the runs must be the organisation's own")
    if not 1 <= reviewers_per_item <= 10:
        raise ReviewError("Reviewers per item is from 1 to 10")
    targets: list[tuple[Run, Event | None]]
    if event_kind:
        order = {run.pk: i for i, run in enumerate(runs)}
        events = Event.objects.filter(run__in=list(runs), kind=event_kind).only("id", "run_id", "seq", "kind")
        by_run = {run.pk: run for run in runs}
        found = sorted(events[: MAX_ITEMS + 1], key=lambda e: (order[e.run_id], e.seq))
        targets = [(by_run[e.run_id], e) for e in found]
    else:
        targets = [(run, None) for run in dict.fromkeys(runs)]
    if not targets:
        raise ReviewError(f"No {event_kind + ' events' if event_kind else 'runs'} to label in the selection")
    if len(targets) > MAX_ITEMS:
        raise ReviewError(f"A queue holds at most {MAX_ITEMS} items; narrow the selection")
    with transaction.atomic():
        queue = LabelQueue.objects.create(
            org=org,
            name=name,
            rubric=rubric,
            description=description,
            reviewers_per_item=reviewers_per_item,
            event_kind=event_kind,
            created_by=created_by,
        )
        LabelQueueItem.objects.bulk_create(
            LabelQueueItem(queue=queue, run=run, event=event, position=i)
            for i, (run, event) in enumerate(targets, start=1)
        )
    return queue


def _record_scores(item: LabelQueueItem, scores: dict[str, int], comment: str, **who: Any) -> tuple[float, bool]:
    rubric = item.queue.rubric
    grade, passed, reasons = rubric.verdict(scores)
    common = {"event": item.event, "rubric": rubric.public_id, **who}
    for name, score in scores.items():
        record_label(item.run, f"score.{name}", score, criterion=name, **common)
    record_label(item.run, "eval.grade", grade, explanation=comment, **common)
    record_label(item.run, "eval.pass", passed, explanation="; ".join(reasons) or "every rule met", **common)
    return grade, passed


def submit_review(item: LabelQueueItem, user: Any, scores: Mapping[str, Any], comment: str = "") -> tuple[float, bool]:
    """One reviewer's scores of an item, as their own labels (a second submission replaces the first, keeping the
    history). Returns the rubric's (grade, passed) for them. Raises ReviewError and writes nothing on bad scores."""
    checked = check_scores(item.queue.rubric, scores)
    with transaction.atomic():
        return _record_scores(
            item, checked, comment[:10_000], source=LabelSource.HUMAN, author=user.get_username(), user=user
        )


def adjudicate(item: LabelQueueItem, user: Any, scores: Mapping[str, Any], comment: str = "") -> tuple[float, bool]:
    """The settled scores of an item the reviewers disagreed on: labels by ``adjudicated``, the history saying who
    settled them. The reviewers' own labels stay as they were."""
    checked = check_scores(item.queue.rubric, scores)
    with transaction.atomic():
        return _record_scores(
            item,
            checked,
            comment[:10_000],
            source=LabelSource.SYSTEM,
            author=ADJUDICATED,
            user=user,
            changed_by=user.get_username(),
        )
