"""A running agent's trajectory, put together as it happens from two sources that do not know about each other.

The agent's output lines reach the worker through a pipe; its model calls reach the gateway, which stores each
one as a ``PendingModelCall`` before the agent has the whole answer. The worker reads lines on a thread of their
own (so a line's time is when the agent printed it, give or take a scheduling slice) and merges both by time: a
call at the moment its answer was complete, a line at the moment it was read. Calls are taken before the lines
are drained, so a line printed before a call ended is always in the same batch as that call or an earlier one;
and as the agent cannot act on an answer before the call is stored, nothing it does because of the answer is
placed before the call.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

from django.db import transaction
from django.db.models import F

from trajectories.actions import EventRecord, admitted, append_events
from trajectories.models import Run

from .agents import Agent, WorkspaceWatch, stdout_line
from .gateway.pricing import cost_of
from .models import PendingModelCall
from .secrets import Masker

logger = logging.getLogger(__name__)


def priced(event: dict) -> EventRecord:
    event = {
        **event,
        "cost_usd": cost_of(event["model"], event["provider"], event["prompt_tokens"], event["completion_tokens"]),
    }
    return EventRecord(**event)


def take_pending_calls(run_id: int) -> list[tuple[float, EventRecord]]:
    """The run's stored model calls, oldest first, removed from the pending table."""
    with transaction.atomic():
        rows = list(PendingModelCall.objects.select_for_update().filter(run_id=run_id).order_by("ended", "pk"))
        PendingModelCall.objects.filter(pk__in=[row.pk for row in rows]).delete()
    return [(row.ended, priced(row.event)) for row in rows]


def append_with_usage(run_id: int, records: list[EventRecord]) -> None:
    """Append events in order, adding the model calls among them to the run's token and cost totals."""
    calls = [r for r in records if r.kind == "model.call"]
    with transaction.atomic():
        append_events(run_id, records)
        if calls:
            prompt = sum(r.prompt_tokens or 0 for r in calls)
            completion = sum(r.completion_tokens or 0 for r in calls)
            Run.objects.filter(pk=run_id).update(
                prompt_tokens=F("prompt_tokens") + prompt,
                completion_tokens=F("completion_tokens") + completion,
                total_tokens=F("total_tokens") + prompt + completion,
                cost_usd=F("cost_usd") + sum((Decimal(str(r.cost_usd or 0)) for r in calls), Decimal(0)),
            )


def flush_pending_calls(run_id: int) -> None:
    """Place calls no worker will merge any more (the agent is gone) at the end of the trajectory."""
    append_with_usage(run_id, [record for _, record in take_pending_calls(run_id)])


class Timeline:
    POLL_S = 0.1  # how often pending calls are looked for while the agent prints nothing

    def __init__(self, run_id: int, agent: Agent, workspace: Path, mask: Masker | None = None):
        self.run_id, self.agent = run_id, agent
        self.mask = mask or Masker()
        self.watch = WorkspaceWatch(workspace, Run.objects.values_list("org_id", flat=True).get(pk=run_id))
        self.lines: queue.Queue[tuple[float, str] | None] = queue.Queue()

    def _read(self, lines: Iterator[str]) -> None:
        try:
            for line in lines:
                self.lines.put((time.time(), line))
        finally:
            self.lines.put(None)

    def follow(self, lines: Iterator[str]) -> None:
        """Record the agent's output and model calls until its output ends."""
        threading.Thread(target=self._read, args=(lines,), daemon=True, name="jetty-lines").start()
        self.merge()

    def merge(self) -> None:
        """Take lines as they are read and calls as they are stored, and record them in time order."""
        finished = False
        while not finished:
            try:
                batch = [self.lines.get(timeout=self.POLL_S)]
            except queue.Empty:
                batch = []
            calls = take_pending_calls(self.run_id)
            while True:
                try:
                    batch.append(self.lines.get_nowait())
                except queue.Empty:
                    break
            finished = None in batch
            self._record(calls, [item for item in batch if item is not None])

    # What an adapter's parser may raise on a line it did not expect. Every line is hostile (any process in the
    # sandbox can write to the agent's stdout): one that breaks the parser is kept as a plain line, never a crash.
    PARSE_ERRORS = (ValueError, TypeError, AttributeError, KeyError, IndexError, RecursionError)

    def _line_events(self, line: str, read: float) -> list[EventRecord]:
        """The events of one line the agent printed, each fitting its kind's schema or kept as a ``log``."""
        try:
            return admitted(self.agent.events(line, read))
        except self.PARSE_ERRORS as exc:
            logger.info("run %s: a line the %s parser could not read (%s)", self.run_id, self.agent.name, exc)
            return [stdout_line(line, read)]

    def _record(self, calls: list[tuple[float, EventRecord]], lines: list[tuple[float, str]]) -> None:
        records: list[EventRecord] = []
        while calls or lines:
            if calls and (not lines or calls[0][0] <= lines[0][0]):
                records.append(calls.pop(0)[1])
                continue
            read, line = lines.pop(0)
            events = self._line_events(line, read)
            if any(e.kind == "tool.result" for e in events):
                events += self.watch.changes(read)
            records += events
        if records and self.mask:
            for record in records:
                record.payload = self.mask(record.payload)
        if records:
            append_with_usage(self.run_id, records)
