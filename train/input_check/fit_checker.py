"""``python -m train input-check WEIGHTS``: fit the input check of a weights folder and save it beside the weights.

Runs the folder's own model once over every image of :mod:`train.input_check.samples` (training images also as
augmented re-takes), keeps what the check reads (:func:`cxr.input_check.descriptors`), fits
:func:`cxr.input_check.fit` on the training part only, and reports per-class rates on the held-out part,
which chose nothing. The descriptors can be cached (``--cache``) so a refit does not run the model again.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import GroupKFold

from cxr.input_check import InputChecker, descriptors
from cxr.io import InvalidImageError
from cxr.predictor import Predictor
from cxr.preprocess import preprocess
from cxr.weights import save_input_check
from train.input_check.samples import CLASSES, SHARED, Sample, all_samples, augment

log = logging.getLogger(__name__)

# Augmented re-takes per training image, by class (held-out images are never augmented).
COPIES = {"frontal": 1, "inverted": 1, "lateral": 2, "other_medical": 1, "not_medical": 1}


def extract(
    predictor: Predictor, samples: list[Sample], copies: dict[str, int], seed: int = 0
) -> dict[str, np.ndarray]:
    """Descriptors of every sample (and its augmented copies when it is a training sample)."""
    rng = np.random.default_rng(seed)
    rows: list[np.ndarray] = []
    meta: list[tuple[str, str, str, bool, bool]] = []
    pending: list[tuple[np.ndarray, tuple[str, str, str, bool, bool]]] = []

    def flush() -> None:
        if not pending:
            return
        images = [image for image, _ in pending]
        with torch.inference_mode():
            features = predictor.features(preprocess(images, predictor.config))
        rows.append(descriptors(images, features).numpy())
        meta.extend(m for _, m in pending)
        pending.clear()

    for n, sample in enumerate(samples):
        try:
            image = sample.load()
        except InvalidImageError as err:
            log.warning("skipping %s: %s", sample.key, err)
            continue
        pending.append((image, (sample.key, sample.label, sample.group, sample.held_out, False)))
        if not sample.held_out:
            for _ in range(copies.get(sample.label, 0)):
                pending.append((augment(image, rng), (sample.key, sample.label, sample.group, False, True)))
        if len(pending) >= 8:
            flush()
        if n % 50 == 0:
            log.info("%d / %d images", n, len(samples))
    flush()
    keys, labels, groups, held, augmented = (np.array(column) for column in zip(*meta, strict=True))
    return {"x": np.concatenate(rows), "key": keys, "label": labels, "group": groups, "held_out": held,
            "augmented": augmented}  # fmt: skip


def fit(x: np.ndarray, labels: np.ndarray, groups: np.ndarray, classes: tuple[str, ...] = CLASSES) -> InputChecker:
    """Fit the head and the frontal density score on training descriptors.

    The head is a class-balanced multinomial logistic regression on the standardised descriptors' top
    principal components; its regularisation is chosen by grouped cross-validation (balanced accuracy; no
    group in two folds). The
    density score's threshold is the 99th percentile of distances of frontal groups left out of the
    subspace fit (grouped folds), so frontals from an unseen source are not refused by construction.
    """
    center = x.mean(0)
    scale = x.std(0) + 1e-3
    z = (x - center) / scale
    # The head reads the top principal components of all training descriptors: a small, fast fit whose
    # weights fold back into one (K, D) matrix, so the check stays one matrix product at inference.
    reducer = PCA(n_components=min(HEAD_DIMS, len(z) - 1), random_state=0).fit(z)
    reduced = reducer.transform(z)
    folds = GroupKFold(n_splits=3)
    best_c, best_score = C_GRID[0], -1.0
    for c in C_GRID:
        scores = []
        for train_rows, test_rows in folds.split(reduced, labels, groups):
            model = _head(c).fit(reduced[train_rows], labels[train_rows])
            scores.append(balanced_accuracy_score(labels[test_rows], model.predict(reduced[test_rows])))
        log.info("C=%g: grouped-CV balanced accuracy %.3f", c, np.mean(scores))
        if np.mean(scores) > best_score:
            best_c, best_score = c, float(np.mean(scores))
    head = _head(best_c).fit(reduced, labels)
    order = [list(head.classes_).index(name) for name in classes]
    weight = head.coef_[order] @ reducer.components_  # logits = coef @ (components @ (z - mean)) + intercept
    bias = head.intercept_[order] - weight @ reducer.mean_
    frontal = labels == "frontal"
    left_out = []
    for train_rows, test_rows in folds.split(z[frontal], groups=groups[frontal]):
        subspace = _subspace(z[frontal][train_rows])
        left_out.append(_distance(subspace, z[frontal][test_rows]))
    threshold = float(np.quantile(np.concatenate(left_out), DISTANCE_QUANTILE))
    pca_mean, components, variances = _subspace(z[frontal])
    tensors = {"center": center, "scale": scale, "weight": weight, "bias": bias,
               "pca_mean": pca_mean, "components": components, "variances": variances}  # fmt: skip
    return InputChecker(
        {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in tensors.items()},
        classes,
        threshold,
        {
            "C": best_c,
            "grouped_cv_balanced_accuracy": round(best_score, 4),
            "subspace_dims": len(variances),
            "distance_quantile": DISTANCE_QUANTILE,
        },
    )


C_GRID = (0.01, 0.1, 1.0)
HEAD_DIMS = 128
DISTANCE_QUANTILE = 0.99
SUBSPACE_DIMS = 32


def _head(c: float) -> LogisticRegression:
    return LogisticRegression(C=c, class_weight="balanced", max_iter=3000)


def _subspace(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, top principal directions and their variances of standardised frontal descriptors."""
    pca = PCA(n_components=min(SUBSPACE_DIMS, len(z) - 1), random_state=0).fit(z)
    return pca.mean_, pca.components_, pca.explained_variance_


def _distance(subspace: tuple[np.ndarray, np.ndarray, np.ndarray], z: np.ndarray) -> np.ndarray:
    """Mahalanobis distance within the subspace, the same formula as InputChecker uses."""
    mean, components, variances = subspace
    return np.sqrt((((z - mean) @ components.T) ** 2 / variances).sum(1))


def rates(checker: InputChecker, data: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, dict[str, float]]:
    """Per-class counts and rates on ``mask``: accepted, refused, and named as its own class."""
    decisions = checker.decide(torch.from_numpy(data["x"][mask]))
    labels = data["label"][mask]
    out = {}
    for label in CLASSES:
        rows = labels == label
        n = int(rows.sum())
        if not n:
            continue
        named = np.array([decisions[i][0] for i in np.flatnonzero(rows)])
        accepted = np.isin(named, ["frontal", "inverted"])
        right = accepted if label == "frontal" else named == label
        if label == "inverted":
            right = named == "inverted"
        out[label] = {"n": n, "accepted": float(accepted.mean()), "refused": float(1 - accepted.mean()),
                      "named_right": float(right.mean())}  # fmt: skip
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m train input-check", description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path, help="weights folder to fit the check for (written into it)")
    parser.add_argument("--shared", type=Path, default=SHARED, help=f"shared data folder (default {SHARED})")
    parser.add_argument("--nih-train", type=int, default=150, help="NIH patients for training (default 150)")
    parser.add_argument("--nih-test", type=int, default=40, help="NIH test-list patients held out (default 40)")
    parser.add_argument("--per-kind", type=int, default=30, help="made pictures per kind (default 30)")
    parser.add_argument("--limit", type=int, default=0, help="at most this many images per class (0: all)")
    parser.add_argument("--cache", type=Path, help="descriptor cache (.npz): read if present, else written")
    parser.add_argument("--batch-threads", type=int, default=0, help="torch threads (0: torch's default)")
    return parser


def main(argv: list[str]) -> int:
    """Fit, save into the weights folder, print the held-out rates as JSON."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.batch_threads:
        torch.set_num_threads(args.batch_threads)
    predictor = Predictor.from_pretrained(args.weights, device="cpu")
    if args.cache and args.cache.exists():
        data = dict(np.load(args.cache))
    else:
        samples = all_samples(args.shared, args.nih_train, args.nih_test, args.per_kind)
        if args.limit:
            counts: Counter[tuple[str, bool]] = Counter()
            kept = []
            for s in samples:
                counts[(s.label, s.held_out)] += 1
                if counts[(s.label, s.held_out)] <= args.limit:
                    kept.append(s)
            samples = kept
        data = extract(predictor, samples, COPIES)
        if args.cache:
            np.savez(args.cache, **data)
    train = ~data["held_out"]
    checker = fit(data["x"][train], data["label"][train], data["group"][train], CLASSES)
    held = rates(checker, data, data["held_out"])
    checker = checker.with_metadata(
        {
            "training_images": int(train.sum()),
            "held_out": held,
            "held_out_note": "groups held out by hash; NIH: test-list patients",
        }
    )
    save_input_check(checker, args.weights)
    print(json.dumps(held, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
