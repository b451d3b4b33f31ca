"""``python -m train COMMAND``: the NIH ChestX-ray14 pipeline, from data to published weights.

Each command lives in its own module, exposing ``main(argv) -> int``; it is imported only when
chosen, so ``python -m train synth --help`` does not pay for importing the training stack.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "download": ("train.data.download", "fetch the NIH archives and metadata, resumable and checksummed"),
    "synth": ("train.data.synth", "write a small synthetic dataset in the NIH layout"),
    "prepare": ("train.data.prepare", "decode and resize every image once into a uint8 cache"),
    "fit": ("train.fitting.cli", "train and export the best epoch as a weights folder"),
    "evaluate": ("train.evaluation.cli", "metrics, calibration, subgroups and localization on a split"),
    "publish": ("train.publishing.publish", "write the model card and upload a weights folder to the Hub"),
    "input-check": (
        "train.input_check.fit_checker",
        "fit the input check (is it a frontal chest radiograph?) of a weights folder",
    ),
    "starter": ("train.fitting.starter", "the validation sweep that made the bundled starter model (one GPU)"),
}


def main(argv: list[str]) -> int:
    """Dispatch to the command module; print the list of commands on -h or an unknown command."""
    if not argv or argv[0] not in COMMANDS:
        listing = "\n".join(f"  {name:<11} {text}" for name, (_, text) in COMMANDS.items())
        print(f"usage: python -m train COMMAND [--help]\n\ncommands:\n{listing}")
        return 0 if argv[:1] in ([], ["-h"], ["--help"]) else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
