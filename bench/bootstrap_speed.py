"""Patient-bootstrap AUROC: one-sort weighted AUROC vs. a scikit-learn call per replicate and label.

Run from the repo root: ``python -m bench.bootstrap_speed [--images 25596] [--resamples 200]``
(the defaults are the size of the official test split).
Both give the same numbers (checked here); only the time differs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.metrics import roc_auc_score

from train.evaluation.bootstrap import BootstrapSettings, bootstrap_aurocs, patient_resample_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=25596)
    parser.add_argument("--patients", type=int, default=2797)
    parser.add_argument("--labels", type=int, default=14)
    parser.add_argument("--resamples", type=int, default=200)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    groups = rng.integers(0, args.patients, args.images)
    y = (rng.random((args.images, args.labels)) < 0.05).astype(int)
    scores = rng.random((args.images, args.labels)) + 0.5 * y
    settings = BootstrapSettings(n_resamples=args.resamples, seed=1)

    start = time.perf_counter()
    ours = bootstrap_aurocs(y, scores, groups, settings)
    vectorized = time.perf_counter() - start

    start = time.perf_counter()
    weights = patient_resample_weights(groups, args.resamples, np.random.default_rng(1))
    reference = np.array(
        [[roc_auc_score(y[:, k], scores[:, k], sample_weight=w) for k in range(args.labels)] for w in weights]
    )
    looped = time.perf_counter() - start

    assert np.allclose(ours, reference), "the two computations disagree"
    per_1000 = 1000 / args.resamples
    print(f"{args.images} images, {args.labels} labels, {args.resamples} patient resamples (same results)")
    print(f"  one-sort weighted AUROC : {vectorized:7.2f} s  (~{vectorized * per_1000:6.1f} s per 1000 resamples)")
    print(f"  sklearn per replicate   : {looped:7.2f} s  (~{looped * per_1000:6.1f} s per 1000 resamples)")


if __name__ == "__main__":
    main()
