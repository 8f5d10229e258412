"""
Runs 7 and 8 pooled: the paired per-seed deltas of the recipe's set (d) against a+good and c over
both runs' seeds, with a t interval at a given confidence (docs/results.md run 8, its secondary
analysis: 98.33%, Bonferroni over the three looks at this comparison, at 10, 20 and 40 seeds).

Run 7's report is not on every machine, so its per-seed mIoU without background (3 decimals) is
written here, from docs/results.md: a+good and d (runs 6 and 7), c seeds 10-19 (run 7) and c seeds
0-9 recovered from run 4's per-seed deltas (c = a+good + (d - a+good) - (d - c), run 4's d), each
within 0.0015 of the printed means. Run 8's figures are read from its report.json.

    python benchmarks/pool_runs.py R/eval128_run8/report.json "d:flip200_realistic@n=50,share=0.25"
"""

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_rows import load_row  # noqa: E402  (it puts the checkout on sys.path)

from defect_gen.evaluation.stats import paired_interval  # noqa: E402

RUN7 = {
    "a+good": [0.068, 0.162, 0.129, 0.206, 0.172, 0.218, 0.157, 0.131, 0.240, 0.234,
               0.192, 0.130, 0.217, 0.207, 0.193, 0.146, 0.147, 0.168, 0.132, 0.188],
    "c": [0.053, 0.229, 0.086, 0.133, 0.152, 0.190, 0.128, 0.176, 0.193, 0.165,
          0.157, 0.142, 0.147, 0.183, 0.182, 0.163, 0.151, 0.198, 0.225, 0.141],
    "d": [0.193, 0.178, 0.181, 0.198, 0.203, 0.234, 0.137, 0.208, 0.157, 0.220,
          0.196, 0.159, 0.186, 0.200, 0.192, 0.235, 0.198, 0.197, 0.165, 0.203],
}  # fmt: skip


def t_cdf(x, df, steps=20000):
    """Give P(T <= x) of Student's t with `df` degrees of freedom (Simpson's rule on the density)."""
    if x < 0:
        return 1.0 - t_cdf(-x, df, steps)
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    grid = np.linspace(0.0, x, steps + 1)
    pdf = np.exp(log_c - (df + 1) / 2 * np.log1p(grid**2 / df))
    weights = np.ones(steps + 1)
    weights[1:-1:2], weights[2:-1:2] = 4, 2
    return 0.5 + float((weights * pdf).sum() * (x / steps) / 3)


def t_quantile(p, df):
    """Give the `p` quantile (p > 0.5) of Student's t by bisection on t_cdf."""
    lo, hi = 0.0, 1000.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


def interval(deltas, confidence):
    """Give (mean, std, lo, hi): the benchmark's paired t interval, at the two-sided confidence."""
    ci = paired_interval(deltas)
    half = t_quantile(1 - (1 - confidence) / 2, ci["n"] - 1) * ci["std"] / math.sqrt(ci["n"])
    return ci["mean"], ci["std"], ci["mean"] - half, ci["mean"] + half


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("report", help="run 8's report.json")
    p.add_argument("row", help="the recipe's set's row key in it")
    p.add_argument("--confidence", type=float, default=1 - 0.05 / 3, help="two-sided (0.9833)")
    args = p.parse_args(argv)
    run8 = {}
    for name, key in (("a+good", "a+good"), ("c", "c"), ("d", args.row)):
        row = load_row(args.report, key)[1]  # one error line and exit for a bad file or row
        run8[name] = {r["seed"]: r["miou_fg"] for r in row["per_seed"]}
    seeds = sorted(run8["d"])
    if len(seeds) < 2 or any(sorted(run8[n]) != seeds for n in run8):
        sys.exit(f"error: {args.report}: the rows need the same two or more seeds")
    print(f"run 7: seeds 0-19 (20), run 8: seeds {seeds[0]}-{seeds[-1]} ({len(seeds)})")
    for base in ("a+good", "c"):
        deltas8 = [run8["d"][s] - run8[base][s] for s in seeds]
        deltas7 = [d - b for d, b in zip(RUN7["d"], RUN7[base])]
        for label, deltas, conf in (
            ("run 8 alone", deltas8, 0.95),
            ("runs 7 + 8", deltas7 + deltas8, 0.95),
            ("runs 7 + 8", deltas7 + deltas8, args.confidence),
        ):
            mean, std, lo, hi = interval(deltas, conf)
            print(
                f"d - {base:6s} {label:11s} n={len(deltas):2d}  {mean:+.3f} "
                f"[{lo:+.3f}, {hi:+.3f}] at {100 * conf:.2f}%  (paired std {std:.3f})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
