"""Runs of the same task side by side: their steps aligned, the first place they part, and their outputs diffed.

Each run becomes a sequence of step signatures (``present.signature``: the tool and its arguments, the command,
the file touched, the message). Every other run is aligned to the first with difflib's matcher (longest common
blocks, then the unequal stretches paired in order and padded with gaps), and the pairwise alignments are merged
into one table of rows, a row holding each run's event or a gap.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from itertools import zip_longest
from typing import Any

from .models import Artifact, Event, Run
from .present import diff_lines, signature
from .schemas import read_model_call, upgrade

STEP_KINDS = ("agent.message", "tool.call", "command", "file.change", "step.end")
MAX_STEPS = 2000
MAX_DIFF_BYTES = 200_000


def steps_of(run: Run) -> list[Event]:
    """The events that say what the run did (model calls only when there is nothing else, as in a chat run)."""
    steps = list(run.events.filter(kind__in=STEP_KINDS).order_by("seq")[:MAX_STEPS])
    return steps or list(run.events.filter(kind="model.call").order_by("seq")[:MAX_STEPS])


def _pairs(ref: list[str], other: list[str]) -> list[tuple[int | None, int | None]]:
    """Align two signature lists: (index in ref or None, index in other or None), in order."""
    pairs: list[tuple[int | None, int | None]] = []
    matcher = difflib.SequenceMatcher(None, ref, other, autojunk=False)
    for _op, i1, i2, j1, j2 in matcher.get_opcodes():
        pairs += zip_longest(range(i1, i2), range(j1, j2))
    return pairs


@dataclass
class Row:
    cells: list[Event | None]
    same: bool
    divergence: bool = False


def align(sequences: list[list[str]]) -> list[list[int | None]]:
    """Rows of indexes (one column per sequence, None for a gap), aligning every sequence to the first."""
    ref = sequences[0]
    n = len(sequences)
    before: list[list[list[int]]] = [[[] for _ in range(n)] for _ in range(len(ref) + 1)]
    at: list[list[int | None]] = [[i] + [None] * (n - 1) for i in range(len(ref))]
    for column, other in enumerate(sequences[1:], start=1):
        position = 0  # the reference index the next insertion goes before
        for i, j in _pairs(ref, other):
            if i is None:
                assert j is not None
                before[position][column].append(j)
            else:
                at[i][column] = j
                position = i + 1
    rows: list[list[int | None]] = []
    for i in range(len(ref) + 1):
        for inserted in zip_longest(*before[i]):
            rows.append([None, *inserted[1:]] if n > 1 else [None])
        if i < len(ref):
            rows.append(at[i])
    return rows


@dataclass
class Comparison:
    runs: list[Run]
    rows: list[Row]
    first_divergence: int | None
    metrics: list[dict[str, Any]]
    outputs: list[dict[str, Any]] = field(default_factory=list)
    files: list[dict[str, Any]] = field(default_factory=list)


def final_output(run: Run) -> str:
    """What the run answered: its last message (an agent's, or a chat run's model answer)."""
    message = run.events.filter(kind="agent.message").order_by("-seq").first()
    if message is not None:
        return str(upgrade(message.kind, message.payload).get("content") or "")
    call = run.events.filter(kind="model.call").order_by("-seq").first()
    return read_model_call(call.payload).answer().text if call is not None else ""


def _score(run: Run) -> tuple[float | None, bool | None]:
    grades = [label.value for label in run.labels.all() if label.key == "eval.grade" and label.event_id is None]
    passes = [label.value for label in run.labels.all() if label.key == "eval.pass" and label.event_id is None]
    numbers = [float(g) for g in grades if isinstance(g, int | float) and not isinstance(g, bool)]
    score = sum(numbers) / len(numbers) if numbers else None
    passed = None if not passes else sum(bool(p) for p in passes) * 2 > len(passes)
    return score, passed


def _read(artifact: Artifact) -> str | None:
    if artifact.size > MAX_DIFF_BYTES:
        return None
    with artifact.file.open("rb") as handle:
        data = handle.read()
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


def compare(runs: list[Run]) -> Comparison:
    steps = [steps_of(run) for run in runs]
    sequences = [[signature(e) for e in s] for s in steps]
    rows: list[Row] = []
    first: int | None = None
    for indexes in align(sequences):
        cells = [None if i is None else steps[column][i] for column, i in enumerate(indexes)]
        signatures = {None if i is None else sequences[column][i] for column, i in enumerate(indexes)}
        row = Row(cells, same=len(signatures) == 1)
        if not row.same and first is None:
            first, row.divergence = len(rows), True
        rows.append(row)
    metrics = []
    for run, run_steps in zip(runs, steps, strict=True):
        score, passed = _score(run)
        metrics.append(
            {
                "score": score,
                "passed": passed,
                "tokens": run.total_tokens,
                "cost": run.cost_usd,
                "duration": run.duration_s,
                "steps": len(run_steps),
                "events": run.last_seq,
            }
        )
    answers = [final_output(run) for run in runs]
    outputs = [
        {"run": run, "text": text, "diff": diff_lines(answers[0], text, "answer") if k else []}
        for k, (run, text) in enumerate(zip(runs, answers, strict=True))
    ]
    artifacts = [{a.path: a for a in run.artifacts.all()} for run in runs]
    files = []
    for path in sorted(set().union(*artifacts)):
        present = [by_path.get(path) for by_path in artifacts]
        hashes = {a.sha256 if a else None for a in present}
        entry: dict[str, Any] = {"path": path, "same": len(hashes) == 1, "cells": []}
        base = _read(present[0]) if present[0] is not None else None
        for k, artifact in enumerate(present):
            cell: dict[str, Any] = {"artifact": artifact, "diff": []}
            if k and artifact is not None and not entry["same"]:
                text = _read(artifact)
                if text is not None:
                    cell["diff"] = diff_lines(base or "", text, path)
            entry["cells"].append(cell)
        files.append(entry)
    return Comparison(runs, rows, first, metrics, outputs, files)
