"""Statistics for evals, independent of the database.

Experiment results (one row per run) become per-model summaries and paired comparisons of two models; reviewers'
labels become agreement figures; a gate rule turns a summary or a comparison into a verdict, and
``markdown_report`` turns them all into a PR comment. Results are frozen dataclasses whose ``to_dict()`` is
JSON-serialisable (NaN and infinities become None); ``gate`` and ``markdown_report`` also take those dicts back.
"""

from __future__ import annotations

import math
import numbers
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

Level = Literal["nominal", "ordinal", "interval", "ratio"]
Weights = Literal["linear", "quadratic"] | None
Verdict = Literal["better", "worse", "inconclusive"]
Floats = npt.NDArray[np.float64]

RUN_COLUMNS = ("model", "item", "repeat", "score", "passed", "cost_usd", "total_tokens", "duration_s", "status")
LABEL_COLUMNS = ("item", "criterion", "reviewer", "value")
EXACT_MCNEMAR_BELOW = 25  # discordant pairs under which McNemar uses the exact binomial test
ESTIMATE_METRICS = ("mean_score", "pass_rate", "pass_at_k", "pass_hat_k")
SCALAR_METRICS = ("cost_per_solved", "tokens_per_solved", "latency_p50", "latency_p90", "latency_p99")
PAIRED_METRICS = {"mean_score": "score_difference", "pass_rate": "pass_rate_difference"}
_BOOTSTRAP_CELLS = 4_000_000  # resampled values held in memory at once


# Results


@dataclass(frozen=True)
class _Result:
    def to_dict(self) -> dict[str, Any]:
        """The result as plain JSON-serialisable data: NaN and infinities become None."""
        cleaned: dict[str, Any] = _clean(asdict(self))
        return cleaned


@dataclass(frozen=True)
class Estimate(_Result):
    """A mean over ``n`` items with its percentile bootstrap interval.

    ``value`` is None when no item counts; ``low`` and ``high`` are None when fewer than two do (one item says
    nothing about the spread between items).
    """

    value: float | None
    low: float | None
    high: float | None
    n: int


@dataclass(frozen=True)
class ModelSummary(_Result):
    """One model's results over an experiment's items and repeats."""

    model: str
    n_runs: int
    n_items: int
    n_unscored: int  # runs with neither a score nor a pass/fail
    repeats: int  # the most runs any item had
    k: int | None  # None when no run has a pass/fail
    mean_score: Estimate
    pass_rate: Estimate
    pass_at_k: Estimate  # over the items with at least k scored repeats
    pass_hat_k: Estimate
    solved_items: int  # items with at least one passing run
    cost_usd: float | None
    total_tokens: float | None
    cost_per_solved: float | None
    tokens_per_solved: float | None
    latency_p50: float | None
    latency_p90: float | None
    latency_p99: float | None
    flaky_items: list[Any]
    status_counts: dict[str, int]


@dataclass(frozen=True)
class Summary(_Result):
    """``summarise`` output: a ModelSummary per model name, in name order."""

    confidence: float
    resamples: int
    seed: int
    models: dict[str, ModelSummary]
    kind: str = "summary"


@dataclass(frozen=True)
class McNemar(_Result):
    """McNemar's test on paired pass/fail: ``b`` items only the first model passed, ``c`` only the second."""

    b: int
    c: int
    statistic: float | None  # min(b, c) for "exact", the chi-square value for "chi2", None with no discordant pair
    p_value: float
    method: Literal["exact", "chi2"]


@dataclass(frozen=True)
class Comparison(_Result):
    """``compare`` output: model ``a`` against model ``b`` on the items both ran; differences are a - b."""

    a: str
    b: str
    confidence: float
    resamples: int
    seed: int
    n_items: int  # items both models ran
    only_a: int
    only_b: int
    mean_score_a: float | None
    mean_score_b: float | None
    pass_rate_a: float | None
    pass_rate_b: float | None
    score_difference: Estimate
    pass_rate_difference: Estimate
    mcnemar: McNemar
    outcome_rule: str  # how an item's repeats become one pass/fail for McNemar
    verdict: Verdict  # a against b, from the interval of verdict_metric's difference
    verdict_metric: str
    mcnemar_verdict: Verdict
    kind: str = "comparison"


@dataclass(frozen=True)
class CriterionAgreement(_Result):
    """Agreement between reviewers on one criterion."""

    criterion: Any
    n_items: int  # items with at least two ratings: the ones agreement is measured on
    n_raters: int
    n_ratings: int
    level: str
    alpha: float | None
    kappa: float | None  # only with exactly two raters
    kappa_weights: str | None


@dataclass(frozen=True)
class JudgeAgreement(_Result):
    """Agreement between one judge and the human consensus on one criterion."""

    criterion: Any
    judge: Any
    n: int  # items with both a judge value and a human consensus
    n_ties: int  # items whose humans had no majority (nominal criteria), left out
    level: str
    kappa: float | None
    kappa_weights: str | None
    alpha: float | None
    exact_agreement: float | None
    mean_abs_difference: float | None  # numeric criteria only


@dataclass(frozen=True)
class GateResult(_Result):
    """A gate rule's verdict: ``reason`` is one sentence fit for a CI log."""

    passed: bool
    reason: str
    details: dict[str, Any]
    kind: str = "gate"


def _clean(value: Any) -> Any:
    """``value`` made JSON-serialisable: NaN and infinities become None, numpy scalars Python ones."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or _missing(value):
        return None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str | int):
        return value
    return str(value)


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float | np.floating) and math.isnan(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _optional(value: Any) -> float | None:
    return None if value is None or _missing(value) else float(value)


# Experiment results


def runs_frame(runs: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """The runs as a DataFrame with every column of RUN_COLUMNS, numbers as floats and ``passed`` as 1.0/0.0/NaN.

    Needs ``model`` and ``item`` and one of ``score`` or ``passed``; the other columns may be left out. Raises
    ValueError on no runs, a missing item, a pass/fail that is not a bool, or a (model, item, repeat) seen twice.
    """
    df = runs.copy() if isinstance(runs, pd.DataFrame) else pd.DataFrame(list(runs))
    if df.empty:
        raise ValueError("no runs to summarise")
    missing = [c for c in ("model", "item") if c not in df.columns]
    if missing:
        raise ValueError(f"runs need the columns {missing}")
    if "score" not in df.columns and "passed" not in df.columns:
        raise ValueError("runs need a score or a passed column")
    if df["item"].map(_missing).any():
        raise ValueError("every run needs an item")
    for column in RUN_COLUMNS:
        if column not in df.columns:
            df[column] = None
    df["model"] = df["model"].astype(str)
    for column in ("score", "cost_usd", "total_tokens", "duration_s"):
        try:
            df[column] = pd.to_numeric(df[column].map(lambda v: np.nan if _missing(v) else v)).astype(float)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{column} must be a number or empty: {exc}")
    df["passed"] = df["passed"].map(_pass_value).astype(float)
    repeats = df[~df["repeat"].map(_missing)]
    duplicated = repeats.duplicated(subset=["model", "item", "repeat"])
    if duplicated.any():
        row = repeats[duplicated].iloc[0]
        raise ValueError(f"model {row['model']!r} item {row['item']!r} repeat {row['repeat']!r} appears twice")
    return df


def _pass_value(value: Any) -> float:
    if _missing(value):
        return math.nan
    if isinstance(value, bool | np.bool_) or (_is_number(value) and value in (0, 1)):
        return float(bool(value))
    raise ValueError(f"passed must be true, false or empty, not {value!r}")


def _items(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per item: the mean of its scored repeats, its ``runs``, ``n`` repeats with a pass/fail, ``c`` passes."""
    grouped = runs.groupby("item", sort=True)
    return pd.DataFrame(
        {
            "score": grouped["score"].mean(),
            "runs": grouped.size(),
            "n": grouped["passed"].count(),
            "c": grouped["passed"].sum(),
        }
    )


def _check_bootstrap(confidence: float, resamples: int) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, not {confidence!r}")
    if resamples < 1:
        raise ValueError(f"resamples must be positive, not {resamples!r}")


def bootstrap_mean(values: Sequence[float] | Floats, *, confidence: float, resamples: int, seed: int) -> Estimate:
    """The mean of ``values`` with a percentile bootstrap interval, resampling the values with replacement.

    NaNs are dropped first. Callers pass one value per item (repeats already averaged), so it is items that are
    resampled. The same seed gives the same interval.
    """
    _check_bootstrap(confidence, resamples)
    array = np.asarray(values, dtype=float)
    array = array[~np.isnan(array)]
    n = len(array)
    if n == 0:
        return Estimate(None, None, None, 0)
    point = float(array.mean())
    if n == 1:
        return Estimate(point, None, None, 1)
    if np.ptp(array) == 0:
        return Estimate(point, point, point, n)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    step = max(1, _BOOTSTRAP_CELLS // n)
    for start in range(0, resamples, step):
        stop = min(start + step, resamples)
        means[start:stop] = array[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Estimate(point, float(low), float(high), n)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one item with ``c`` passes in ``n`` repeats: 1 - C(n-c, k) / C(n, k).

    The chance that at least one of k repeats drawn without replacement passes.
    """
    _check_k(n, c, k)
    return 1 - math.comb(n - c, k) / math.comb(n, k)


def pass_hat_k(n: int, c: int, k: int) -> float:
    """Unbiased pass^k of one item with ``c`` passes in ``n`` repeats: C(c, k) / C(n, k).

    The chance that all of k repeats drawn without replacement pass.
    """
    _check_k(n, c, k)
    return math.comb(c, k) / math.comb(n, k)


def _check_k(n: int, c: int, k: int) -> None:
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")


def summarise(
    runs: pd.DataFrame | Iterable[Mapping[str, Any]],
    *,
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
    k: int | None = None,
) -> Summary:
    """Per model: runs, items, mean score and pass rate with bootstrap intervals, pass@k, pass^k, cost and tokens per
    solved item, latency percentiles and flaky items.

    Intervals are percentile bootstraps that resample ITEMS, not runs: an item's repeats are first averaged into
    one value, so repeats of one item never count as independent evidence. Every item weighs the same, so the pass
    rate is the mean over items of each item's pass fraction. Unscored runs (score NaN, passed None) are left out
    of the score and pass figures; whether a crashed run is a failure or unscored is the caller's choice.

    ``k`` defaults, per model, to the fewest scored repeats of any item; pass@k and pass^k are means over the items
    with at least ``k`` scored repeats (None when there are none). Cost and tokens per solved item are the model's
    totals over all its runs divided by the items with at least one pass (None when none passed). Latency
    percentiles are over runs (linear interpolation). An item is flaky when its repeats disagree on pass/fail.
    """
    _check_bootstrap(confidence, resamples)
    if k is not None and k < 1:
        raise ValueError(f"k must be at least 1, not {k!r}")
    df = runs_frame(runs)
    models = {
        str(model): _summarise_model(str(model), group, confidence=confidence, resamples=resamples, seed=seed, k=k)
        for model, group in df.groupby("model", sort=True)
    }
    return Summary(confidence=confidence, resamples=resamples, seed=seed, models=models)


def _summarise_model(
    model: str, runs: pd.DataFrame, *, confidence: float, resamples: int, seed: int, k: int | None
) -> ModelSummary:
    items = _items(runs)
    bootstrap = partial(bootstrap_mean, confidence=confidence, resamples=resamples, seed=seed)
    judged = items[items["n"] > 0]
    if k is None and len(judged):
        k = int(judged["n"].min())
    at_k: list[float] = []
    hat_k: list[float] = []
    if k is not None:
        for n, c in zip(judged["n"].astype(int), judged["c"].astype(int), strict=True):
            if n >= k:
                at_k.append(pass_at_k(n, c, k))
                hat_k.append(pass_hat_k(n, c, k))
    if not len(judged):
        k = None
    solved = int((items["c"] > 0).sum())
    cost = _optional(runs["cost_usd"].sum(min_count=1))
    tokens = _optional(runs["total_tokens"].sum(min_count=1))
    durations = runs["duration_s"].dropna().to_numpy(float)
    p50, p90, p99 = (float(p) for p in np.percentile(durations, [50, 90, 99])) if len(durations) else (None,) * 3
    flaky = items[(items["n"] >= 2) & (items["c"] > 0) & (items["c"] < items["n"])]
    statuses = runs["status"][~runs["status"].map(_missing)].astype(str).value_counts()
    return ModelSummary(
        model=model,
        n_runs=len(runs),
        n_items=len(items),
        n_unscored=int((runs["score"].isna() & runs["passed"].isna()).sum()),
        repeats=int(items["runs"].max()),
        k=k,
        mean_score=bootstrap(items["score"].to_numpy(float)),
        pass_rate=bootstrap((judged["c"] / judged["n"]).to_numpy(float)),
        pass_at_k=bootstrap(at_k),
        pass_hat_k=bootstrap(hat_k),
        solved_items=solved,
        cost_usd=cost,
        total_tokens=tokens,
        cost_per_solved=cost / solved if cost is not None and solved else None,
        tokens_per_solved=tokens / solved if tokens is not None and solved else None,
        latency_p50=p50,
        latency_p90=p90,
        latency_p99=p99,
        flaky_items=list(flaky.index),
        status_counts={str(s): int(n) for s, n in sorted(statuses.items())},
    )


def mcnemar(b: int, c: int) -> McNemar:
    """McNemar's test of ``b`` against ``c`` discordant pairs, two-sided.

    Under 25 discordant pairs: the exact binomial test, p = min(1, 2 · P(X ≤ min(b, c))) with X ~ Bin(b + c, ½).
    From 25 on: chi-square with one degree of freedom and Edwards' continuity correction, (|b - c| - 1)² / (b + c),
    the correction floored at zero so b = c gives p = 1. No discordant pair: p = 1.
    """
    if b < 0 or c < 0:
        raise ValueError("discordant counts cannot be negative")
    n = b + c
    if n < EXACT_MCNEMAR_BELOW:
        tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
        p_value = min(1.0, 2 * tail / 2**n)
        return McNemar(b=b, c=c, statistic=float(min(b, c)) if n else None, p_value=p_value, method="exact")
    statistic = max(0, abs(b - c) - 1) ** 2 / n
    return McNemar(b=b, c=c, statistic=statistic, p_value=math.erfc(math.sqrt(statistic / 2)), method="chi2")


def compare(
    runs: pd.DataFrame | Iterable[Mapping[str, Any]],
    a: str,
    b: str,
    *,
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> Comparison:
    """Model ``a`` against model ``b``, paired on the items both ran. Differences are a - b.

    The score difference is the mean over shared items of (a's mean score - b's), with a paired bootstrap interval
    that resamples items; the pass-rate difference likewise with per-item pass fractions. McNemar compares per-item
    pass/fail, where an item passes when a strict majority of its scored repeats passed (a tie is a fail; one repeat
    is just that repeat). ``verdict`` says whether a is better, worse or neither at ``confidence``: better when the
    interval of the score difference lies above zero, worse when below (the pass-rate difference when there are no
    scores). ``mcnemar_verdict`` is the same call from McNemar's p-value.
    """
    _check_bootstrap(confidence, resamples)
    df = runs_frame(runs)
    a, b = str(a), str(b)
    if a == b:
        raise ValueError("compare two different models")
    for model in (a, b):
        if not (df["model"] == model).any():
            raise ValueError(f"no runs for model {model!r}")
    items_a, items_b = _items(df[df["model"] == a]), _items(df[df["model"] == b])
    both = items_a.join(items_b, how="inner", lsuffix="_a", rsuffix="_b")
    bootstrap = partial(bootstrap_mean, confidence=confidence, resamples=resamples, seed=seed)
    scored = both.dropna(subset=["score_a", "score_b"])
    judged = both[(both["n_a"] > 0) & (both["n_b"] > 0)]
    rate_a, rate_b = judged["c_a"] / judged["n_a"], judged["c_b"] / judged["n_b"]
    score_difference = bootstrap((scored["score_a"] - scored["score_b"]).to_numpy(float))
    pass_rate_difference = bootstrap((rate_a - rate_b).to_numpy(float))
    passed_a, passed_b = judged["c_a"] * 2 > judged["n_a"], judged["c_b"] * 2 > judged["n_b"]
    test = mcnemar(int((passed_a & ~passed_b).sum()), int((~passed_a & passed_b).sum()))
    primary = "mean_score" if score_difference.n else "pass_rate"
    mcnemar_verdict: Verdict = "inconclusive"
    if test.p_value < 1 - confidence:
        mcnemar_verdict = "better" if test.b > test.c else "worse"
    return Comparison(
        a=a,
        b=b,
        confidence=confidence,
        resamples=resamples,
        seed=seed,
        n_items=len(both),
        only_a=len(items_a) - len(both),
        only_b=len(items_b) - len(both),
        mean_score_a=_optional(scored["score_a"].mean()) if len(scored) else None,
        mean_score_b=_optional(scored["score_b"].mean()) if len(scored) else None,
        pass_rate_a=_optional(rate_a.mean()) if len(judged) else None,
        pass_rate_b=_optional(rate_b.mean()) if len(judged) else None,
        score_difference=score_difference,
        pass_rate_difference=pass_rate_difference,
        mcnemar=test,
        outcome_rule="majority",
        verdict=_verdict(score_difference if primary == "mean_score" else pass_rate_difference),
        verdict_metric=primary,
        mcnemar_verdict=mcnemar_verdict,
    )


def _verdict(difference: Estimate) -> Verdict:
    if difference.low is not None and difference.low > 0:
        return "better"
    if difference.high is not None and difference.high < 0:
        return "worse"
    return "inconclusive"


# Agreement


def cohen_kappa(
    a: Iterable[Any], b: Iterable[Any], *, weights: Weights = None, labels: Sequence[Any] | None = None
) -> float:
    """Cohen's kappa between two raters of the same items, unweighted or with linear or quadratic weights.

    Items either rater left empty (None or NaN) are dropped. Categories are ``labels`` in their order when given,
    else the sorted values seen. Weights use the distance between numeric categories' values (between positions
    for other categories), so 1-5 scores weigh 1 against 5 the same whether or not anyone used 3.

    When chance disagreement is zero (both raters gave every item one and the same category), kappa is 0/0; it is
    defined here as 1.0, since observed agreement is then perfect too. Raises ValueError when no item has both
    ratings or the inputs differ in length.
    """
    first, second = list(a), list(b)
    if len(first) != len(second):
        raise ValueError(f"the raters rated different numbers of items ({len(first)} and {len(second)})")
    pairs = [(x, y) for x, y in zip(first, second, strict=True) if not _missing(x) and not _missing(y)]
    if not pairs:
        raise ValueError("no item was rated by both raters")
    categories = list(labels) if labels is not None else _domain([v for pair in pairs for v in pair])
    index = {value: i for i, value in enumerate(categories)}
    unknown = {v for pair in pairs for v in pair if v not in index}
    if unknown:
        raise ValueError(f"values outside labels: {sorted(map(str, unknown))}")
    observed = np.zeros((len(categories), len(categories)))
    for x, y in pairs:
        observed[index[x], index[y]] += 1
    observed /= observed.sum()
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0))
    numeric = all(_is_number(c) for c in categories)
    positions = np.array(categories, dtype=float) if numeric else np.arange(len(categories), dtype=float)
    distance = np.abs(positions[:, None] - positions[None, :])
    if weights is None:
        weight = (distance > 0).astype(float)
    elif weights == "linear":
        weight = distance
    elif weights == "quadratic":
        weight = distance**2
    else:
        raise ValueError(f"weights must be None, 'linear' or 'quadratic', not {weights!r}")
    chance = float((weight * expected).sum())
    if chance == 0:
        return 1.0
    return 1 - float((weight * observed).sum()) / chance


def _domain(values: Iterable[Any]) -> list[Any]:
    """The distinct values, sorted when they can be (mixed types keep their first-seen order)."""
    distinct = list(dict.fromkeys(values))
    try:
        return sorted(distinct)
    except TypeError:
        return distinct


def krippendorff_alpha(
    ratings: Sequence[Sequence[Any]] | npt.NDArray[Any] | pd.DataFrame, level: Level = "nominal"
) -> float:
    """Krippendorff's alpha for any number of raters, with missing ratings (None or NaN).

    ``ratings`` is raters x items (a DataFrame's rows are raters). Items with fewer than two ratings are not
    pairable and are left out. Distances: nominal (same or not), ordinal (Krippendorff's rank metric over the values'
    frequencies), interval (squared difference), ratio (squared difference over sum); all but nominal need numbers.

    When expected disagreement is zero (every pairable rating is the same value), alpha is 0/0; it is defined here
    as 1.0, since observed disagreement is then zero too. Raises ValueError when no item has two ratings.
    """
    rows = [list(row) for row in (ratings.to_numpy() if isinstance(ratings, pd.DataFrame) else ratings)]
    if not rows or not rows[0]:
        raise ValueError("no ratings")
    if len({len(row) for row in rows}) != 1:
        raise ValueError("every rater needs a (possibly empty) rating for every item")
    units = [[v for v in column if not _missing(v)] for column in zip(*rows, strict=True)]
    units = [unit for unit in units if len(unit) >= 2]
    if not units:
        raise ValueError("no item was rated by two or more raters")
    if level not in ("nominal", "ordinal", "interval", "ratio"):
        raise ValueError(f"level must be nominal, ordinal, interval or ratio, not {level!r}")
    values = [v for unit in units for v in unit]
    if level != "nominal" and not all(_is_number(v) for v in values):
        raise ValueError(f"{level} alpha needs numeric ratings")
    domain = _domain(values)
    index = {value: i for i, value in enumerate(domain)}
    coincidences = np.zeros((len(domain), len(domain)))
    for unit in units:
        counts = np.bincount([index[v] for v in unit], minlength=len(domain)).astype(float)
        coincidences += (np.outer(counts, counts) - np.diag(counts)) / (len(unit) - 1)
    totals = coincidences.sum(axis=0)
    delta = _distances(np.array(domain, dtype=float) if level != "nominal" else np.arange(len(domain)), totals, level)
    expected = float((np.outer(totals, totals) * delta).sum()) / (totals.sum() - 1)
    if expected == 0:
        return 1.0
    return 1 - float((coincidences * delta).sum()) / expected


def _distances(values: npt.NDArray[Any], totals: Floats, level: Level) -> Floats:
    """Squared distances between every pair of values at ``level``; ``totals`` are the values' pairable counts."""
    first, second = values[:, None].astype(float), values[None, :].astype(float)
    if level == "nominal":
        return (first != second).astype(float)
    if level == "interval":
        return (first - second) ** 2
    if level == "ratio":
        sums = first + second
        return np.divide(first - second, sums, out=np.zeros(np.broadcast(first, second).shape), where=sums != 0) ** 2
    cumulative = np.concatenate([[0.0], np.cumsum(totals)])
    positions = np.arange(len(values))
    low, high = np.minimum.outer(positions, positions), np.maximum.outer(positions, positions)
    between = cumulative[high + 1] - cumulative[low]
    return (between - (totals[low] + totals[high]) / 2) ** 2


def _labels_frame(labels: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Labels with a value, one per (item, criterion, reviewer): the last one given wins."""
    df = labels.copy() if isinstance(labels, pd.DataFrame) else pd.DataFrame(list(labels))
    if df.empty:
        raise ValueError("no labels")
    missing = [c for c in LABEL_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"labels need the columns {missing}")
    df = df[~df["value"].map(_missing)]
    if df.empty:
        raise ValueError("no label has a value")
    return df.drop_duplicates(subset=["item", "criterion", "reviewer"], keep="last")


def _numeric_level(values: Iterable[Any]) -> tuple[Level, Weights]:
    return ("interval", "quadratic") if all(_is_number(v) for v in values) else ("nominal", None)


def agreement_by_criterion(
    labels: pd.DataFrame | Iterable[Mapping[str, Any]], *, level: Level | None = None
) -> list[CriterionAgreement]:
    """Agreement between reviewers per criterion, from rows of (item, criterion, reviewer, value).

    Alpha always (None when no item has two ratings); Cohen's kappa too when exactly two reviewers rated the
    criterion. ``level`` defaults to interval alpha and quadratic kappa when every value is a number (1-5 scores),
    nominal alpha and unweighted kappa otherwise (bools, categories); an explicit ordinal, interval or ratio level
    takes quadratic kappa. A reviewer's last row for an item and criterion counts; empty values are dropped.
    """
    df = _labels_frame(labels)
    results = []
    for criterion, group in df.groupby("criterion", sort=True):
        values = list(group["value"])
        chosen, weights = _numeric_level(values)
        if level is not None:
            chosen, weights = level, (None if level == "nominal" else "quadratic")
        reviewers = _domain(group["reviewer"])
        items = _domain(group["item"])
        table = dict(zip(zip(group["reviewer"], group["item"], strict=True), values, strict=True))
        matrix = [[table.get((reviewer, item)) for item in items] for reviewer in reviewers]
        paired = int((group.groupby("item").size() >= 2).sum())
        kappa = None
        if len(reviewers) == 2 and paired:
            kappa = cohen_kappa(matrix[0], matrix[1], weights=weights)
        results.append(
            CriterionAgreement(
                criterion=criterion,
                n_items=paired,
                n_raters=len(reviewers),
                n_ratings=len(group),
                level=chosen,
                alpha=krippendorff_alpha(matrix, chosen) if paired else None,
                kappa=kappa,
                kappa_weights=weights if kappa is not None else None,
            )
        )
    return results


def judge_vs_human(
    labels: pd.DataFrame | Iterable[Mapping[str, Any]], *, judges: Iterable[Any] | None = None
) -> list[JudgeAgreement]:
    """Each judge against the human consensus, per criterion, from rows of (item, criterion, reviewer, value).

    Judges are the reviewers in ``judges``, or the rows whose ``is_judge`` column is true. The consensus of numeric
    criteria is the humans' mean, rounded half up to a whole number when they all gave whole numbers (so 1-5 scores
    stay on the scale: 3.5 becomes 4); of other criteria their majority value, and an item whose humans tie has no
    consensus and is left out (counted in ``n_ties``). Numeric criteria get quadratic-weighted kappa and interval
    alpha, others unweighted kappa and nominal alpha; exact agreement is the share of items where the judge equals
    the consensus. Figures are None when no item has both.
    """
    df = _labels_frame(labels)
    if judges is not None:
        is_judge = df["reviewer"].isin(list(judges))
    elif "is_judge" in df.columns:
        is_judge = df["is_judge"].map(lambda v: not _missing(v) and bool(v)).astype(bool)
    else:
        raise ValueError("say which reviewers are judges: pass judges=… or give labels an is_judge column")
    if not is_judge.any():
        raise ValueError("no judge labels")
    if is_judge.all():
        raise ValueError("no human labels")
    df = df.assign(is_judge=is_judge)
    results = []
    for criterion, group in df.groupby("criterion", sort=True):
        level, weights = _numeric_level(group["value"])
        consensus, ties = _consensus(group[~group["is_judge"]], numeric=level != "nominal")
        judged = group[group["is_judge"]]
        for judge in _domain(judged["reviewer"]):
            verdicts = judged[judged["reviewer"] == judge]
            pairs = [
                (v, consensus[i]) for i, v in zip(verdicts["item"], verdicts["value"], strict=True) if i in consensus
            ]
            results.append(_judge_agreement(criterion, judge, pairs, ties, level, weights))
    return results


def _consensus(humans: pd.DataFrame, *, numeric: bool) -> tuple[dict[Any, Any], int]:
    """The humans' consensus per item, and how many items had none (a tied majority)."""
    consensus: dict[Any, Any] = {}
    ties = 0
    whole = numeric and all(float(v).is_integer() for v in humans["value"])
    for item, values in humans.groupby("item", sort=True)["value"]:
        if numeric:
            mean = float(np.mean(values.to_numpy(float)))
            consensus[item] = math.floor(mean + 0.5) if whole else mean
            continue
        (top, count), *rest = Counter(values).most_common()
        if rest and rest[0][1] == count:
            ties += 1
        else:
            consensus[item] = top
    return consensus, ties


def _judge_agreement(
    criterion: Any, judge: Any, pairs: list[tuple[Any, Any]], ties: int, level: Level, weights: Weights
) -> JudgeAgreement:
    if not pairs:
        return JudgeAgreement(criterion, judge, 0, ties, level, None, weights, None, None, None)
    judged, consensus = [p[0] for p in pairs], [p[1] for p in pairs]
    agree = [j == c for j, c in pairs]
    mean_abs = float(np.mean([abs(j - c) for j, c in pairs])) if level != "nominal" else None
    return JudgeAgreement(
        criterion=criterion,
        judge=judge,
        n=len(pairs),
        n_ties=ties,
        level=level,
        kappa=cohen_kappa(judged, consensus, weights=weights),
        kappa_weights=weights,
        alpha=krippendorff_alpha([judged, consensus], level),
        exact_agreement=sum(agree) / len(agree),
        mean_abs_difference=mean_abs,
    )


# Gates and reports


_RULE_KEYS = {"metric", "min", "max", "use_lower_bound", "model", "not_worse_than", "confidence", "margin"}


def gate(result: Summary | Comparison | Mapping[str, Any], rule: Mapping[str, Any]) -> GateResult:
    """Whether ``result`` passes ``rule``. Raises ValueError on a malformed rule or one the result cannot answer.

    Absolute rules take a summary: ``{"metric": m, "min": x}`` and/or ``"max": y``, with ``"model"`` (needed when
    the summary has several models). ``m`` is one of ESTIMATE_METRICS or SCALAR_METRICS; ``"use_lower_bound": true``
    checks ``min`` against the interval's lower bound instead of the point estimate.

    Relative rules take a comparison: ``{"metric": "mean_score" | "pass_rate", "not_worse_than": baseline,
    "confidence": 0.95, "margin": 0.0}``; the candidate is ``"model"`` or the comparison's other model. It fails when
    the interval's upper bound of (candidate - baseline) is below -margin: the candidate is significantly worse.
    ``confidence`` must be the comparison's own (compare again to change it).

    A gate never passes on missing evidence: no value, no shared items or no interval fails it, with the reason.
    """
    data = result.to_dict() if isinstance(result, _Result) else dict(result)
    unknown = set(rule) - _RULE_KEYS
    if unknown:
        raise ValueError(f"unknown gate rule keys: {sorted(unknown)}")
    if "metric" not in rule:
        raise ValueError("a gate rule needs a metric")
    absolute = "min" in rule or "max" in rule
    if absolute == ("not_worse_than" in rule):
        raise ValueError("a gate rule needs either min/max or not_worse_than")
    if absolute:
        return _gate_absolute(data, rule)
    return _gate_relative(data, rule)


def _gate_absolute(data: Mapping[str, Any], rule: Mapping[str, Any]) -> GateResult:
    metric = rule["metric"]
    if metric not in ESTIMATE_METRICS + SCALAR_METRICS:
        raise ValueError(f"unknown metric {metric!r}: one of {', '.join(ESTIMATE_METRICS + SCALAR_METRICS)}")
    if data.get("kind") != "summary":
        raise ValueError("a min/max rule needs a summary (summarise())")
    lower = bool(rule.get("use_lower_bound", False))
    if lower and metric not in ESTIMATE_METRICS:
        raise ValueError(f"{metric} has no interval: use_lower_bound needs one of {', '.join(ESTIMATE_METRICS)}")
    models = data["models"]
    model = rule.get("model")
    if model is None:
        if len(models) != 1:
            raise ValueError(f"the summary has several models: say which in the rule's model ({', '.join(models)})")
        model = next(iter(models))
    details: dict[str, Any] = {"metric": metric, "model": model, "min": rule.get("min"), "max": rule.get("max")}
    if model not in models:
        return GateResult(False, f"no results for model {model}", details)
    figure = models[model][metric]
    estimate = metric in ESTIMATE_METRICS
    value = (figure["low"] if lower else figure["value"]) if estimate else figure
    what = "point estimate" if estimate else "value"
    if lower:
        what = f"lower bound of its {_percent(data['confidence'])} interval"
    details.update(value=value, used=what, estimate=figure if estimate else None)
    if value is None:
        counted = f" (n={figure['n']})" if estimate else ""
        return GateResult(False, f"{metric} of {model} has no {what}{counted}", details)
    failures = []
    if rule.get("min") is not None and value < rule["min"]:
        failures.append(f"below the minimum {_number(rule['min'])}")
    if rule.get("max") is not None and value > rule["max"]:
        failures.append(f"above the maximum {_number(rule['max'])}")
    limits = " and ".join(
        f"{word} {_number(rule[key])}" for key, word in (("min", "at least"), ("max", "at most")) if key in rule
    )
    if failures:
        return GateResult(False, f"{metric} of {model} is {_number(value)} ({what}), {' and '.join(failures)}", details)
    return GateResult(True, f"{metric} of {model} is {_number(value)} ({what}), {limits}", details)


def _gate_relative(data: Mapping[str, Any], rule: Mapping[str, Any]) -> GateResult:
    metric = rule["metric"]
    if metric not in PAIRED_METRICS:
        raise ValueError(f"not_worse_than compares {' or '.join(PAIRED_METRICS)}, not {metric!r}")
    if data.get("kind") != "comparison":
        raise ValueError("a not_worse_than rule needs a comparison (compare())")
    confidence = float(rule.get("confidence", 0.95))
    if not math.isclose(confidence, data["confidence"]):
        raise ValueError(f"the comparison is at {data['confidence']}, the rule asks {confidence}: compare again")
    margin = float(rule.get("margin", 0.0))
    if margin < 0:
        raise ValueError("margin cannot be negative")
    baseline = rule["not_worse_than"]
    models = (data["a"], data["b"])
    if baseline not in models:
        raise ValueError(f"the comparison is of {models[0]} and {models[1]}, not of the baseline {baseline}")
    candidate = rule.get("model") or next(m for m in models if m != baseline)
    if candidate not in models or candidate == baseline:
        raise ValueError(f"the candidate {candidate} is not the comparison's other model")
    difference = data[PAIRED_METRICS[metric]]
    value, low, high = difference["value"], difference["low"], difference["high"]
    if baseline == data["a"]:  # the comparison is baseline - candidate: turn it round
        value, low, high = _negate(value), _negate(high), _negate(low)
    details = {
        "metric": metric,
        "model": candidate,
        "baseline": baseline,
        "confidence": confidence,
        "margin": margin,
        "difference": {"value": value, "low": low, "high": high, "n": difference["n"]},
    }
    name = f"{metric} of {candidate} - {baseline}"
    if difference["n"] == 0:
        return GateResult(False, f"{candidate} and {baseline} have no scored item in common", details)
    if high is None:
        return GateResult(False, f"{name}: one shared item is too few for an interval", details)
    shown = f"{_signed(value)} [{_signed(low)}, {_signed(high)}] at {_percent(confidence)} over {difference['n']} items"
    if high < -margin:
        return GateResult(False, f"{candidate} is significantly worse than {baseline}: {name} = {shown}", details)
    return GateResult(True, f"{candidate} is not significantly worse than {baseline}: {name} = {shown}", details)


def _negate(value: float | None) -> float | None:
    return None if value is None else -value


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


def _percent(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f}%"


def _cell(text: Any) -> str:
    """``text`` safe inside a markdown table cell."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _code(text: Any) -> str:
    """``text`` as an inline code span, for names and ids outside tables."""
    return "`" + str(text).replace("`", "'").replace("\n", " ") + "`"


def _estimate(figure: Mapping[str, Any], *, percent: bool = False) -> str:
    show = (lambda v: _percent(v, 1)) if percent else _number
    if figure["value"] is None:
        return "-"
    if figure["low"] is None:
        return f"{show(figure['value'])} (n={figure['n']})"
    return f"{show(figure['value'])} [{show(figure['low'])}, {show(figure['high'])}]"


def _money(value: float | None) -> str:
    if value is None:
        return "-"
    return f"${value:,.2f}" if value >= 1 else f"${value:.4f}"


def markdown_report(
    summary: Summary | Mapping[str, Any],
    comparison: Comparison | Mapping[str, Any] | None = None,
    gate_result: GateResult | Mapping[str, Any] | None = None,
    *,
    title: str = "Eval results",
) -> str:
    """A markdown report fit for a PR comment.

    With a gate result its first line is the verdict (✅ passed / ❌ failed) and the next its reason; then a table
    per model (mean score and pass rate with intervals, pass@k, pass^k, cost per solved item, median latency), the
    comparison when given, and the flaky items.
    """
    data = summary.to_dict() if isinstance(summary, _Result) else dict(summary)
    lines: list[str] = []
    if gate_result is not None:
        verdict = gate_result.to_dict() if isinstance(gate_result, _Result) else dict(gate_result)
        mark = "✅" if verdict["passed"] else "❌"
        lines += [f"## {mark} {title}: gate {'passed' if verdict['passed'] else 'failed'}", "", verdict["reason"]]
    else:
        lines.append(f"## {title}")
    models = list(data["models"].values())
    ks = {m["k"] for m in models}
    shared_k = ks.pop() if len(ks) == 1 else None
    at, hat = (f"pass@{shared_k}", f"pass^{shared_k}") if shared_k is not None else ("pass@k", "pass^k")
    level = _percent(data["confidence"])
    lines += [
        "",
        f"| Model | Runs | Items | Mean score ({level} CI) | Pass rate ({level} CI) | {at} | {hat} "
        "| Cost / solved | p50 latency |",
        "| --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for m in models:
        suffix = f" (k={m['k']})" if shared_k is None and m["k"] is not None else ""
        lines.append(
            "| "
            + " | ".join(
                [
                    _cell(m["model"]),
                    str(m["n_runs"]),
                    str(m["n_items"]),
                    _estimate(m["mean_score"]),
                    _estimate(m["pass_rate"], percent=True),
                    _percent(m["pass_at_k"]["value"], 1) + suffix,
                    _percent(m["pass_hat_k"]["value"], 1) + suffix,
                    _money(m["cost_per_solved"]),
                    "-" if m["latency_p50"] is None else f"{m['latency_p50']:.1f} s",
                ]
            )
            + " |"
        )
    if comparison is not None:
        lines += ["", *_comparison_lines(comparison.to_dict() if isinstance(comparison, _Result) else comparison)]
    flaky = [(m["model"], m["flaky_items"]) for m in models if m["flaky_items"]]
    lines += ["", "### Flaky items", ""]
    if not flaky:
        lines.append("None: every item passed or failed the same way in all its repeats.")
    for model, items in flaky:
        shown = ", ".join(_code(item) for item in items[:20])
        more = f" and {len(items) - 20} more" if len(items) > 20 else ""
        lines.append(f"- {_code(model)} ({len(items)}): {shown}{more}")
    lines += [
        "",
        f"<sub>Intervals: percentile bootstrap over items ({data['resamples']} resamples, seed {data['seed']}); "
        "repeats of an item are averaged first.</sub>",
    ]
    return "\n".join(lines) + "\n"


def _comparison_lines(c: Mapping[str, Any]) -> list[str]:
    a, b = _code(c["a"]), _code(c["b"])
    level = _percent(c["confidence"])
    test = c["mcnemar"]
    sentence = {
        "better": f"**{a} is better than {b}**",
        "worse": f"**{a} is worse than {b}**",
        "inconclusive": f"**No significant difference** between {a} and {b}",
    }[c["verdict"]]
    metric = "mean score" if c["verdict_metric"] == "mean_score" else "pass rate"
    p_value = "-" if test["p_value"] is None else f"{test['p_value']:.3g}"
    method = "exact binomial" if test["method"] == "exact" else "chi-square, continuity-corrected"
    lines = [
        f"### {a} vs {b}",
        "",
        f"{sentence} on {metric} at {level}, over {c['n_items']} items both ran"
        + (f" ({c['only_a']} only {a}, {c['only_b']} only {b})" if c["only_a"] or c["only_b"] else "")
        + ".",
        "",
        f"| | {a} - {b} | {level} CI |",
        "| --- | ---: | --- |",
    ]
    for label, key in (("Mean score", "score_difference"), ("Pass rate", "pass_rate_difference")):
        d = c[key]
        interval = "-" if d["low"] is None else f"[{_signed(d['low'])}, {_signed(d['high'])}]"
        lines.append(f"| {label} | {_signed(d['value'])} | {interval} |")
    lines += [
        "",
        f"McNemar ({method}, majority of repeats per item): {test['b']} items only {a} passed, "
        f"{test['c']} only {b} passed, p = {p_value}.",
    ]
    return lines
