"""Aligning runs' steps: every run's steps appear once, in order; equal steps share a row; the first row where the
runs differ is the first divergence."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from trajectories.compare import align

steps = st.lists(st.sampled_from(["ls", "cat", "edit", "test", "diff", "commit"]), max_size=25)


def column(rows: list[list[int | None]], k: int) -> list[int]:
    return [row[k] for row in rows if row[k] is not None]


@given(st.lists(steps, min_size=1, max_size=4))
def test_every_step_of_every_run_appears_once_in_order(runs):
    rows = align(runs)
    for k, run in enumerate(runs):
        assert column(rows, k) == list(range(len(run)))
    assert all(any(i is not None for i in row) for row in rows)


@given(steps)
def test_identical_runs_align_row_for_row(run):
    assert align([run, list(run), list(run)]) == [[i, i, i] for i in range(len(run))]


def test_an_extra_step_leaves_a_gap_in_the_other_run():
    rows = align([["ls", "cat", "test", "diff"], ["ls", "cat", "edit", "test", "diff"]])
    assert rows == [[0, 0], [1, 1], [None, 2], [2, 3], [3, 4]]


def test_three_runs_share_rows_where_they_agree():
    rows = align([["ls", "test"], ["ls", "edit", "test"], ["ls", "grep", "test"]])
    assert rows[0] == [0, 0, 0] and rows[-1] == [1, 2, 2]
    assert [None, 1, 1] in rows  # the two runs' different middle steps are side by side, in one row
