"""Training, evaluation and publishing of cxr weights on NIH ChestX-ray14 (``python -m train``).

One subpackage per job, each using only those before it: :mod:`train.data` (the NIH index, download, archives, the
prepared cache, synth data, the Dataset and augmentation) -> :mod:`train.fitting` (config, the loop, losses,
checkpoints, DDP, memory plan, validation, export, the starter sweep) -> :mod:`train.evaluation` (metrics, calibration,
subgroups, localization, external validation, reports) -> :mod:`train.publishing` (model card, Hub upload).
:mod:`train.input_check` fits a weights folder's input check. ``train/__main__.py`` maps each command to its module.
"""

from train import _moved

_moved.install()  # the 0.1 module paths (train.prepare, train.train, ...) keep working for one release
