"""Property-based fuzzing of the decoder: any bytes give an image or InvalidImageError, never anything else.

Bounded here (a few hundred examples); ``python -m tests.fuzz_decode`` runs coverage-guided fuzzing
(atheris) for as long as you like.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxr.io import InvalidImageError, load_image
from tests.bad_inputs import build_corpus

# Small valid files of every decoder path; mutations of them reach deep into each parser.
SEEDS = [case for case in build_corpus() if case.expect == "ok" and len(case.data) < 300_000]
NAMES = ["x.png", "x.jpg", "x.dcm", "x.tiff", "noext", "../x.dcm"]
FUZZ = settings(
    max_examples=300,
    deadline=timedelta(seconds=20),  # a guard against hangs, not a speed requirement
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)


def decodes_or_refuses(data: bytes, name: str) -> None:
    try:
        image = load_image(data, name=name)
    except InvalidImageError as err:
        assert str(err)
        return
    assert image.dtype == np.float32 and image.ndim == 2
    assert np.isfinite(image).all() and image.min() >= 0.0 and image.max() <= 1.0


@st.composite
def mutated_seed(draw: st.DrawFn) -> tuple[bytes, str]:
    case = draw(st.sampled_from(SEEDS))
    data = bytearray(case.data)
    for _ in range(draw(st.integers(1, 8))):
        where = draw(st.integers(0, max(0, len(data) - 1)))
        action = draw(st.sampled_from(["flip", "truncate", "insert", "overwrite"]))
        if action == "flip":
            data[where] ^= draw(st.integers(1, 255))
        elif action == "truncate":
            del data[where:]
        elif action == "insert":
            data[where:where] = draw(st.binary(min_size=1, max_size=64))
        else:
            chunk = draw(st.binary(min_size=1, max_size=64))
            data[where : where + len(chunk)] = chunk
        if not data:
            break
    return bytes(data), draw(st.sampled_from([case.name, *NAMES]))


@FUZZ
@given(mutated_seed())
def test_mutated_valid_files(sample: tuple[bytes, str]) -> None:
    decodes_or_refuses(*sample)


@FUZZ
@given(st.binary(max_size=4096), st.sampled_from(NAMES))
def test_arbitrary_bytes(data: bytes, name: str) -> None:
    decodes_or_refuses(data, name)


@FUZZ
@given(
    st.binary(min_size=0, max_size=2048),
    st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"\x00" * 128 + b"DICM"]),
)
def test_valid_magic_then_garbage(tail: bytes, magic: bytes) -> None:
    decodes_or_refuses(magic + tail, "x.dcm" if magic.endswith(b"DICM") else "x.png")
