"""Measure a weights folder: everything ``python -m train evaluate`` reports.

``evaluate`` predicts a split (``predict``, ``splits``) and computes ``metrics`` (with patient ``bootstrap``
intervals), ``calibration``, ``subgroups``, ``localization`` and ``relabels``; ``external`` does the same for another
dataset's ``cxr score`` archive through ``label_maps``; ``tables``, ``report`` and ``plots`` turn the numbers into
Markdown and PNGs, beside the ``published`` numbers of other papers. Putting the folder on the Hub with its card is
:mod:`train.publishing`'s job.
"""
