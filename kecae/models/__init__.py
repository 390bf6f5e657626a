"""Models: KECAE (:mod:`.autoencoder`), its named sizes (:mod:`.presets`) and the classifier zoo
(:mod:`.classifiers`). The names of presets and classifiers are listed in :mod:`kecae.registry`."""

from kecae.exports import lazy_exports

_EXPORTS = {
    "CLASSIFIERS": "classifiers",
    "PRESETS": "presets",
    "KECAE": "autoencoder",
    "KECAEConfig": "autoencoder",
    "KECAEOutput": "autoencoder",
    "count_parameters": "cost",
    "decoder_paddings": "autoencoder",
    "encoder_sizes": "autoencoder",
    "flops_per_image": "cost",
    "flops_per_pair": "cost",
    "ClassifierConfig": "classifiers",
    "build_classifier": "classifiers",
    "classifier_from_config": "classifiers",
    "kecae_config": "presets",
    "preset_training": "presets",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
