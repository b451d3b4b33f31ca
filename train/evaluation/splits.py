"""Which images an evaluation may use: the weights' own split, checked, and never a guessed one.

A model is only fairly evaluated (and calibrated) on patients it never trained on. The split comes
from the ``split.json`` that ``fit`` writes next to the weights; it is checked to be
patient-disjoint, to draw train and validation from ``train_val_list.txt`` only, and to test on
``test_list.txt`` (all of it, or the subset its ``subset`` record declares). Without a split file the
validation patients would have to be re-carved; that happens only when asked, with the seed and
fraction the model was trained with.
"""

from __future__ import annotations

from pathlib import Path

from train.data.nih import (
    SPLIT_FILE,
    TEST_LIST,
    TRAIN_VAL_LIST,
    DataError,
    Split,
    find_data_entry,
    official_split,
    read_data_entry,
    read_split,
    read_split_list,
    records_by_name,
)


def check_split(split: Split, data_dir: Path, source: str) -> None:
    """Refuse a split that shares patients between its parts or does not test on the official test list.

    ``train`` and ``val`` must come from ``train_val_list.txt``; ``test`` must be ``test_list.txt``, or,
    when ``split.subset`` declares a restriction, exactly the declared number of its images.
    """
    patients = {name: {r.patient_id for r in records} for name, records in split.parts()}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        shared = patients[a] & patients[b]
        if shared:
            raise DataError(f"{source}: {len(shared)} patient(s) are in both {a} and {b} (e.g. {min(shared)}).")
    train_val = set(read_split_list(data_dir / TRAIN_VAL_LIST))
    outside = [r.image for r in split.train + split.val if r.image not in train_val]
    if outside:
        raise DataError(f"{source}: {len(outside)} train/val image(s) are not in {TRAIN_VAL_LIST} (e.g. {outside[0]}).")
    official_test = read_split_list(data_dir / TEST_LIST)
    test = [r.image for r in split.test]
    foreign = sorted(set(test) - set(official_test))
    if foreign:
        raise DataError(f"{source}: {len(foreign)} test image(s) are not in {TEST_LIST} (e.g. {foreign[0]}).")
    declared = (split.subset or {}).get("test")
    if declared is None and len(set(test)) != len(official_test):
        raise DataError(
            f"{source}: its test part has {len(set(test)):,} of the {len(official_test):,} images of {TEST_LIST} "
            "and declares no subset; evaluate on a split written by `python -m train fit`."
        )
    if declared is not None and (declared["used"], declared["official"]) != (len(set(test)), len(official_test)):
        raise DataError(
            f"{source}: declares {declared['used']:,} of {declared['official']:,} test images but holds "
            f"{len(set(test)):,} of the {len(official_test):,} in {TEST_LIST}."
        )


def load_split(
    data_dir: Path, weights: Path, split_file: Path | None, *, needs_val: bool, recarve: tuple[int, float] | None
) -> tuple[Split, str]:
    """The checked split of the weights (``split_file``, else ``split.json`` next to them) and where it came from.

    Without a split file the official lists are used; when validation is needed (``--calibrate``,
    ``--split val``) its patients are re-carved from ``train_val_list.txt`` only if ``recarve``
    gives the ``(seed, fraction)`` the model was trained with.
    """
    path = split_file or (weights / SPLIT_FILE)
    if path.is_file():
        split = read_split(path, records_by_name(read_data_entry(find_data_entry(data_dir))))
        check_split(split, data_dir, str(path))
        return split, f"{path.name} of the weights"
    if split_file:
        raise DataError(f"{split_file} is not a file.")
    if needs_val and recarve is None:
        raise DataError(
            f"No {SPLIT_FILE} next to {weights}, and the validation split is needed: re-carving it with a guessed "
            "seed could pick patients the model trained on. Pass --split-file, or --recarve-val SEED (and "
            "--val-fraction) with the seed and validation fraction of the training run."
        )
    seed, fraction = recarve or (0, 0.1)
    split = official_split(data_dir, fraction, seed)
    if not needs_val:
        return split, f"official {TEST_LIST} (no {SPLIT_FILE}; validation not used)"
    return split, f"official lists, validation re-carved on request: {fraction:g} of train_val patients, seed {seed}"
