"""One training run, from settings to an exported weights folder (``python -m train fit`` and ``starter``).

``config`` holds the settings and recipes, ``cli`` the command line, ``loop`` the training loop with ``losses``,
``memory`` (the plan before the first step), ``distributed`` (DDP under torchrun), ``checkpoint`` and ``runs``
(run.json, resuming); after each epoch ``validation`` scores it through ``inference``, and ``export`` (with ``plots``)
keeps the best epoch as the weights folder cxr loads. ``starter`` is the sweep that made the bundled starter model.
"""
