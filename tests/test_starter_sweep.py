"""train.fitting.starter picks the grid point by validation only; train.fitting.loop.set_determinism is enforced."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from train.fitting.loop import set_determinism
from train.fitting.starter import SHARED, best_epoch, choose, run_name


def _log(run: Path, aurocs: list[float | None]) -> None:
    (run / "weights").mkdir(parents=True)
    lines = [json.dumps({"epoch": i + 1, "val_mean_auroc": a}) for i, a in enumerate(aurocs)]
    (run / "weights" / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_the_run_with_the_best_validation_epoch_is_chosen(tmp_path: Path) -> None:
    _log(tmp_path / run_name(256, 1e-3), [0.55, 0.61, 0.58])
    _log(tmp_path / run_name(384, 1e-3), [None, 0.60, 0.612, 0.59])  # undefined AUROCs never win
    _log(tmp_path / run_name(512, 3e-4), [0.5])
    names = [run_name(256, 1e-3), run_name(384, 1e-3), run_name(512, 3e-4), "s64-lr1"]  # the last never started
    chosen, results = choose(tmp_path, names)
    assert chosen == "s384-lr0.001"
    assert [None if r is None else (r["epoch"], r["val_mean_auroc"]) for _, r in results] == [
        (2, 0.61),
        (3, 0.612),
        (1, 0.5),
        None,
    ]
    assert best_epoch(tmp_path / "missing") is None
    assert choose(tmp_path, ["s64-lr1"])[0] is None


def test_every_run_of_the_sweep_trains_from_scratch_on_the_images_at_hand() -> None:
    assert {"--no-pretrained", "--available-only"} <= set(SHARED)
    assert SHARED[SHARED.index("--accum-steps") + 1] == "1"  # runs share one GPU: no per-run memory planning


@pytest.mark.parametrize("enabled", [True, False])
def test_determinism_is_enforced_not_just_warned_about(enabled: bool) -> None:
    try:
        set_determinism(enabled)
        assert torch.are_deterministic_algorithms_enabled() is enabled
        assert torch.is_deterministic_algorithms_warn_only_enabled() is False
        assert torch.backends.cudnn.benchmark is not enabled
    finally:
        set_determinism(False)
