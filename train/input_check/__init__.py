"""The input check of a weights folder (``python -m train input-check``): is this a frontal chest radiograph?

``samples`` lists the images it is fitted and judged on (NIH, ood-dev, ``negatives``' made pictures) with their
held-out split; ``fit_checker`` fits :class:`cxr.input_check.InputChecker` on them and saves it beside the weights.
"""

from train._moved import old_module_names

__getattr__ = old_module_names(__name__)  # `from train.input_check import fit`: the 0.1 module, now fit_checker
