"""A weights folder on the Hub (``python -m train publish``): ``card`` fills the model card from the evaluation,
``publish`` checks and stages the folder with it and uploads it.
"""
