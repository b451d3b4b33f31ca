"""Coverage-guided fuzzing of ``cxr.io.load_image`` with atheris, seeded with the generated corpus.

    python -m tests.fuzz_decode -max_total_time=600      # libFuzzer flags pass through

Any exception other than InvalidImageError, or a result outside float32 [0, 1], aborts with the
input that caused it saved by libFuzzer as ``crash-*``.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path

import atheris
import numpy as np

from tests.bad_inputs import build_corpus  # imports the whole cxr package, uninstrumented

NAMES = ("x.png", "x.dcm", "x.jpg")
# Seed inputs: the first byte picks the file name. Built before the decoders are re-imported below.
SEEDS = [bytes([i % len(NAMES)]) + case.data for i, case in enumerate(build_corpus()) if len(case.data) < 1_000_000]

# Instrument only the decoding stack: cxr/io.py loaded on its own (it imports no other cxr module),
# with fresh copies of Pillow's and pydicom's modules, so coverage feedback is about decoding and
# instrumenting torch does not take minutes.
for name in [m for m in sys.modules if m.split(".")[0] in ("PIL", "pydicom")]:
    del sys.modules[name]
with atheris.instrument_imports(include=["PIL", "pydicom", "cxr_io_under_fuzz"]):
    _spec = importlib.util.spec_from_file_location("cxr_io_under_fuzz", Path(__file__).parents[1] / "cxr" / "io.py")
    cxr_io = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(cxr_io)


def one_input(data: bytes) -> None:
    """libFuzzer target: the first byte picks the file name, the rest is the file."""
    if not data:
        return
    try:
        image = cxr_io.load_image(data[1:], name=NAMES[data[0] % len(NAMES)])
    except cxr_io.InvalidImageError:
        return
    if image.dtype != np.float32 or image.ndim != 2 or not np.isfinite(image).all():
        raise AssertionError(f"bad result: {image.dtype} {image.shape}")
    if image.min() < 0 or image.max() > 1:
        raise AssertionError("values outside [0, 1]")


def main() -> None:
    seeds = Path(tempfile.mkdtemp(prefix="cxr-fuzz-seeds-"))
    for i, seed in enumerate(SEEDS):
        (seeds / f"seed{i:03d}").write_bytes(seed)
    atheris.Setup([sys.argv[0], *sys.argv[1:], str(seeds)], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
