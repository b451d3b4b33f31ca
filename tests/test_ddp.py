"""DistributedDataParallel on CPU (gloo): two torchrun processes match one process on the same batches."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cxr.weights import load_model
from tests.train_helpers import TINY_RUN, FitProcess, fit_command, prepared_synth
from train.fitting import checkpoint as ckpt
from train.fitting.distributed import World, gather_rows
from train.fitting.export import METRICS_LOG, read_metrics_log

EPOCHS = 2


def test_gather_rows_reorders_one_process_results() -> None:
    rows = np.array([2, 0, 1])
    values = np.array([[2.0], [0.0], [1.0]], dtype=np.float32)
    np.testing.assert_array_equal(gather_rows(rows, values, 3, World()), [[0.0], [1.0], [2.0]])
    with pytest.raises(RuntimeError, match="gathered 3 of 4 rows"):
        gather_rows(rows, values, 4, World())


@pytest.mark.slow
def test_two_processes_match_one_process_with_accumulation(tmp_path: Path) -> None:
    """Global batch 16: 2 ranks x 8 images, or 1 process x 2 interleaved micro-batches of 8.

    Each rank's batch is exactly one micro-batch of the single process (same images, same augmentation,
    one thread each as torchrun sets), and averaging two gradients is exact, so losses and trained weights
    agree to float rounding. BatchNorm running statistics differ (DDP keeps rank 0's), so validation metrics
    agree only approximately.
    """
    data = prepared_synth(tmp_path / "data", patients=40)
    # Augmentation on and the per-batch positive weight (summed over ranks): the paths DDP could get wrong.
    common = [*TINY_RUN, "--data-dir", str(data), "--epochs", str(EPOCHS), "--batch-size", "16", "--lr", "0.002"]
    common += ["--augment", "--pos-weight", "batch", "--workers", "1"]
    one_thread = {"OMP_NUM_THREADS": "1"}  # as torchrun gives each rank
    one = FitProcess(fit_command(*common, "--out", str(tmp_path / "one"), "--accum-steps", "2"), one_thread)
    assert one.finish() == 0, one.output
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    two = FitProcess([*torchrun, "-m", "train", "fit", *common, "--out", str(tmp_path / "two")])
    assert two.finish() == 0, two.output
    assert "2 process(es) on cpu" in two.output
    assert sum(line.startswith("epoch 1/") for line in two.lines) == 1  # only rank 0 reports

    single = read_metrics_log(tmp_path / "one" / "weights" / METRICS_LOG)
    ddp = read_metrics_log(tmp_path / "two" / "weights" / METRICS_LOG)
    assert [r["epoch"] for r in ddp] == list(range(1, EPOCHS + 1))
    for a, b in zip(single, ddp, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
        assert b["val_mean_auroc"] == pytest.approx(a["val_mean_auroc"], abs=0.05)

    last = f"epoch-{EPOCHS:04d}.safetensors"
    weights_one = ckpt.load_checkpoint(tmp_path / "one" / "checkpoints" / last)["model"]
    weights_two = ckpt.load_checkpoint(tmp_path / "two" / "checkpoints" / last)["model"]
    assert weights_one.keys() == weights_two.keys()
    running_stats = ("running_mean", "running_var", "num_batches_tracked")
    for name, tensor in weights_one.items():
        if not name.endswith(running_stats):
            torch.testing.assert_close(weights_two[name], tensor, atol=1e-6, rtol=1e-5, msg=name)
    assert load_model(tmp_path / "two" / "weights").config.metadata["training"]["hyperparameters"]["processes"] == 2
