"""kecae: the Key-Exchange Convolutional Auto-Encoder for knee X-ray data augmentation.

Class-index convention used everywhere: 0 <-> KL-0 (healthy), 1 <-> KL-2 (early OA).

Python API: ``kecae.load(checkpoint)`` gives a :class:`kecae.api.KECAEModel` whose ``exchange``
works on image files, PIL images, arrays and tensors of any size.
"""

__version__ = "0.1.0"

#: KL grade of each class index of the binary task.
CLASS_GRADES = (0, 2)


def __getattr__(name: str):
    """``kecae.load`` and ``kecae.KECAEModel`` (the Python API, :mod:`kecae.api`) are imported on
    first use, so ``import kecae`` stays free of torch."""
    if name in ("load", "KECAEModel"):
        from kecae import api

        return getattr(api, name)
    raise AttributeError(f"module 'kecae' has no attribute {name!r}")
