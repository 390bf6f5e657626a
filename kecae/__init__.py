"""kecae: the Key-Exchange Convolutional Auto-Encoder for knee X-ray data augmentation.

Class-index convention used everywhere: 0 <-> KL-0 (healthy), 1 <-> KL-2 (early OA).
"""

__version__ = "0.1.0"

#: KL grade of each class index of the binary task.
CLASS_GRADES = (0, 2)
