"""kecae: the Key-Exchange Convolutional Auto-Encoder for knee X-ray data augmentation.

Class-index convention used everywhere: 0 <-> KL-0 (healthy), 1 <-> KL-2 (early OA).

Python API: ``kecae.load(checkpoint)`` gives a :class:`kecae.api.KECAEModel` whose ``exchange``
works on image files, PIL images, arrays and tensors of any size. ``import kecae`` does not
import torch; ``kecae.load`` does.
"""

from kecae.exports import lazy_exports

__version__ = "0.1.0"

#: KL grade of each class index of the binary task.
CLASS_GRADES = (0, 2)

_EXPORTS = {"load": "api", "KECAEModel": "api"}
__all__ = ["CLASS_GRADES", "KECAEModel", "__version__", "load"]

__getattr__ = lazy_exports(__name__, _EXPORTS)
