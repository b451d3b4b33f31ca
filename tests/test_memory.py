"""fit never dies silently of memory: the estimate, the plan it makes, and the messages naming what to change."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cxr.config import ModelConfig
from cxr.model import CXRNet
from train.__main__ import main as train_main
from train.data.synth import SynthConfig, generate
from train.fitting import memory
from train.fitting.memory import DoesNotFit, footprint, plan_accum_steps

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def r18() -> memory.Footprint:
    return footprint("resnet18", 256, None)


def test_saved_activations_grow_with_pixels_and_halve_in_bf16(r18: memory.Footprint) -> None:
    model = CXRNet(ModelConfig(trunk="resnet18", image_size=64))
    assert r18.weights == 4 * sum(p.numel() for p in model.parameters())  # fp32
    assert footprint("resnet18", 512, None).per_image == pytest.approx(4 * r18.per_image, rel=0.01)
    half = footprint("resnet18", 256, torch.bfloat16)
    assert 0.45 < half.per_image / r18.per_image < 0.6
    conv_and_fc = sum(p.numel() for p in model.parameters() if p.ndim >= 2)
    assert half.fixed == pytest.approx(2 * conv_and_fc, rel=0.05)  # autocast's bf16 copies, saved once per step


def test_the_plan_takes_the_fewest_micro_batches_that_fit(r18: memory.Footprint) -> None:
    budget = r18.train_peak(16, "cpu")  # room for 16 images at a time
    assert plan_accum_steps(r18, 64, 0, 16, CPU, budget, "resnet18") == 4
    assert plan_accum_steps(r18, 64, 8, 16, CPU, budget, "resnet18") == 8  # a given count that fits is kept
    assert plan_accum_steps(r18, 12, 0, 16, CPU, budget, "resnet18") == 1
    with pytest.raises(DoesNotFit, match=r"--accum-steps 4 \(16 images per micro-batch, the same --batch-size\)"):
        plan_accum_steps(r18, 64, 2, 16, CPU, budget, "resnet18 at 256 px, fp32")


def test_validation_that_does_not_fit_names_the_eval_batch(r18: memory.Footprint) -> None:
    budget = r18.eval_peak(40, "cpu")
    assert r18.train_peak(1, "cpu") <= budget
    with pytest.raises(DoesNotFit, match=r"^Validation would need about .* use --eval-batch-size 40\.$"):
        plan_accum_steps(r18, 1, 1, 128, CPU, budget, "resnet18")


def test_an_over_large_cpu_fit_stops_before_reading_any_data(tmp_path: Path, capsys) -> None:
    empty = tmp_path / "no-data-here"  # reading the data first would fail differently
    empty.mkdir()
    args = ["fit", "--data-dir", str(empty), "--out", str(tmp_path / "run"), "--no-pretrained", "--device", "cpu"]
    args += ["--trunk", "resnet18", "--image-size", "16384", "--batch-size", "64", "--accum-steps", "1"]
    assert train_main(args) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: A training step would need about ")
    assert "(resnet18 at 16384 px, fp32, 64 images per micro-batch) and cpu has " in error
    assert "a smaller --image-size (even one image per micro-batch does not fit)" in error
    assert not (tmp_path / "run").exists()


def test_a_missing_cache_gives_the_exact_prepare_command(tmp_path: Path, capsys) -> None:
    data = generate(tmp_path / "synth", SynthConfig(patients=4, size=64), progress=False)
    args = ["fit", "--data-dir", str(data), "--out", str(tmp_path / "run"), "--no-pretrained", "--device", "cpu"]
    args += ["--trunk", "resnet18", "--image-size", "32"]
    assert train_main(args) == 1
    assert capsys.readouterr().err == (
        f"error: No prepared cache in {data / 'cache-32'}: run "
        f"`python -m train prepare --data-dir {data} --image-size 32` first.\n"
    )
    assert train_main([*args, "--cache-dir", str(tmp_path / "c"), "--available-only"]) == 1
    assert (
        f"`python -m train prepare --data-dir {data} --image-size 32 --cache-dir {tmp_path / 'c'} --available-only`"
        in (capsys.readouterr().err)
    )
