"""Speed of the openness curve on DEAR's largest case, against a per-subset scikit-learn loop.

K = 101 known classes, 3,783 known test samples, 30,500 unknown samples from 305 classes,
10 trials at each n = 1..305 (3,050 subsets + the known-only point). Both are timed in this run,
on one core, on the same inputs and the same subsets. The sklearn loop is timed on a random sample
of subsets and extrapolated to all of them (it says so), and its F1 values are compared with ours.

    .venv/bin/python benchmarks/openness_curve.py [--sample 100]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core, set before numpy loads its BLAS

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from sklearn.metrics import f1_score  # noqa: E402

from dear_ray.metrics import draw_unknown_subsets, open_set_f1_curve  # noqa: E402

K, N_KNOWN, N_UNKNOWN_CLASSES, PER_CLASS, TRIALS = 101, 3783, 305, 100, 10


def make_inputs(seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, N_KNOWN)
    p = np.where(rng.random(N_KNOWN) < 0.94, y, rng.integers(0, K, N_KNOWN))
    s = rng.beta(1, 8, N_KNOWN)
    c = np.repeat(np.arange(N_UNKNOWN_CLASSES), PER_CLASS)
    q = rng.integers(0, K, c.size)
    su = rng.beta(3, 4, c.size)
    thr = float(np.quantile(s, 0.95))
    return y, p, s, c, q, su, thr


def sklearn_point(y, p, s, c, q, su, thr, subset) -> float:
    mask = np.isin(c, subset)
    labels = np.concatenate([y, np.full(mask.sum(), K)])
    preds = np.concatenate([np.where(s > thr, K, p), np.where(su[mask] > thr, K, q[mask])])
    return f1_score(labels, preds, average="macro")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=100, help="subsets the sklearn loop is timed on")
    parser.add_argument("--repeats", type=int, default=5, help="timing repeats of our curve (best is kept)")
    args = parser.parse_args()
    y, p, s, c, q, su, thr = make_inputs()
    subsets = draw_unknown_subsets(c, num_trials=TRIALS, seed=0)
    total = sum(len(level) for level in subsets) + 1

    ours_full, ours_given = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        open_set_f1_curve(y, p, s, c, q, su, thr, num_trials=TRIALS, seed=0, num_known=K)
        t1 = time.perf_counter()
        curve = open_set_f1_curve(y, p, s, c, q, su, thr, subsets=subsets, num_known=K)
        t2 = time.perf_counter()
        ours_full.append(t1 - t0)
        ours_given.append(t2 - t1)

    rng = np.random.default_rng(1)
    picks = [(n, int(rng.integers(TRIALS))) for n in rng.integers(1, N_UNKNOWN_CLASSES + 1, args.sample)]
    t0 = time.perf_counter()
    values = [sklearn_point(y, p, s, c, q, su, thr, subsets[n - 1][t]) for n, t in picks]
    per_subset = (time.perf_counter() - t0) / len(picks)
    diff = max(abs(v - curve.f1_trials[n, t]) for v, (n, t) in zip(values, picks))
    sklearn_total = per_subset * total

    print(f"openness curve, K={K}, {N_KNOWN} known + {c.size} unknown samples from {N_UNKNOWN_CLASSES} classes, "
          f"{TRIALS} trials x n=1..{N_UNKNOWN_CLASSES} ({total} macro-F1 values), one core")
    print(f"ours, subsets drawn inside (best of {args.repeats}): {min(ours_full):.3f} s")
    print(f"ours, subsets given         (best of {args.repeats}): {min(ours_given):.3f} s")
    print(f"sklearn f1_score loop: {per_subset * 1e3:.1f} ms per subset, timed on {len(picks)} random subsets "
          f"and extrapolated to {total}: {sklearn_total:.1f} s")
    print(f"speed-up (sklearn extrapolated / ours with drawing): {sklearn_total / min(ours_full):.0f}x")
    print(f"max |ours - sklearn| over the timed subsets: {diff:.2e}")


if __name__ == "__main__":
    main()
