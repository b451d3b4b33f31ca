"""Evaluate -> report -> publish: everything that measures a weights folder and puts it on the Hub.

``evaluate`` predicts a split and computes ``metrics`` (with patient ``bootstrap`` intervals),
``calibration``, ``subgroups``, ``localization`` and ``relabels``; ``tables``, ``report`` and
``plots`` turn the numbers into Markdown and PNGs; ``card`` fills the model card; ``publish`` stages
the folder with it and uploads it. Fitting (data -> fit -> export) lives one level up, in ``train/``.
"""
