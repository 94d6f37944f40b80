"""Eval statistics checked against independent computations: scipy, scikit-learn, the krippendorff package,
brute-force enumeration and hand-worked cases."""

from __future__ import annotations

import itertools
import json
import math

import krippendorff
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats
from sklearn.metrics import cohen_kappa_score

from evals.stats import (
    agreement_by_criterion,
    bootstrap_mean,
    cohen_kappa,
    compare,
    gate,
    judge_vs_human,
    krippendorff_alpha,
    markdown_report,
    mcnemar,
    pass_at_k,
    pass_hat_k,
    summarise,
)

FAST = {"resamples": 1_000}
N = None  # a missing rating

# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", section C: 4 observers x 12 units.
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, N, N, N],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, N, 3],
    [N, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, N],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, N],
]


def run(model="m", item="i1", repeat=0, score=None, passed=None, **extra):
    """One run row; the score follows the pass/fail unless given."""
    if score is None and passed is not None:
        score = float(passed)
    return {"model": model, "item": item, "repeat": repeat, "score": score, "passed": passed, **extra}


def runs_from(outcomes: dict[str, dict[str, list[bool]]], **extra) -> list[dict]:
    """Rows from {model: {item: [pass/fail per repeat]}}."""
    return [
        run(model, item, repeat, passed=passed, **extra)
        for model, items in outcomes.items()
        for item, repeats in items.items()
        for repeat, passed in enumerate(repeats)
    ]


def as_float_matrix(ratings):
    return np.array([[np.nan if v is None else v for v in row] for row in ratings], dtype=float)


# Summaries


def test_the_mean_score_averages_repeats_within_an_item_before_averaging_items():
    rows = [run(item="a", repeat=r, score=s) for r, s in enumerate([1.0, 0.0, 0.0, 0.0])]
    rows.append(run(item="b", score=1.0))
    summary = summarise(rows, **FAST).models["m"]
    assert summary.mean_score.value == pytest.approx((0.25 + 1.0) / 2)
    assert summary.mean_score.n == 2
    assert summary.n_runs == 5 and summary.n_items == 2


def test_the_bootstrap_resamples_items_not_runs():
    item_means = np.random.default_rng(3).random(12)
    rows = [run(item=f"i{i:02}", repeat=r, score=s) for i, s in enumerate(item_means) for r in range(5)]
    summary = summarise(rows, seed=7, **FAST).models["m"]
    by_item = bootstrap_mean(item_means, confidence=0.95, seed=7, **FAST)
    assert (summary.mean_score.low, summary.mean_score.high) == pytest.approx((by_item.low, by_item.high))


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 8).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_and_pass_hat_k_match_brute_force_over_all_k_subsets(case):
    n, c, k = case
    repeats = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(repeats, k))
    assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))
    assert pass_hat_k(n, c, k) == pytest.approx(sum(all(s) for s in subsets) / len(subsets))


def test_pass_at_k_and_pass_hat_k_are_means_over_items_and_k_defaults_to_the_repeats():
    rows = runs_from({"m": {"a": [True, False, False], "b": [True, True, True], "c": [False, False, False]}})
    summary = summarise(rows, **FAST).models["m"]
    assert summary.k == 3
    assert summary.pass_at_k.value == pytest.approx((1 + 1 + 0) / 3)
    assert summary.pass_hat_k.value == pytest.approx((0 + 1 + 0) / 3)
    at_2 = summarise(rows, k=2, **FAST).models["m"]
    assert at_2.pass_at_k.value == pytest.approx(((1 - 1 / 3) + 1 + 0) / 3)
    assert at_2.pass_hat_k.value == pytest.approx((0 + 1 + 0) / 3)


def test_items_with_fewer_repeats_than_k_are_left_out_of_pass_at_k():
    rows = runs_from({"m": {"a": [True, False, False], "b": [False]}})
    summary = summarise(rows, k=3, **FAST).models["m"]
    assert summary.pass_at_k.n == 1 and summary.pass_at_k.value == 1.0
    assert summarise(rows, **FAST).models["m"].k == 1  # the fewest repeats of any item


def test_pass_at_k_rejects_impossible_counts():
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError):
        pass_hat_k(3, 1, 4)


def test_the_bootstrap_interval_covers_the_true_mean_about_as_often_as_promised():
    rng = np.random.default_rng(11)
    covered = 0
    for trial in range(200):
        sample = rng.exponential(1.0, size=60)  # skewed, true mean 1
        estimate = bootstrap_mean(sample, confidence=0.9, resamples=500, seed=trial)
        covered += estimate.low <= 1.0 <= estimate.high
    assert 0.82 <= covered / 200 <= 0.96


def test_the_bootstrap_interval_agrees_with_scipy_percentile_bootstrap():
    sample = np.random.default_rng(5).normal(0.6, 0.2, size=200)
    ours = bootstrap_mean(sample, confidence=0.95, resamples=4_000, seed=1)
    theirs = scipy_stats.bootstrap(
        (sample,), np.mean, confidence_level=0.95, n_resamples=4_000, method="percentile", rng=2
    ).confidence_interval
    assert ours.low == pytest.approx(theirs.low, abs=0.005)
    assert ours.high == pytest.approx(theirs.high, abs=0.005)


def test_the_bootstrap_interval_shrinks_with_more_items():
    rng = np.random.default_rng(8)
    widths = []
    for n in (20, 80, 320):
        estimate = bootstrap_mean(rng.random(n), confidence=0.95, seed=0, **FAST)
        widths.append(estimate.high - estimate.low)
    assert widths[0] > widths[1] > widths[2]
    assert widths[2] < widths[0] / 2.5  # about 1/sqrt(n)


def test_the_bootstrap_is_reproducible_with_a_seed():
    sample = np.random.default_rng(9).random(30)
    first = bootstrap_mean(sample, confidence=0.95, seed=4, **FAST)
    assert bootstrap_mean(sample, confidence=0.95, seed=4, **FAST) == first
    assert bootstrap_mean(sample, confidence=0.95, seed=5, **FAST) != first
    rows = [run(item=f"i{i}", score=s) for i, s in enumerate(sample)]
    assert summarise(rows, seed=4, **FAST) == summarise(pd.DataFrame(rows), seed=4, **FAST)


def test_bootstrap_arguments_are_checked():
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_mean([1.0, 2.0], confidence=1.5, resamples=10, seed=0)
    with pytest.raises(ValueError, match="resamples"):
        summarise([run(passed=True)], resamples=0)
    with pytest.raises(ValueError, match="k must"):
        summarise([run(passed=True)], k=0)


def test_cost_and_tokens_are_per_item_solved_at_least_once():
    rows = runs_from({"m": {"a": [True, False], "b": [False, True], "c": [False, False]}}, cost_usd=0.5)
    for r in rows:
        r["total_tokens"] = 1000
    summary = summarise(rows, **FAST).models["m"]
    assert summary.solved_items == 2
    assert summary.cost_usd == pytest.approx(3.0)
    assert summary.cost_per_solved == pytest.approx(1.5)
    assert summary.tokens_per_solved == pytest.approx(3000)


def test_latency_percentiles_interpolate_between_runs():
    rows = [run(item=f"i{d}", passed=True, duration_s=float(d)) for d in range(1, 101)]
    summary = summarise(rows, **FAST).models["m"]
    assert (summary.latency_p50, summary.latency_p90, summary.latency_p99) == pytest.approx((50.5, 90.1, 99.01))


def test_flaky_items_are_those_whose_repeats_disagree():
    rows = runs_from({"m": {"a": [True, True], "b": [True, False], "c": [False, False], "d": [False, True, True]}})
    assert summarise(rows, **FAST).models["m"].flaky_items == ["b", "d"]


def test_all_pass():
    summary = summarise(runs_from({"m": {f"i{i}": [True] * 3 for i in range(5)}}), **FAST).models["m"]
    assert (summary.pass_rate.value, summary.pass_rate.low, summary.pass_rate.high) == (1.0, 1.0, 1.0)
    assert summary.pass_at_k.value == 1.0 and summary.pass_hat_k.value == 1.0
    assert summary.flaky_items == []


def test_all_fail():
    rows = runs_from({"m": {f"i{i}": [False] * 3 for i in range(5)}}, cost_usd=0.1)
    summary = summarise(rows, **FAST).models["m"]
    assert (summary.pass_rate.value, summary.pass_rate.low, summary.pass_rate.high) == (0.0, 0.0, 0.0)
    assert summary.pass_at_k.value == 0.0 and summary.pass_hat_k.value == 0.0
    assert summary.solved_items == 0
    assert summary.cost_usd == pytest.approx(1.5) and summary.cost_per_solved is None


def test_one_item_has_an_estimate_but_no_interval():
    summary = summarise(runs_from({"m": {"only": [True, False, True]}}), **FAST).models["m"]
    assert summary.pass_rate.value == pytest.approx(2 / 3)
    assert summary.pass_rate.low is None and summary.pass_rate.high is None
    assert summary.pass_rate.n == 1


def test_one_repeat_makes_pass_at_1_and_pass_hat_1_the_pass_rate():
    rows = runs_from({"m": {f"i{i}": [i % 3 == 0] for i in range(9)}})
    summary = summarise(rows, **FAST).models["m"]
    assert summary.k == 1
    assert summary.pass_at_k.value == summary.pass_hat_k.value == pytest.approx(summary.pass_rate.value) == 1 / 3
    assert summary.flaky_items == []


def test_unscored_runs_are_counted_and_left_out():
    rows = [*runs_from({"m": {"a": [True], "b": [False]}}), run(item="c", repeat=0, status="failed")]
    summary = summarise(rows, **FAST).models["m"]
    assert summary.n_runs == 3 and summary.n_unscored == 1
    assert summary.pass_rate.value == 0.5 and summary.pass_rate.n == 2
    assert summary.status_counts == {"failed": 1}


def test_a_model_with_no_pass_fail_has_no_pass_figures():
    summary = summarise([run(item=f"i{i}", score=i / 4) for i in range(5)], **FAST).models["m"]
    assert summary.k is None and summary.pass_rate.value is None and summary.pass_at_k.value is None
    assert summary.mean_score.value == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("runs", "message"),
    [
        ([], "no runs"),
        (pd.DataFrame(columns=["model", "item", "score"]), "no runs"),
        ([{"model": "m", "score": 1.0}], "columns"),
        ([{"model": "m", "item": "a"}], "score or a passed"),
        ([run(score=1.0, passed="yes")], "passed must be"),
        ([run(score="high")], "score must be"),
        ([run(passed=True), run(passed=False)], "appears twice"),
    ],
)
def test_bad_runs_are_refused_with_a_clear_error(runs, message):
    with pytest.raises(ValueError, match=message):
        summarise(runs, **FAST)


def test_a_summary_is_json_with_nan_as_none():
    rows = [run(item="a", score=math.nan, passed=None, cost_usd=math.nan), run(item="b", passed=True)]
    data = summarise(rows, **FAST).to_dict()
    text = json.dumps(data, allow_nan=False)
    model = json.loads(text)["models"]["m"]
    assert model["cost_usd"] is None and model["mean_score"]["low"] is None
    assert model["latency_p50"] is None


def test_models_are_summarised_separately_in_name_order():
    rows = runs_from({"zeta": {"a": [True]}, "alpha": {"a": [False], "b": [False]}})
    summary = summarise(rows, **FAST)
    assert list(summary.models) == ["alpha", "zeta"]
    assert summary.models["alpha"].n_items == 2 and summary.models["zeta"].pass_rate.value == 1.0


# Comparisons


def scored_pair(n_items=40, shift=0.1, seed=0):
    """Rows for models a and b on the same items, b's scores ``shift`` below a's plus item-level noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_items):
        base = rng.random()
        for r in range(2):
            rows.append(run("a", f"i{i}", r, score=base + rng.normal(0, 0.02), passed=bool(base > 0.3)))
            rows.append(run("b", f"i{i}", r, score=base - shift + rng.normal(0, 0.02), passed=bool(base > 0.3 + shift)))
    return rows


def test_the_score_difference_is_paired_on_the_items_both_ran():
    rows = [run("a", "x", score=0.9), run("a", "y", score=0.5), run("a", "only-a", score=0.0)]
    rows += [run("b", "x", score=0.6), run("b", "y", score=0.4), run("b", "only-b", score=1.0)]
    comparison = compare(rows, "a", "b", **FAST)
    assert (comparison.n_items, comparison.only_a, comparison.only_b) == (2, 1, 1)
    assert comparison.score_difference.value == pytest.approx(((0.9 - 0.6) + (0.5 - 0.4)) / 2)
    assert comparison.mean_score_a == pytest.approx(0.7) and comparison.mean_score_b == pytest.approx(0.5)


def test_a_clear_improvement_is_better_and_its_reverse_worse():
    rows = scored_pair(shift=0.1)
    ahead = compare(rows, "a", "b", **FAST)
    assert ahead.verdict == "better" and ahead.verdict_metric == "mean_score"
    assert 0.07 < ahead.score_difference.low < ahead.score_difference.high < 0.12  # pairing removes item spread
    behind = compare(rows, "b", "a", **FAST)
    assert behind.verdict == "worse"
    assert behind.score_difference.value == pytest.approx(-ahead.score_difference.value)


def test_the_same_results_are_inconclusive():
    rows = scored_pair(shift=0.0)
    for r in rows:
        if r["model"] == "b":
            twin = next(x for x in rows if x["model"] == "a" and (x["item"], x["repeat"]) == (r["item"], r["repeat"]))
            r["score"] = twin["score"]
    comparison = compare(rows, "a", "b", **FAST)
    assert comparison.verdict == comparison.mcnemar_verdict == "inconclusive"
    assert comparison.mcnemar.b == comparison.mcnemar.c == 0 and comparison.mcnemar.p_value == 1.0


def test_without_scores_the_verdict_comes_from_the_pass_rate():
    rows = runs_from({"a": {f"i{i}": [True] for i in range(30)}, "b": {f"i{i}": [i < 5] for i in range(30)}})
    for r in rows:
        r["score"] = None
    comparison = compare(rows, "a", "b", **FAST)
    assert comparison.verdict_metric == "pass_rate" and comparison.verdict == "better"
    assert comparison.mcnemar.b == 25 and comparison.mcnemar.c == 0 and comparison.mcnemar_verdict == "better"


def test_mcnemar_counts_items_by_strict_majority_of_repeats():
    rows = runs_from(
        {
            "a": {"x": [True, True, False], "y": [True, False], "z": [False], "w": [True]},
            "b": {"x": [False, False, True], "y": [True, True], "z": [True], "w": [True]},
        }
    )
    test = compare(rows, "a", "b", **FAST).mcnemar
    # x: a passes, b fails; y: a ties (a fail), b passes; z: b passes; w: both pass
    assert (test.b, test.c, test.method) == (1, 2, "exact")
    assert test.p_value == pytest.approx(scipy_stats.binomtest(1, 3, 0.5).pvalue)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 80), st.integers(0, 80))
def test_mcnemar_matches_scipy(b, c):
    result = mcnemar(b, c)
    n = b + c
    if n == 0:
        assert result.p_value == 1.0
    elif n < 25:
        assert result.method == "exact"
        assert result.p_value == pytest.approx(scipy_stats.binomtest(min(b, c), n, 0.5).pvalue, rel=1e-9)
    else:
        statistic = max(0, abs(b - c) - 1) ** 2 / n
        assert result.method == "chi2" and result.statistic == pytest.approx(statistic)
        assert result.p_value == pytest.approx(scipy_stats.chi2.sf(statistic, 1), rel=1e-9)


def test_mcnemar_by_hand():
    assert mcnemar(10, 2).p_value == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert mcnemar(20, 10).statistic == pytest.approx(81 / 30)


def test_compare_refuses_unknown_or_identical_models():
    rows = scored_pair(n_items=3)
    with pytest.raises(ValueError, match="no runs for model 'c'"):
        compare(rows, "a", "c", **FAST)
    with pytest.raises(ValueError, match="different"):
        compare(rows, "a", "a", **FAST)


def test_models_with_no_item_in_common_compare_to_nothing():
    rows = [run("a", "x", passed=True), run("b", "y", passed=False)]
    comparison = compare(rows, "a", "b", **FAST)
    assert comparison.n_items == 0 and comparison.score_difference.value is None
    assert comparison.verdict == "inconclusive"
    json.dumps(comparison.to_dict(), allow_nan=False)


# Agreement


def test_cohens_kappa_by_hand():
    # 50 items: both yes 20, only the first yes 5, only the second yes 10, both no 15: po 0.7, pe 0.5.
    first = ["yes"] * 25 + ["no"] * 25
    second = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(first, second) == pytest.approx(0.4)
    assert cohen_kappa(first, second) == pytest.approx(cohen_kappa_score(first, second))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
@settings(max_examples=120, deadline=None)
@given(
    st.integers(2, 6).flatmap(
        lambda k: st.integers(2, 40).flatmap(
            lambda n: st.tuples(
                st.just(k),
                st.lists(st.integers(0, k - 1), min_size=n, max_size=n),
                st.lists(st.integers(0, k - 1), min_size=n, max_size=n),
            )
        )
    ),
    st.sampled_from([None, "linear", "quadratic"]),
)
def test_cohens_kappa_matches_scikit_learn(case, weights):
    k, first, second = case
    theirs = cohen_kappa_score(first, second, labels=list(range(k)), weights=weights)
    ours = cohen_kappa(first, second, weights=weights)
    if math.isnan(theirs):  # both raters used one and the same category throughout
        assert ours == 1.0
    else:
        assert ours == pytest.approx(theirs, abs=1e-12)


def test_weighted_kappa_on_scores_matches_scikit_learn():
    rng = np.random.default_rng(2)
    human = rng.integers(1, 6, 200)
    judge = np.clip(human + rng.integers(-1, 2, 200), 1, 5)
    for weights in (None, "linear", "quadratic"):
        assert cohen_kappa(human, judge, weights=weights) == pytest.approx(
            cohen_kappa_score(human, judge, weights=weights)
        )


def test_kappa_weights_use_score_values_even_when_a_score_is_unused():
    first, second = [1, 5, 1, 5, 2], [1, 5, 2, 5, 1]
    assert cohen_kappa(first, second, weights="linear") == pytest.approx(
        cohen_kappa_score(first, second, weights="linear", labels=[1, 2, 3, 4, 5])
    )


def test_kappa_edge_cases():
    assert cohen_kappa([1, 2, 3, 2], [1, 2, 3, 2]) == 1.0  # identical raters
    assert cohen_kappa(["a"] * 4, ["a"] * 4) == 1.0  # one category throughout: defined as 1.0
    assert cohen_kappa([1, N, 2, math.nan], [1, 2, 2, 1]) == 1.0  # items missing a rating are dropped
    assert cohen_kappa([1, 0, 1, 0], [0, 1, 0, 1]) == pytest.approx(-1.0)
    assert cohen_kappa(["a"], ["b"]) == pytest.approx(cohen_kappa_score(["a"], ["b"]))  # one item
    with pytest.raises(ValueError, match="no item"):
        cohen_kappa([], [])
    with pytest.raises(ValueError, match="no item"):
        cohen_kappa([1, N], [N, 2])
    with pytest.raises(ValueError, match="different numbers"):
        cohen_kappa([1, 2], [1])
    with pytest.raises(ValueError, match="weights"):
        cohen_kappa([1, 2], [1, 2], weights="cubic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="outside labels"):
        cohen_kappa([1, 2], [1, 3], labels=[1, 2])


@pytest.mark.parametrize(
    ("level", "published"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)]
)
def test_krippendorffs_alpha_on_the_published_example(level, published):
    assert round(krippendorff_alpha(KRIPPENDORFF_2011, level), 3) == published


@settings(max_examples=120, deadline=None)
@given(
    st.integers(2, 5).flatmap(
        lambda raters: st.integers(1, 15).flatmap(
            lambda items: st.lists(
                st.lists(st.one_of(st.none(), st.integers(1, 5)), min_size=items, max_size=items),
                min_size=raters,
                max_size=raters,
            )
        )
    ),
    st.sampled_from(["nominal", "ordinal", "interval", "ratio"]),
)
def test_krippendorffs_alpha_matches_the_krippendorff_package(ratings, level):
    pairable = [v for column in zip(*ratings, strict=True) if sum(x is not None for x in column) >= 2 for v in column]
    values = {v for v in pairable if v is not None}
    if not values:
        with pytest.raises(ValueError, match="two or more raters"):
            krippendorff_alpha(ratings, level)
    elif len(values) == 1:
        assert krippendorff_alpha(ratings, level) == 1.0  # no variation: defined as 1.0
    else:
        theirs = krippendorff.alpha(as_float_matrix(ratings), level_of_measurement=level)
        assert krippendorff_alpha(ratings, level) == pytest.approx(theirs, abs=1e-9)


def test_krippendorffs_alpha_takes_strings_arrays_and_frames():
    labels = [["yes", "no", "yes", N], ["yes", "no", "no", "yes"], ["yes", "yes", "no", "yes"]]
    encoded = [[{"yes": 1, "no": 0}.get(v, np.nan) for v in row] for row in labels]  # type: ignore[arg-type]
    theirs = krippendorff.alpha(np.array(encoded, dtype=float), level_of_measurement="nominal")
    assert krippendorff_alpha(labels) == pytest.approx(theirs)
    assert krippendorff_alpha(as_float_matrix(KRIPPENDORFF_2011), "interval") == pytest.approx(0.849, abs=5e-4)
    assert krippendorff_alpha(pd.DataFrame(KRIPPENDORFF_2011), "ordinal") == pytest.approx(0.815, abs=5e-4)


def test_krippendorffs_alpha_edge_cases():
    assert krippendorff_alpha([[1, 2, 3], [1, 2, 3]]) == 1.0  # identical raters
    assert krippendorff_alpha([[4, 4], [4, 4]], "interval") == 1.0  # no variation at all
    one_item = [[1], [2], [2]]
    assert krippendorff_alpha(one_item, "interval") == pytest.approx(
        krippendorff.alpha(np.array(one_item, dtype=float), level_of_measurement="interval")
    )
    with pytest.raises(ValueError, match="no ratings"):
        krippendorff_alpha([])
    with pytest.raises(ValueError, match="two or more raters"):
        krippendorff_alpha([[1, N], [N, 2]])
    with pytest.raises(ValueError, match="every item"):
        krippendorff_alpha([[1, 2], [1]])
    with pytest.raises(ValueError, match="numeric"):
        krippendorff_alpha([["a", "b"], ["a", "a"]], "interval")
    with pytest.raises(ValueError, match="level"):
        krippendorff_alpha([[1, 2], [1, 2]], "cardinal")  # type: ignore[arg-type]


def test_agreement_by_criterion():
    rows = []
    for reviewer, row in zip("ABCD", KRIPPENDORFF_2011, strict=True):
        rows += [{"item": f"u{i}", "criterion": "clarity", "reviewer": reviewer, "value": v} for i, v in enumerate(row)]
    first, second = ["yes"] * 25 + ["no"] * 25, ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    for reviewer, values in (("A", first), ("B", second)):
        rows += [{"item": i, "criterion": "correct", "reviewer": reviewer, "value": v} for i, v in enumerate(values)]
    rows.append({"item": 0, "criterion": "correct", "reviewer": "B", "value": "yes"})  # a relabel: the last wins
    clarity, correct = agreement_by_criterion(pd.DataFrame(rows))
    assert (clarity.criterion, clarity.n_raters, clarity.n_items, clarity.level) == ("clarity", 4, 11, "interval")
    assert clarity.alpha == pytest.approx(0.849, abs=5e-4) and clarity.kappa is None
    assert (correct.n_raters, correct.n_items, correct.n_ratings, correct.level) == (2, 50, 100, "nominal")
    assert correct.kappa == pytest.approx(0.4) and correct.kappa_weights is None
    assert correct.alpha == pytest.approx(
        krippendorff.alpha(
            np.array([[v == "yes" for v in first], [v == "yes" for v in second]], dtype=float),
            level_of_measurement="nominal",
        )
    )
    nominal = agreement_by_criterion(rows, level="nominal")[0]
    assert nominal.alpha == pytest.approx(0.743, abs=5e-4)


def test_agreement_by_criterion_with_scores_uses_quadratic_kappa():
    rng = np.random.default_rng(4)
    a = rng.integers(1, 6, 40)
    b = np.clip(a + rng.integers(-1, 2, 40), 1, 5)
    rows = [
        {"item": i, "criterion": "s", "reviewer": r, "value": int(v)}
        for r, vs in (("a", a), ("b", b))
        for i, v in enumerate(vs)
    ]
    (result,) = agreement_by_criterion(rows)
    assert result.kappa_weights == "quadratic"
    assert result.kappa == pytest.approx(cohen_kappa_score(a, b, weights="quadratic"))


def test_agreement_by_criterion_edge_cases():
    single = agreement_by_criterion([{"item": 1, "criterion": "c", "reviewer": "a", "value": 3}])[0]
    assert single.n_items == 0 and single.alpha is None and single.kappa is None
    with pytest.raises(ValueError, match="no labels"):
        agreement_by_criterion([])
    with pytest.raises(ValueError, match="columns"):
        agreement_by_criterion([{"item": 1, "value": 3}])
    with pytest.raises(ValueError, match="no label has a value"):
        agreement_by_criterion([{"item": 1, "criterion": "c", "reviewer": "a", "value": None}])


def label(item, reviewer, value, criterion="score", is_judge=False):
    return {"item": item, "criterion": criterion, "reviewer": reviewer, "value": value, "is_judge": is_judge}


def test_judge_vs_human_on_scores_uses_the_rounded_mean_of_humans():
    humans = {"x": (3, 4), "y": (5, 5), "z": (1, 2), "w": (2, 2)}  # means 3.5, 5, 1.5, 2 -> 4, 5, 2, 2
    judge = {"x": 4, "y": 4, "z": 2, "w": 2}
    rows = [label(i, h, v) for i, (a, b) in humans.items() for h, v in (("h1", a), ("h2", b))]
    rows += [label(i, "gpt-judge", v, is_judge=True) for i, v in judge.items()]
    (result,) = judge_vs_human(rows)
    consensus = [4, 5, 2, 2]
    assert (result.judge, result.n, result.level, result.kappa_weights) == ("gpt-judge", 4, "interval", "quadratic")
    assert result.exact_agreement == 0.75
    assert result.mean_abs_difference == 0.25
    scale = [1, 2, 3, 4, 5]
    assert result.kappa == pytest.approx(cohen_kappa_score([4, 4, 2, 2], consensus, weights="quadratic", labels=scale))
    assert result.alpha == pytest.approx(
        krippendorff.alpha(np.array([[4, 4, 2, 2], consensus], dtype=float), level_of_measurement="interval")
    )


def test_judge_vs_human_on_categories_uses_the_majority_and_skips_ties():
    rows = [label("a", h, v, "ok") for h, v in (("h1", "pass"), ("h2", "pass"), ("h3", "fail"))]
    rows += [label("b", h, v, "ok") for h, v in (("h1", "pass"), ("h2", "fail"))]  # a tie: no consensus
    rows += [label("c", h, "fail", "ok") for h in ("h1", "h2")]
    rows += [label(i, "judge", v, "ok") for i, v in (("a", "pass"), ("b", "pass"), ("c", "pass"))]
    (result,) = judge_vs_human(pd.DataFrame(rows).drop(columns="is_judge"), judges=["judge"])
    assert (result.n, result.n_ties, result.level, result.kappa_weights) == (2, 1, "nominal", None)
    assert result.exact_agreement == 0.5 and result.mean_abs_difference is None
    assert result.kappa == pytest.approx(cohen_kappa_score(["pass", "pass"], ["pass", "fail"]))


def test_judge_vs_human_reports_each_judge_and_criterion():
    rows = [label(i, "h", i % 5 + 1, c) for i in range(10) for c in ("a", "b")]
    rows += [label(i, j, i % 5 + 1, c, True) for i in range(10) for c in ("a", "b") for j in ("j1", "j2")]
    results = judge_vs_human(rows)
    assert [(r.criterion, r.judge) for r in results] == [("a", "j1"), ("a", "j2"), ("b", "j1"), ("b", "j2")]
    assert all(r.kappa == r.alpha == r.exact_agreement == 1.0 for r in results)  # the judges agree exactly


def test_judge_vs_human_edge_cases():
    rows = [label(1, "h", 3), label(2, "j", 3, is_judge=True)]
    (result,) = judge_vs_human(rows)  # no item has both
    assert result.n == 0 and result.kappa is None and result.alpha is None and result.exact_agreement is None
    with pytest.raises(ValueError, match="which reviewers are judges"):
        judge_vs_human([{"item": 1, "criterion": "c", "reviewer": "h", "value": 1}])
    with pytest.raises(ValueError, match="no judge"):
        judge_vs_human([label(1, "h", 3)])
    with pytest.raises(ValueError, match="no human"):
        judge_vs_human([label(1, "j", 3, is_judge=True)])
    with pytest.raises(ValueError, match="no labels"):
        judge_vs_human([], judges=["j"])


# Gates


@pytest.fixture(scope="module")
def experiment():
    """Candidate "new" clearly worse than "base" on scores; pass rates 0.6 and 0.75."""
    rows = scored_pair(n_items=40, shift=0.1, seed=3)
    for r in rows:
        r["model"] = {"a": "base", "b": "new"}[r["model"]]
        r["cost_usd"] = 0.02
    return rows


def test_an_absolute_gate_passes_and_fails_on_the_point_estimate(experiment):
    summary = summarise(experiment, **FAST)
    rate = summary.models["new"].pass_rate.value
    passing = gate(summary, {"metric": "pass_rate", "min": rate - 0.01, "model": "new"})
    assert passing.passed and passing.reason.startswith("pass_rate of new is")
    assert passing.details["value"] == rate
    failing = gate(summary, {"metric": "pass_rate", "min": rate + 0.01, "model": "new"})
    assert not failing.passed and "below the minimum" in failing.reason


def test_an_absolute_gate_can_ask_for_the_lower_bound(experiment):
    summary = summarise(experiment, **FAST)
    estimate = summary.models["base"].mean_score
    threshold = (estimate.low + estimate.value) / 2
    assert gate(summary, {"metric": "mean_score", "min": threshold, "model": "base"}).passed
    result = gate(summary, {"metric": "mean_score", "min": threshold, "model": "base", "use_lower_bound": True})
    assert not result.passed and "lower bound of its 95% interval" in result.reason


def test_a_max_gate_caps_cost(experiment):
    summary = summarise(experiment, **FAST)
    cost = summary.models["base"].cost_per_solved
    assert gate(summary, {"metric": "cost_per_solved", "max": cost * 1.1, "model": "base"}).passed
    assert not gate(summary, {"metric": "cost_per_solved", "max": cost * 0.9, "model": "base"}).passed


def test_an_absolute_gate_fails_without_evidence():
    summary = summarise(runs_from({"m": {"only": [True]}}), **FAST)
    result = gate(summary, {"metric": "pass_rate", "min": 0.5, "use_lower_bound": True})
    assert not result.passed and "no lower bound" in result.reason
    assert not gate(summary, {"metric": "pass_rate", "min": 0.5, "model": "other"}).passed


def test_not_worse_than_fails_a_significantly_worse_candidate(experiment):
    comparison = compare(experiment, "new", "base", **FAST)
    result = gate(comparison, {"metric": "mean_score", "not_worse_than": "base", "confidence": 0.95})
    assert not result.passed
    assert result.reason.startswith("new is significantly worse than base")
    assert result.details["difference"]["high"] < 0


def test_not_worse_than_reads_a_comparison_either_way_round(experiment):
    forward = gate(compare(experiment, "new", "base", **FAST), {"metric": "mean_score", "not_worse_than": "base"})
    backward = gate(compare(experiment, "base", "new", **FAST), {"metric": "mean_score", "not_worse_than": "base"})
    assert forward.passed == backward.passed is False
    assert forward.details["difference"]["value"] == pytest.approx(backward.details["difference"]["value"])


def test_not_worse_than_passes_a_candidate_that_is_not_worse(experiment):
    comparison = compare(experiment, "base", "new", **FAST)
    result = gate(comparison, {"metric": "mean_score", "not_worse_than": "new"})
    assert result.passed and result.reason.startswith("base is not significantly worse than new")


def test_a_margin_forgives_a_small_drop(experiment):
    comparison = compare(experiment, "new", "base", **FAST)
    rule = {"metric": "mean_score", "not_worse_than": "base", "margin": 0.2}
    assert gate(comparison, rule).passed
    assert gate(comparison.to_dict(), rule) == gate(comparison, rule)  # the API's JSON works the same


def test_not_worse_than_fails_without_shared_items():
    rows = [run("a", "x", passed=True), run("b", "y", passed=False)]
    result = gate(compare(rows, "a", "b", **FAST), {"metric": "pass_rate", "not_worse_than": "b"})
    assert not result.passed and "no scored item in common" in result.reason


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"min": 0.5}, "needs a metric"),
        ({"metric": "pass_rate"}, "either min/max or not_worse_than"),
        ({"metric": "pass_rate", "min": 0.5, "not_worse_than": "base"}, "either min/max or not_worse_than"),
        ({"metric": "vibes", "min": 0.5, "model": "base"}, "unknown metric"),
        ({"metric": "pass_rate", "min": 0.5}, "several models"),
        ({"metric": "latency_p50", "max": 5, "use_lower_bound": True, "model": "base"}, "no interval"),
        ({"metric": "pass_rate", "min": 0.5, "model": "base", "treshold": 1}, "unknown gate rule keys"),
        ({"metric": "pass_rate", "not_worse_than": "base"}, "needs a comparison"),
    ],
)
def test_malformed_rules_are_refused(experiment, rule, message):
    with pytest.raises(ValueError, match=message):
        gate(summarise(experiment, **FAST), rule)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"metric": "pass_rate", "min": 0.5, "model": "new"}, "needs a summary"),
        ({"metric": "pass_at_k", "not_worse_than": "base"}, "compares"),
        ({"metric": "pass_rate", "not_worse_than": "base", "confidence": 0.9}, "compare again"),
        ({"metric": "pass_rate", "not_worse_than": "other"}, "not of the baseline"),
        ({"metric": "pass_rate", "not_worse_than": "base", "margin": -0.1}, "margin"),
    ],
)
def test_rules_a_comparison_cannot_answer_are_refused(experiment, rule, message):
    with pytest.raises(ValueError, match=message):
        gate(compare(experiment, "new", "base", **FAST), rule)


# The report


def test_the_report_leads_with_the_gate_verdict_and_shows_every_model(experiment):
    rows = [*experiment, *runs_from({"new": {"flaky-1": [True, False]}})]
    summary = summarise(rows, **FAST)
    comparison = compare(rows, "new", "base", **FAST)
    verdict = gate(comparison, {"metric": "mean_score", "not_worse_than": "base"})
    report = markdown_report(summary, comparison, verdict, title="PR #7")
    lines = report.splitlines()
    assert lines[0] == "## ❌ PR #7: gate failed"
    assert verdict.reason in report
    base = summary.models["base"]
    row = next(line for line in lines if line.startswith("| base |"))
    low, high = base.mean_score.low, base.mean_score.high
    assert f"{base.mean_score.value:.3f} [{low:.3f}, {high:.3f}]" in row
    assert f"{base.pass_rate.value * 100:.1f}%" in row
    assert f"| ${base.cost_per_solved:.4f} | - |" in row  # no durations recorded: no latency
    assert "| pass@2 | pass^2 |" in lines[4]
    assert "### `new` vs `base`" in report
    assert "**`new` is worse than `base`** on mean score at 95%" in report
    assert f"{comparison.mcnemar.b} items only `new` passed" in report
    assert "- `new` (1): `flaky-1`" in report


def test_a_passing_report_and_one_without_a_gate():
    rows = runs_from({"a|b": {"x": [True, True], "y": [True, False]}})
    summary = summarise(rows, **FAST)
    verdict = gate(summary, {"metric": "pass_rate", "min": 0.5})
    passed = markdown_report(summary, gate_result=verdict.to_dict(), title="Nightly")
    assert passed.splitlines()[0] == "## ✅ Nightly: gate passed"
    assert "| a\\|b | 4 | 2 |" in passed  # a pipe in a name does not break the table
    assert "| pass@2 | pass^2 |" in passed
    plain = markdown_report(summary.to_dict())
    assert plain.splitlines()[0] == "## Eval results"
    assert "✅" not in plain and "❌" not in plain
    steady = markdown_report(summarise(runs_from({"m": {"x": [True]}}), **FAST))
    assert "None: every item passed or failed the same way" in steady
