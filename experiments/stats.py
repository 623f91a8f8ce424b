"""The statistics every experiment reports: a mean with its 95% interval, and paired differences.

Runs of two arms with the same seed share their initial weights' generator, batch order and data,
so a claim "arm A beats arm B" is tested on the per-seed differences A - B (a paired t interval),
which removes the seed-to-seed variation both arms share. A claim is said to hold only when its
95% interval excludes zero.
"""

from __future__ import annotations

import math
import statistics

from scipy.stats import t as student_t


def interval(values: list[float]) -> dict:
    """Mean, sample std and the two-sided 95% t interval of the mean (n - 1 degrees of freedom)."""
    n = len(values)
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if n > 1 else 0.0
    half = student_t.ppf(0.975, n - 1) * std / math.sqrt(n) if n > 1 else math.inf
    return {"n": n, "mean": mean, "std": std, "ci95": [mean - half, mean + half], "values": values}


def paired(a: dict[int, float], b: dict[int, float]) -> dict:
    """a - b over the seeds both have: the mean difference, its 95% interval, and whether the
    interval excludes zero (`holds`: a > b; `reversed`: a < b)."""
    seeds = sorted(set(a) & set(b))
    result = interval([a[s] - b[s] for s in seeds]) | {"seeds": seeds}
    low, high = result["ci95"]
    result["holds"], result["reversed"] = bool(low > 0), bool(high < 0)
    return result


def verdict(difference: dict) -> str:
    """One word for a paired comparison: holds, reversed, or not shown."""
    return "holds" if difference["holds"] else "reversed" if difference["reversed"] else "not shown"
