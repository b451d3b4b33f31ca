"""Wang et al.'s per-batch weighted cross-entropy against the formula by hand; the trunk's own normalisation."""

from __future__ import annotations

import math

import pytest
import timm
import torch

from cxr.config import ConfigError
from cxr.model import pretrained_mean_std
from train.fitting.config import make_config
from train.fitting.losses import wang_betas, wang_weighted_bce


def test_wang_loss_equals_the_formula_by_hand() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5], [-0.3, 1.2, -2.0]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    # |P| = 2, |N| = 4: beta_P = 6 / 2 = 3, beta_N = 6 / 4 = 1.5.
    beta_p, beta_n = wang_betas(targets)
    assert (beta_p.item(), beta_n.item()) == (3.0, 1.5)
    sigmoid = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    by_hand = (
        3.0 * (-math.log(sigmoid(2.0)) - math.log(sigmoid(1.2)))
        + 1.5 * sum(-math.log(1 - sigmoid(z)) for z in (-1.0, 0.5, -0.3, -2.0))
    ) / 6
    assert wang_weighted_bce(logits, targets, beta_p, beta_n).item() == pytest.approx(by_hand, rel=1e-6)


def test_wang_betas_of_a_batch_without_positives_or_negatives() -> None:
    assert [b.item() for b in wang_betas(torch.zeros(4, 3))] == [0.0, 1.0]
    assert [b.item() for b in wang_betas(torch.ones(2, 2))] == [1.0, 0.0]


def test_wang_loss_gradient_balances_positives_and_negatives() -> None:
    """At logit 0 each side's total gradient is beta * count * 0.5 / n: equal for P and N (Wang's point)."""
    targets = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    logits = torch.zeros_like(targets, requires_grad=True)
    wang_weighted_bce(logits, targets, *wang_betas(targets)).backward()
    grad = logits.grad[0]
    assert grad[0].item() == pytest.approx(-grad[1:].sum().item())


def test_seed_recipe_uses_wangs_loss() -> None:
    assert make_config("seed", data_dir="nih").pos_weight == "wang"


def test_a_pretrained_trunk_gets_the_mean_and_std_of_its_weights() -> None:
    expected = timm.models.get_pretrained_cfg("resnet50")
    assert pretrained_mean_std("resnet50") == {"mean": tuple(expected.mean), "std": tuple(expected.std)}
    assert pretrained_mean_std("resnet18")["mean"] == (0.485, 0.456, 0.406)
    with pytest.raises(ConfigError, match="no pretrained weights"):
        pretrained_mean_std("no_such_net")
