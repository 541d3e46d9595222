"""Benchmark: EER (ROCCH) + minDCF(0.01) on a million trials (not a timed test).

The metrics are O(n log n): one sort of the scores dominates. This times them on a binormal
trial list (d' = 2, 10 % targets) beside `np.sort` of the same scores in the same process,
the floor any threshold sweep pays. Median of `--repeats` rounds; the correctness of the
figures is tests/test_metrics.py's business.

    .venv/bin/python bench/bench_metrics.py [--trials 1000000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--trials", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    from speakerops.eval import metrics as M

    rng = np.random.default_rng(0)
    y = rng.random(args.trials) < 0.1
    s = rng.normal(size=args.trials) + 2.0 * y
    M.eer(s[:1000], y[:1000])  # warm-up (imports, first calls)
    ours, floor = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        M.eer(s, y)
        M.min_dcf(s, y, 0.01)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        np.sort(s)
        floor.append(time.perf_counter() - t0)
    a, b = statistics.median(ours), statistics.median(floor)
    print(f"{args.trials} trials on {os.cpu_count()} cores, median of {args.repeats}:")
    print(f"  EER + minDCF(0.01): {a:.3f} s   np.sort reference: {b:.3f} s   ratio {a / b:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
