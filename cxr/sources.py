"""Which weights to use: one order for the app, the CLI and ``Predictor.from_pretrained()``.

1. explicit weights: ``--weights`` / ``CXR_WEIGHTS`` (a folder or a Hub repo id);
2. the Hub repo ``CXR_MODEL_REPO`` (default :data:`DEFAULT_MODEL_REPO`) at its pinned revision, or its
   copy in the local Hugging Face cache when the Hub cannot be reached;
3. the starter model bundled in this package (:data:`STARTER_DIR`), if the package holds one;
4. demonstration weights: a seeded random initialisation made in memory (nothing downloaded or stored),
   always served under an "untrained" warning.

Each step that cannot be used adds one sentence to the :class:`WeightsChoice` reason, so the page,
``/model_info``, the CLI and the log all say what is served and why. With ``strict_explicit`` (the CLI and
the library), explicit weights that fail to load are an error rather than a reason to serve others.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from cxr.config import ModelConfig
from cxr.model import CXRNet
from cxr.weights import WeightsError, load_model, resolve_weights

log = logging.getLogger(__name__)

DEFAULT_MODEL_REPO = "cxr-project/chestxray14-resnet50-lse"
DEFAULT_MODEL_REVISION = "v0.1.0"  # a tag: served exactly until someone moves the pin
STARTER_DIR = Path(__file__).resolve().parent / "starter"
DEMONSTRATION_SEED = 0
KINDS = ("folder", "hub", "starter", "demonstration")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class WeightsChoice:
    """The weights being served and why.

    Attributes:
        kind: ``"folder"``, ``"hub"``, ``"starter"`` or ``"demonstration"``.
        location: the folder or repo id (None for demonstration weights).
        revision: the Hub revision asked for (Hub repos only).
        folder: the local folder the weights were read from (None for demonstration weights).
        reason: why this source, in sentences: which earlier sources were skipped and what failed.
    """

    kind: str
    location: str | None
    revision: str | None
    folder: Path | None
    reason: str

    @property
    def commit(self) -> str | None:
        """The Hub commit a revision resolved to (huggingface_hub names each snapshot folder after it)."""
        if self.kind == "hub" and self.folder is not None and _COMMIT.match(self.folder.name):
            return self.folder.name
        return None

    def describe(self, public: bool = False) -> str:
        """e.g. ``Hub repo org/name at revision v0.1.0``; ``public`` hides local paths."""
        if self.kind == "hub":
            return f"Hub repo {self.location} at revision {self.revision or 'main (unpinned)'}"
        if self.kind == "folder":
            return f"local folder {Path(str(self.location)).name if public else self.location}"
        if self.kind == "starter":
            return "the starter model bundled with cxr"
        return f"demonstration weights (random, seed {DEMONSTRATION_SEED})"


def hub_target(environ: Mapping[str, str] = os.environ) -> tuple[str, str | None]:
    """The Hub repo and revision of step 2: the project's repo at its pinned tag unless the environment says
    otherwise (another repo is served at ``CXR_MODEL_REVISION``, or its main branch without one)."""
    repo = environ.get("CXR_MODEL_REPO") or DEFAULT_MODEL_REPO
    revision = environ.get("CXR_MODEL_REVISION") or (DEFAULT_MODEL_REVISION if repo == DEFAULT_MODEL_REPO else None)
    return repo, revision


def load_in_order(
    explicit: str | Path | None = None,
    revision: str | None = None,
    *,
    environ: Mapping[str, str] = os.environ,
    strict_explicit: bool = True,
    map_location: str | torch.device = "cpu",
) -> tuple[CXRNet, WeightsChoice]:
    """Load the first usable weights in the documented order; never fails for want of weights.

    Args:
        explicit: a folder or Hub repo id (else ``CXR_WEIGHTS``); ``revision`` pins a Hub repo given here.
        environ: where ``CXR_WEIGHTS``, ``CXR_MODEL_REPO`` and ``CXR_MODEL_REVISION`` are read.
        strict_explicit: raise :class:`WeightsError` when explicit weights fail, instead of going on.
        map_location: device for the weights.
    """
    skipped: list[str] = []
    explicit = explicit or environ.get("CXR_WEIGHTS") or None
    if explicit:
        try:
            folder = resolve_weights(explicit, revision)
            model = load_model(folder, map_location=map_location)
            kind = "folder" if Path(str(explicit)).expanduser().is_dir() else "hub"
            return model, _chosen(kind, str(explicit), revision, folder, "They were asked for explicitly.", [])
        except WeightsError as err:
            if strict_explicit:
                raise
            skipped.append(f"The weights asked for ({explicit}) could not be loaded: {err}")
    repo, hub_revision = hub_target(environ)
    try:
        folder = resolve_weights(repo, hub_revision)
        model = load_model(folder, map_location=map_location)
        return model, _chosen("hub", repo, hub_revision, folder, "The project's Hub repo is served.", skipped)
    except WeightsError as err:
        skipped.append(f"Hub repo {repo} at revision {hub_revision or 'main'} is not available: {err}")
    if (STARTER_DIR / "config.json").is_file():
        try:
            model = load_model(STARTER_DIR, map_location=map_location)
            return model, _chosen(
                "starter", str(STARTER_DIR), None, STARTER_DIR, "The bundled starter model is served instead.", skipped
            )
        except WeightsError as err:
            skipped.append(f"The bundled starter model could not be loaded: {err}")
    else:
        skipped.append("This installation bundles no starter model.")
    why = "Demonstration weights are served instead: their outputs are meaningless."
    return demonstration_model().to(map_location), _chosen("demonstration", None, None, None, why, skipped)


def demonstration_model(config: ModelConfig | None = None) -> CXRNet:
    """Seeded, untrained weights made in memory: the same numbers on every start, nothing downloaded."""
    config = config or ModelConfig(
        trained=False,
        metadata={"description": "Demonstration weights: a seeded random initialisation, never trained."},
    )
    with torch.random.fork_rng(devices=[]):  # the caller's random stream stays untouched
        torch.manual_seed(DEMONSTRATION_SEED)
        return CXRNet(config).eval()


def _chosen(
    kind: str, location: str | None, revision: str | None, folder: Path | None, why: str, skipped: list[str]
) -> WeightsChoice:
    reason = " ".join([*skipped, why])
    choice = WeightsChoice(kind, location, revision, folder, reason)
    log.info("Serving %s. %s", choice.describe(), reason)
    return choice
