"""`python -m train input-check` on small real data: it fits, saves beside the weights, and the folder loads it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from cxr.input_check import CHECK_FILE, KINDS, UNCHECKED
from cxr.predictor import Predictor
from cxr.weights import load_config, sha256_of
from tests.conftest import NIH_512
from train.__main__ import main as train_main


def test_input_check_command_fits_and_saves_a_check_the_folder_loads(tiny_weights: Path, shared_data, tmp_path, capsys):
    folder = tmp_path / "weights"
    shutil.copytree(tiny_weights, folder)
    before = load_config(folder)
    args = ["--nih-train", "4", "--nih-test", "2", "--per-kind", "1", "--limit", "4", "--backend", "torch",
            "--shared", str(shared_data)]  # fmt: skip
    assert train_main(["input-check", str(folder), *args]) == 0
    held_out = json.loads(capsys.readouterr().out)
    assert {"frontal", "lateral", "other_medical", "not_medical"} <= set(held_out)
    assert all(0 < row["n"] <= 4 and 0 <= row["refused"] <= 1 for row in held_out.values())

    config = load_config(folder)
    assert config.input_check["sha256"] == sha256_of(folder / CHECK_FILE)
    assert config.input_check["metadata"]["held_out"] == held_out
    assert config.replace(input_check={}) == before  # nothing else in config.json changed
    check = Predictor.from_pretrained(folder, device="cpu").predict(NIH_512[0]).input_check
    assert check.kind in KINDS and check.kind != UNCHECKED and 0 <= check.score <= 1


def test_fold_units_keep_each_external_frontal_source_in_one_fold() -> None:
    import numpy as np
    from sklearn.model_selection import GroupKFold

    from train.input_check.fit_checker import NIH_SOURCE, fold_units

    rows = [  # (label, group, source)
        *[("frontal", f"nih-{i}", NIH_SOURCE) for i in range(12)],
        *[("frontal", f"ood-hannover-{i}", "Hannover") for i in range(4)],
        *[("inverted", f"ood-hannover-{i}", "Hannover") for i in range(2)],
        *[("frontal", f"ood-covidcx-{i}", "ieee8023") for i in range(3)],
        ("lateral", "ood-covidcx-0", "ieee8023"),  # the same patient's lateral goes with its frontal
        *[("lateral", f"ood-covidcx-{i}", "ieee8023") for i in range(10, 16)],
        *[("not_medical", f"made-{i}", "made") for i in range(6)],
    ]
    labels, groups, sources = (np.array(column) for column in zip(*rows, strict=True))
    units = fold_units({"label": labels, "group": groups, "source": sources})
    assert set(units[sources == "Hannover"]) == {"frontal source: Hannover"}
    assert set(units[groups == "ood-covidcx-0"]) == {"frontal source: ieee8023"}
    assert list(units[labels == "not_medical"]) == [f"made-{i}" for i in range(6)]
    assert list(units[sources == NIH_SOURCE]) == [f"nih-{i}" for i in range(12)]
    other_laterals = units[(labels == "lateral") & (groups != "ood-covidcx-0")]
    assert set(other_laterals) == {f"ood-covidcx-{i}" for i in range(10, 16)}
    for _, test_rows in GroupKFold(n_splits=3).split(labels, labels, units):
        for source in ("Hannover", "ieee8023"):
            external = (sources == source) & (labels != "lateral")
            assert external[test_rows].sum() in (0, external.sum())  # a source is answered whole or not at all


def test_restyle_is_reproducible_keeps_the_grey_range_and_changes_the_picture() -> None:
    import numpy as np

    from train.input_check.samples import restyle

    image = np.random.default_rng(1).random((96, 80)).astype(np.float32) * 0.6 + 0.2
    first = [restyle(image, np.random.default_rng(seed)) for seed in range(12)]
    again = [restyle(image, np.random.default_rng(seed)) for seed in range(12)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert all(r.shape == image.shape and r.dtype == np.float32 and 0 <= r.min() <= r.max() <= 1 for r in first)
    assert all(np.abs(r - image).mean() > 0.01 for r in first)
    # some re-takes put a smaller subject on a plate: a whole border row or column of one grey level
    assert any(len(np.unique(r[0])) == 1 or len(np.unique(r[:, 0])) == 1 for r in first)


def test_goal_margin_is_the_worst_class_margin() -> None:
    from train.input_check.fit_checker import goal_margin

    rates = {"frontal": {"accepted": 0.97}, "inverted": {"named_right": 0.9}, "lateral": {"refused": 0.85},
             "other_medical": {"refused": 0.99}, "not_medical": {"refused": 1.0}}  # fmt: skip
    assert abs(goal_margin(rates) - (0.85 - 0.90)) < 1e-12


def test_design_rows_keep_originals_and_only_the_named_classes_restyled_re_takes() -> None:
    import numpy as np

    from train.input_check.fit_checker import FitOptions, design_rows

    labels = np.array(["frontal", "frontal", "lateral", "lateral", "not_medical", "not_medical"])
    restyled = np.array([False, True, False, True, False, True])
    data = {"x": np.arange(6.0)[:, None], "label": labels, "restyled": restyled}
    assert list(design_rows(data, FitOptions())["x"][:, 0]) == [0, 2, 4]
    kept = design_rows(data, FitOptions(restyled_classes=("frontal", "lateral")))
    assert list(kept["x"][:, 0]) == [0, 1, 2, 3, 4]
    assert list(kept["label"]) == list(labels[:5])


def test_a_descriptor_cache_of_other_descriptors_is_computed_again(tmp_path: Path, caplog) -> None:
    import logging

    import numpy as np

    from cxr.input_check import DESCRIPTOR_VERSION
    from train.input_check.fit_checker import COLUMNS, read_cache

    rows = {"x": np.zeros((2, 5), np.float32), **{c: np.array(["a", "b"]) for c in COLUMNS}}
    current, older, narrower = tmp_path / "current.npz", tmp_path / "older.npz", tmp_path / "narrower.npz"
    np.savez(current, descriptors=DESCRIPTOR_VERSION, **rows)
    np.savez(older, **rows)  # written before the cache recorded a version: version 1
    np.savez(narrower, descriptors=DESCRIPTOR_VERSION, **{k: v for k, v in rows.items() if k != "restyled"})
    cache = read_cache(current)
    assert set(cache) == {"x", *COLUMNS} and np.array_equal(cache["x"], rows["x"])
    assert read_cache(tmp_path / "absent.npz") is None and not caplog.records
    with caplog.at_level(logging.WARNING, logger="train.input_check.fit_checker"):
        assert read_cache(older) is None and read_cache(narrower) is None
    assert len(caplog.records) == 2 and "(version 1," in caplog.records[0].getMessage()
    assert "computing every descriptor again" in caplog.records[1].getMessage()
