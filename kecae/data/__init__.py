"""Data layer: read knee X-rays, catalog and split them, check them, cache preprocessed arrays,
and draw KECAE's pairs.

Typical use::

    from kecae.data import PairSampler, load_image_set
    train = load_image_set("data/", size=299, split="train")  # cached (N, 299, 299) memmap
    kl0, kl2 = train.for_grade(0), train.for_grade(2)
    pairs = PairSampler(len(kl0), len(kl2), num_pairs=100_000, seed=0).pairs()  # (N, 2) indices

Nothing here imports torch. Names are imported on first use, so ``kecae data check`` starts fast.
"""

from kecae.exports import lazy_exports

_EXPORTS = {
    "ImageSet": "cache",
    "load_image_set": "cache",
    "Catalog": "records",
    "Problem": "records",
    "Record": "records",
    "load_catalog": "catalog",
    "CheckReport": "check",
    "check_dataset": "check",
    "balanced_indices": "balance",
    "bootstrap": "balance",
    "PairSampler": "pairs",
    "IMAGE_SUFFIXES": "readers",
    "preprocess": "readers",
    "read_image": "readers",
    "assign_splits": "splits",
    "find_split_leaks": "splits",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
