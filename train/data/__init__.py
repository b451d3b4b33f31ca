"""Where training images come from and how they reach the network.

``nih`` reads NIH ChestX-ray14's index (Data_Entry, the official split, boxes) and finds its images in any layout;
``download`` fetches the release, ``archives`` reads its tarballs in place, ``synth`` writes a small learnable dataset
in the same layout; ``prepare`` decodes and letterboxes every image once into the uint8 ``cache``; ``dataset`` serves
the cache to torch with ``augment``'s training augmentation.
"""

from train._moved import old_module_names

__getattr__ = old_module_names(__name__)  # `from train.data import Record`: the 0.1 module, now train.data.nih
