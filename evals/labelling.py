"""What a labelling queue's labels say: who has scored which item, how far each reviewer has got, where the reviewers
disagree, and what to look at next. Read from the ``score.<criterion>`` labels with one query per queue."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q

from trajectories.models import Label, LabelSource

from .actions import ADJUDICATED
from .models import LabelQueue, LabelQueueItem

DISAGREE_BY = 2  # scores this far apart on one criterion need settling


@dataclass
class ItemState:
    item: LabelQueueItem
    scores: dict[str, dict[str, int]] = field(default_factory=dict)  # reviewer -> criterion -> score
    done_by: list[str] = field(default_factory=list)  # reviewers who scored every criterion
    settled: dict[str, int] | None = None  # the adjudicated scores
    disputed: list[str] = field(default_factory=list)  # criteria (and "pass") the reviewers disagree on

    @property
    def complete(self) -> bool:
        return len(self.done_by) >= self.item.queue.reviewers_per_item

    def suggested(self, criteria: list[str]) -> dict[str, int]:
        """The settled scores, else the reviewers' mean per criterion rounded half up (a starting point)."""
        if self.settled:
            return self.settled
        out = {}
        for name in criteria:
            values = [s[name] for s in self.scores.values() if name in s]
            if values:
                out[name] = math.floor(sum(values) / len(values) + 0.5)
        return out


@dataclass
class QueueState:
    queue: LabelQueue
    items: list[ItemState]
    reviewers: dict[str, int]  # reviewer -> items they finished

    @property
    def complete(self) -> int:
        return sum(1 for i in self.items if i.complete)

    @property
    def disagreements(self) -> list[ItemState]:
        return [i for i in self.items if i.disputed]

    @property
    def open_disagreements(self) -> int:
        return sum(1 for i in self.items if i.disputed and not i.settled)

    def next_for(self, username: str, after: int = 0) -> LabelQueueItem | None:
        """The next item (after position ``after``, wrapping round) this reviewer has not scored and that still
        needs reviewers."""
        waiting = [i.item for i in self.items if username not in i.done_by and not i.complete]
        later = [item for item in waiting if item.position > after]
        candidates = later or waiting
        return candidates[0] if candidates else None


def _score(value: Any) -> int | None:
    return value if type(value) is int and 1 <= value <= 5 else None


def queue_state(queue: LabelQueue, items: list[LabelQueueItem] | None = None) -> QueueState:
    """The state of every item of the queue (or of ``items``, some of them)."""
    rubric = queue.rubric
    criteria = [c["name"] for c in rubric.criteria]
    if items is None:
        items = list(queue.items.select_related("run", "event").order_by("position"))
    states = {(i.run_id, i.event_id): ItemState(i) for i in items}
    labels = Label.objects.filter(
        Q(source=LabelSource.HUMAN) | Q(author=ADJUDICATED),
        run_id__in={i.run_id for i in items},
        key__in=[f"score.{c}" for c in criteria],
    ).values_list("run_id", "event_id", "key", "author", "value")
    settled: dict[tuple[int, int | None], dict[str, int]] = defaultdict(dict)
    for run_id, event_id, key, author, value in labels.iterator():
        state = states.get((run_id, event_id))
        score = _score(value)
        if state is None or score is None:
            continue
        criterion = key.removeprefix("score.")
        if author == ADJUDICATED:
            settled[(run_id, event_id)][criterion] = score
        else:
            state.scores.setdefault(author, {})[criterion] = score
    reviewers: dict[str, int] = defaultdict(int)
    for where, state in states.items():
        if len(settled.get(where, {})) == len(criteria):
            state.settled = settled[where]
        full = {who: s for who, s in state.scores.items() if len(s) == len(criteria)}
        state.done_by = sorted(full)
        for who in state.scores:
            reviewers[who] += who in full
        if len(full) >= 2:
            for name in criteria:
                values = [s[name] for s in full.values()]
                if max(values) - min(values) >= DISAGREE_BY:
                    state.disputed.append(name)
            if len({rubric.verdict(s)[1] for s in full.values()}) > 1:
                state.disputed.append("pass")
    return QueueState(queue, list(states.values()), dict(sorted(reviewers.items())))


def own_scores(item: LabelQueueItem, username: str) -> tuple[dict[str, int], str]:
    """This reviewer's scores of the item and their comment: what the form starts from (never anyone else's)."""
    labels = Label.objects.filter(run_id=item.run_id, event=item.event, author=username, source=LabelSource.HUMAN)
    scores, comment = {}, ""
    for key, value, explanation in labels.values_list("key", "value", "explanation"):
        if key.startswith("score.") and _score(value) is not None:
            scores[key.removeprefix("score.")] = value
        elif key == "eval.grade":
            comment = explanation
    return scores, comment
