"""Weights folders: ``config.json`` + ``model.safetensors``, local or on the Hugging Face Hub.

Loading is strict (every tensor present, named and shaped as the config's model expects), reads
safetensors only (a pickle file in the folder is refused, never unpickled) and checks the SHA-256
recorded at save time. Every failure is a :class:`WeightsError` whose message says what is wrong.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
from pathlib import Path

import httpx2
import torch
from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from cxr.config import ConfigError, ModelConfig
from cxr.input_check import CHECK_FILE, InputChecker, InputCheckError, OutdatedInputCheckError
from cxr.model import CXRNet

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
# What a weights repo may hold that cxr reads; anything else on the Hub is never downloaded.
HUB_FILES = [CONFIG_FILE, WEIGHTS_FILE, CHECK_FILE, "README.md", "metrics.json", "*.png"]
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class WeightsError(RuntimeError):
    """Weights that cannot be found, downloaded or loaded; the message says why."""


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def state_sha256(model: CXRNet) -> str:
    """Hex SHA-256 of the model's tensors serialised as safetensors: names the weights in memory, whatever their
    file (demonstration weights have none; the OpenVINO export cache is keyed by it)."""
    return hashlib.sha256(save({k: v.contiguous() for k, v in model.state_dict().items()})).hexdigest()


def save_model(model: CXRNet, folder: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write ``model.safetensors`` and ``config.json`` (with the weights' SHA-256) into ``folder``.

    The model's input check, when it has one, is written too (:func:`save_input_check`).

    ``dtype`` (e.g. ``torch.float16``, half the size) stores the floating-point tensors in that type;
    :func:`load_model` casts them back to float32. Both files are written to temporary names first and
    renamed, so an interrupted save never leaves a half-written file under the final name.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    if dtype is not None:
        state = {name: t.to(dtype) if t.is_floating_point() else t for name, t in state.items()}
    for stale in [*folder.glob(f".{WEIGHTS_FILE}.*.tmp"), *folder.glob(f".{CONFIG_FILE}.*.tmp")]:
        stale.unlink(missing_ok=True)  # left by a save that was killed mid-write
    weights_tmp = temp_file(folder, WEIGHTS_FILE)
    save_tensors(state, weights_tmp, metadata={"format": "pt"})
    config = model.config.replace(
        metadata={**model.config.metadata, "weights_sha256": sha256_of(weights_tmp)}, input_check={}
    )
    config_tmp = temp_file(folder, CONFIG_FILE)
    config.save(config_tmp)
    os.replace(weights_tmp, folder / WEIGHTS_FILE)
    os.replace(config_tmp, folder / CONFIG_FILE)
    if model.input_checker is not None:
        save_input_check(model.input_checker, folder)
    return folder


def save_input_check(checker: InputChecker, folder: str | Path) -> Path:
    """Write ``input_check.safetensors`` into a weights folder and record it (settings, SHA-256) in its config.json.

    Only config.json's ``input_check`` key changes; the weights and everything else in the config stay as they are.
    """
    folder = Path(folder)
    config = load_config(folder)
    check_tmp = temp_file(folder, CHECK_FILE)
    save_tensors(checker.tensors, check_tmp, metadata={"format": "pt"})
    config_tmp = temp_file(folder, CONFIG_FILE)
    config.replace(input_check=checker.settings(sha256_of(check_tmp))).save(config_tmp)
    os.replace(check_tmp, folder / CHECK_FILE)
    os.replace(config_tmp, folder / CONFIG_FILE)
    return folder / CHECK_FILE


def load_input_check(folder: Path, config: ModelConfig) -> InputChecker | None:
    """The input check config.json describes (SHA-256 checked), or None for weights without one or with one fitted
    on older descriptors (warned: the weights still answer, unchecked, and the check can be fitted again)."""
    if not config.input_check:
        return None
    path = folder / CHECK_FILE
    if not path.is_file():
        raise WeightsError(f"{path} is missing, though {CONFIG_FILE} describes an input check.")
    if sha256_of(path) != config.input_check.get("sha256"):
        raise WeightsError(
            f"{path} does not match the SHA-256 recorded in {CONFIG_FILE}: the file is corrupted or was replaced."
        )
    try:
        return InputChecker.load(folder, config.input_check)
    except OutdatedInputCheckError as err:
        log.warning("%s: %s Until then its answers are unchecked.", path, err)
        return None
    except InputCheckError as err:
        raise WeightsError(f"{path}: {err}") from err


def temp_file(folder: str | Path, name: str) -> Path:
    """Create an empty, unique ``.NAME.XXXXXXXX.tmp`` in ``folder`` to be written and renamed to ``NAME``.

    Its mode follows the process umask (0644 under the usual 022), as for any file the user writes;
    ``tempfile.mkstemp`` would make it 0600, unreadable to colleagues on a shared machine.
    """
    while True:
        path = Path(folder) / f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return path


def save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Write ``tensors`` in the safetensors format into ``path`` (a :func:`temp_file`) and fsync it.

    Written here rather than by ``safetensors.torch.save_file``, which makes its files 0600 whatever the umask,
    through a hidden temporary file of its own that a process killed mid-write leaves behind.
    """
    with open(path, "wb") as f:
        f.write(save(tensors, metadata=metadata))
        f.flush()
        os.fsync(f.fileno())


def resolve_weights(
    source: str | Path,
    revision: str | None = None,
    *,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
) -> Path:
    """Return a local folder holding the weights: ``source`` itself, or a Hub snapshot of it.

    A Hub repo id is downloaded at ``revision`` (a commit hash or tag pins it). When the Hub cannot be
    reached, a copy already in the local Hugging Face cache is used, and the log says so.
    """
    path = Path(source).expanduser()
    if path.exists():
        if not path.is_dir():
            raise WeightsError(f"{path} is a file; --weights takes a folder holding {CONFIG_FILE} and {WEIGHTS_FILE}.")
        return path
    repo_id = str(source)
    if not _REPO_ID.match(repo_id):
        raise WeightsError(f"{repo_id!r} is neither an existing folder nor a Hugging Face Hub repo id (ORG/NAME).")
    where = f"{repo_id} at revision {revision or 'main'}"
    download = dict(repo_id=repo_id, allow_patterns=HUB_FILES, cache_dir=cache_dir, token=token)
    if not local_files_only:
        try:
            # Ask for the repo first: this call tells a reachable Hub from an unreachable one (the
            # download below would silently fall back to the cache) and turns 404s into messages.
            HfApi(token=token).repo_info(repo_id, revision=revision)
            return Path(snapshot_download(revision=revision, **download))
        except RepositoryNotFoundError as err:
            raise WeightsError(f"Hub repo {repo_id} does not exist or is private (set HF_TOKEN).") from err
        except RevisionNotFoundError as err:
            raise WeightsError(f"Hub repo {repo_id} has no revision {revision!r}.") from err
        except (OfflineModeIsEnabled, httpx2.TransportError, HfHubHTTPError) as err:
            log.warning("Hugging Face Hub unreachable (%s); looking for %s in the local cache.", _name(err), where)
    try:
        folder = Path(snapshot_download(revision=revision, local_files_only=True, **download))
    except LocalEntryNotFoundError as err:
        raise WeightsError(
            f"Could not download {where} (no connection to the Hub) and it is not in the local Hugging Face cache."
        ) from err
    log.warning("Serving %s from the local Hugging Face cache at %s.", where, folder)
    return folder


def _name(err: BaseException) -> str:
    return type(err).__name__


def check_weights_folder(folder: Path) -> None:
    """Refuse folders that lack a file, or that hold pickle files (never loaded: they can run code)."""
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise WeightsError(
            f"{folder} holds pickle file(s) {', '.join(pickles)}; cxr loads safetensors only and will not "
            "open a folder with pickles in it. Convert them to model.safetensors and remove them."
        )
    missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if not (folder / name).is_file()]
    if missing:
        raise WeightsError(f"{folder} is not a cxr weights folder: {' and '.join(missing)} missing.")


def load_config(folder: str | Path) -> ModelConfig:
    """Read and validate ``config.json`` of a weights folder."""
    try:
        return ModelConfig.load(Path(folder) / CONFIG_FILE)
    except ConfigError as err:
        raise WeightsError(f"{Path(folder) / CONFIG_FILE}: {err}") from err


def load_model(
    source: str | Path,
    revision: str | None = None,
    *,
    map_location: str | torch.device = "cpu",
    **hub_kwargs: object,
) -> CXRNet:
    """Build a :class:`CXRNet` from a weights folder or Hub repo, in eval mode.

    Args:
        source: a local folder, or a Hub repo id ``ORG/NAME``.
        revision: Hub commit hash, tag or branch (ignored for folders).
        map_location: device to put the weights on.
        hub_kwargs: ``cache_dir``, ``token``, ``local_files_only`` for :func:`resolve_weights`.
    """
    folder = resolve_weights(source, revision, **hub_kwargs)  # type: ignore[arg-type]
    check_weights_folder(folder)
    config = load_config(folder)
    weights_path = folder / WEIGHTS_FILE
    expected_sha = config.metadata.get("weights_sha256")
    if expected_sha and sha256_of(weights_path) != expected_sha:
        raise WeightsError(
            f"{weights_path} does not match the SHA-256 recorded in {CONFIG_FILE}: "
            "the file is corrupted or was replaced."
        )
    try:
        state = load_file(str(weights_path), device=str(map_location))
    except (SafetensorError, OSError) as err:
        raise WeightsError(f"{weights_path} is not a readable safetensors file ({err}).") from err
    try:
        model = CXRNet(config)
    except ConfigError as err:
        raise WeightsError(f"{folder / CONFIG_FILE}: {err}") from err
    _check_state_matches(model, state, weights_path)
    # Weights stored in half precision (the bundled starter) compute in float32 like any others.
    state = {name: t.float() if t.is_floating_point() else t for name, t in state.items()}
    model.load_state_dict(state, strict=True)
    model.input_checker = load_input_check(folder, config)
    return model.to(map_location).eval()


def _check_state_matches(model: CXRNet, state: dict[str, torch.Tensor], weights_path: Path) -> None:
    """Explain, tensor by tensor, why a state dict does not fit the config's architecture."""
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    problems = []
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing:
        problems.append(f"{len(missing)} tensor(s) missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s) (e.g. {', '.join(unexpected[:3])})")
    for name in sorted(set(expected) & set(state)):
        if tuple(state[name].shape) != expected[name]:
            problems.append(f"{name} has shape {tuple(state[name].shape)} but the config needs {expected[name]}")
    if problems:
        cfg = model.config
        raise WeightsError(
            f"{weights_path} does not fit its config.json (trunk {cfg.trunk}, {cfg.num_labels} labels): "
            + "; ".join(problems[:4])
            + "."
        )
