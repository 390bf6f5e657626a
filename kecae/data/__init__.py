"""Data layer: read knee X-rays, catalog and split them, cache preprocessed arrays, make pairs.

Typical use::

    from kecae.data import load_image_set, make_pair_dataset
    train = load_image_set("data/", size=299, split="train")  # cached (N, 299, 299) memmap
    pairs = make_pair_dataset(train, num_pairs=100_000, seed=0)  # dict items: x1, x2, y1, y2, ...

Names are imported on first use, so ``kecae data check`` starts without importing torch.
"""

from importlib import import_module

_EXPORTS = {
    "ImageSet": "cache", "load_image_set": "cache",
    "Catalog": "catalog", "Problem": "catalog", "Record": "catalog", "load_catalog": "catalog",
    "CheckReport": "check", "check_dataset": "check",
    "ClassificationDataset": "datasets", "balanced_indices": "datasets",
    "balanced_sampler": "datasets",
    "PairDataset": "pairs", "PairSampler": "pairs", "make_pair_dataset": "pairs",
    "IMAGE_SUFFIXES": "readers", "preprocess": "readers", "read_image": "readers",
    "assign_splits": "splits", "find_split_leaks": "splits",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'kecae.data' has no attribute {name!r}")
    return getattr(import_module(f"kecae.data.{_EXPORTS[name]}"), name)
