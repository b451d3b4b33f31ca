"""CXRNet: the ChestX-ray8 network (Wang et al., CVPR 2017) on a timm trunk.

trunk (timm, no pooling/classifier) -> 1x1 "transition" conv -> log-sum-exp pooling -> linear.
The split into ``forward_features`` / ``forward_head`` follows timm: features are the transition
map (the Grad-CAM layer), the head is pooling plus classifier.
"""

from __future__ import annotations

import timm
import torch
from torch import nn

from cxr.config import ConfigError, ModelConfig
from cxr.input_check import InputChecker


class LSEPool(nn.Module):
    """Log-sum-exp pooling over space, max-subtracted so exp() never overflows.

    ``pool(x) = x* + log(eps + mean(exp(r * (x - x*)))) / r`` per channel, with x* the channel max.
    r -> 0 approaches average pooling, r -> inf max pooling (timm's ``LsePlus2d`` is the eps = 0 case).
    Its gradient with respect to x sums to exactly one per channel, for any eps: a softmax with mass
    ``m / (m + eps)`` (m the mean exponential) plus ``eps / (m + eps)`` through x*. Grad-CAM's closed
    form in :mod:`cxr.cam` rests on that.
    """

    def __init__(self, r: float = 10.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.r = float(r)
        self.eps = float(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool (N, C, H, W) -> (N, C)."""
        x_max = x.amax(dim=(2, 3), keepdim=True)
        mean_exp = torch.exp(self.r * (x - x_max)).mean(dim=(2, 3), keepdim=True)
        return (x_max + torch.log(mean_exp + self.eps) / self.r).flatten(1)

    def extra_repr(self) -> str:
        return f"r={self.r}, eps={self.eps}"


def create_trunk(name: str, pretrained: bool = False) -> nn.Module:
    """A timm model without global pooling and classifier; ``pretrained=False`` never uses the network."""
    try:
        return timm.create_model(name, pretrained=pretrained, num_classes=0, global_pool="")
    except RuntimeError as err:
        if not timm.is_model(name):
            raise ConfigError(f"Unknown timm trunk {name!r}.") from err
        raise


def pretrained_mean_std(name: str) -> dict[str, tuple[float, ...]]:
    """``{"mean", "std"}`` the trunk's default pretrained weights expect (from timm's pretrained config).

    A trunk started from those weights is fed inputs normalised the way they were trained.
    """
    pretrained = timm.models.get_pretrained_cfg(name)
    if pretrained is None:
        raise ConfigError(f"timm has no pretrained weights for {name!r}; train it from scratch.")
    return {"mean": tuple(pretrained.mean), "std": tuple(pretrained.std)}


class CXRNet(nn.Module):
    """Multi-label chest X-ray classifier with a closed-form Grad-CAM layer (``transition``).

    Args:
        config: architecture, labels and input contract; kept as ``self.config``.

    ``input_checker`` is the weights' fitted input check (:mod:`cxr.input_check`), set by
    :func:`cxr.weights.load_model`; None for weights without one.
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        self.trunk = create_trunk(self.config.trunk)
        self.transition = nn.Conv2d(self.trunk.num_features, self.config.transition_channels, kernel_size=1)
        self.pool = LSEPool(self.config.lse_r, self.config.lse_eps)
        self.fc = nn.Linear(self.config.transition_channels, self.config.num_labels)
        # Not a submodule: its tensors live in their own file (cxr.weights), not in model.safetensors.
        self.input_checker: InputChecker | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        """The model's own label list, in output order."""
        return self.config.labels

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) normalised images -> (N, transition_channels, S/32, S/32) transition map."""
        return self.transition(self.trunk.forward_features(x))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Transition map -> (N, K) logits, or the (N, transition_channels) pooled vector."""
        pooled = self.pool(features)
        return pooled if pre_logits else self.fc(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) -> (N, K) logits; apply a sigmoid per label for probabilities."""
        return self.forward_head(self.forward_features(x))
