"""Training, evaluation and publishing of cxr weights on NIH ChestX-ray14 (``python -m train``)."""
