"""Checkpoints and ``--resume``: exact continuation after a kill, including kills during a checkpoint write."""

from __future__ import annotations

import contextlib
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from cxr.weights import WEIGHTS_FILE, load_model
from tests.train_helpers import TINY_RUN, FitProcess, comparable, fit_command, model_tensors, prepared_synth
from train.fitting import checkpoint as ckpt
from train.fitting.export import METRICS_LOG, read_metrics_log

EPOCHS = 3
RUN_ARGS = [*TINY_RUN, "--epochs", str(EPOCHS), "--batch-size", "16", "--lr", "0.002"]


# -- the checkpoint file format ------------------------------------------------------------------


def test_checkpoint_round_trip_keeps_types(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, betas=(0.8, 0.9))
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    state = {
        "optimizer": optimizer.state_dict(),
        "model": model.state_dict(),
        "rng": ckpt.rng_state(),
        "history": [{"epoch": 1, "auroc": None, "values": (1, 2.5)}],
        "array": np.arange(5, dtype=np.int64),
    }
    loaded = ckpt.load_checkpoint(ckpt.save_checkpoint(tmp_path / "epoch-0001.safetensors", state))
    assert loaded["history"] == [{"epoch": 1, "auroc": None, "values": (1, 2.5)}]
    assert list(loaded["optimizer"]["state"]) == [0, 1]  # int keys survive JSON
    assert loaded["optimizer"]["param_groups"][0]["betas"] == (0.8, 0.9)
    for key, tensor in state["optimizer"]["state"][0].items():
        assert torch.equal(loaded["optimizer"]["state"][0][key], tensor)
    restored = torch.optim.AdamW(model.parameters(), lr=0.1)
    restored.load_state_dict(loaded["optimizer"])
    assert torch.equal(restored.state_dict()["state"][1]["exp_avg"], optimizer.state_dict()["state"][1]["exp_avg"])
    assert torch.equal(loaded["array"], torch.arange(5))
    expected = torch.rand(3)
    ckpt.set_rng_state(loaded["rng"])
    assert torch.equal(torch.rand(3), expected)  # the generator is back where it was saved


def test_latest_checkpoint_skips_damaged_and_temporary_files(tmp_path: Path) -> None:
    for epoch in (1, 2):
        ckpt.save_checkpoint(ckpt.checkpoint_path(tmp_path, epoch), {"epoch": epoch, "w": torch.ones(8) * epoch})
    full = ckpt.checkpoint_path(tmp_path, 2).read_bytes()
    ckpt.checkpoint_path(tmp_path, 3).write_bytes(full[: len(full) // 2])  # a truncated file under a final name
    (tmp_path / ".epoch-0004.safetensors.abc.tmp").write_bytes(full[:100])  # an interrupted write
    path, state = ckpt.latest_checkpoint(tmp_path)
    assert path.name == "epoch-0002.safetensors" and state["epoch"] == 2
    ckpt.prune(tmp_path, keep_epochs={2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-0002.safetensors"]


# -- kills during real training runs -------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepared_synth(tmp_path_factory.mktemp("resume-data"), patients=50)


@pytest.fixture(scope="module")
def uninterrupted(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("uninterrupted")
    job = FitProcess(fit_command(*RUN_ARGS, "--data-dir", str(data), "--out", str(run)))
    assert job.finish() == 0, job.output
    return run


def assert_same_run(run: Path, reference: Path) -> None:
    """Same final weights, checkpoint and metrics as the reference run, bit for bit."""
    assert comparable(read_metrics_log(run / "weights" / METRICS_LOG)) == comparable(
        read_metrics_log(reference / "weights" / METRICS_LOG)
    )
    for relative in (f"weights/{WEIGHTS_FILE}", f"checkpoints/epoch-{EPOCHS:04d}.safetensors"):
        ours, theirs = model_tensors(run / relative), model_tensors(reference / relative)
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours), relative


@pytest.mark.slow
def test_kill_after_epoch_1_then_resume_equals_uninterrupted(data: Path, uninterrupted: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    job = FitProcess(fit_command(*RUN_ARGS, "--data-dir", str(data), "--out", str(run)))
    assert job.wait_for(lambda: ckpt.checkpoint_path(run / "checkpoints", 1).exists())
    job.kill()
    assert [ckpt.epoch_of(p) for p in ckpt.list_checkpoints(run / "checkpoints")] in ([1], [1, 2])
    again = FitProcess(fit_command(*RUN_ARGS, "--data-dir", str(data), "--out", str(run)))  # without --resume
    assert again.finish() != 0 and "already holds a run" in again.output
    # Resumed in a process of its own, as after a real crash (and so that training never runs inside the test
    # worker, which has other runtimes' thread pools loaded by then).
    resumed = FitProcess(fit_command(*RUN_ARGS, "--data-dir", str(data), "--out", str(run), "--resume"))
    assert resumed.finish() == 0, resumed.output
    assert_same_run(run, uninterrupted)
    assert load_model(run / "weights").config.metadata["training"]["best_epoch"] in range(1, EPOCHS + 1)


@pytest.mark.slow
def test_sigkill_at_random_points_loses_at_most_the_epoch_in_progress(
    data: Path, uninterrupted: Path, tmp_path: Path
) -> None:
    """The first kill lands inside a checkpoint write (the temporary file exists); the others are random."""
    run, checkpoints = tmp_path / "run", tmp_path / "run" / "checkpoints"
    rng = random.Random(20240604)
    epoch_seconds = max(r["train_seconds"] for r in read_metrics_log(uninterrupted / "weights" / METRICS_LOG))
    kills, attempts = 0, 0
    while True:
        attempts += 1
        assert attempts < 12, "the run never finished"
        resume = ["--resume"] if (run / "run.json").exists() else []
        job = FitProcess(fit_command(*RUN_ARGS, "--data-dir", str(data), "--out", str(run), *resume))
        if kills == 0:
            hit = job.wait_for(lambda: any(checkpoints.glob(".epoch-*.tmp")) if checkpoints.is_dir() else False)
            assert hit, "no checkpoint write was seen"
        elif kills < 4:
            job.wait_for(lambda j=job: any(line.startswith("training on") for line in j.lines))
            _sleep_or_exit(job, rng.uniform(0.0, 2.5 * epoch_seconds))
        else:
            assert job.finish() == 0, job.output
            break
        if job.process.poll() is not None:  # finished before the kill landed
            assert job.finish() == 0, job.output
            break
        saved_before_kill = [int(line.split("epoch-")[1][:4]) for line in job.lines if "saved checkpoint" in line]
        job.kill()
        kills += 1
        complete = ckpt.list_checkpoints(checkpoints)
        for path in complete:  # every file under a final name is whole
            ckpt.load_checkpoint(path)
        newest = max((ckpt.epoch_of(p) for p in complete), default=0)
        assert newest >= max(saved_before_kill, default=0)
    assert kills >= 1
    assert [r["epoch"] for r in read_metrics_log(run / "weights" / METRICS_LOG)] == list(range(1, EPOCHS + 1))
    assert not list(checkpoints.glob(".epoch-*.tmp")) and not list((run / "weights").glob(".*"))
    assert_same_run(run, uninterrupted)


def _sleep_or_exit(job: FitProcess, seconds: float) -> None:
    """Wait ``seconds`` unless the process ends first."""
    with contextlib.suppress(subprocess.TimeoutExpired):  # still running: the kill comes now
        job.process.wait(timeout=seconds)
