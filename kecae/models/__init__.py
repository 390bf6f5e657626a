"""Models: KECAE (``kecae``), its named sizes (``presets``) and the classifier zoo (``classifiers``)."""

from kecae.models.classifiers import (CLASSIFIERS, ClassifierConfig, build_classifier,
                                      classifier_from_config)
from kecae.models.kecae import (KECAE, KECAEConfig, KECAEOutput, count_parameters,
                                decoder_paddings, encoder_sizes, flops_per_image, flops_per_pair)
from kecae.models.presets import PRESETS, kecae_config

__all__ = [
    "CLASSIFIERS", "ClassifierConfig", "build_classifier", "classifier_from_config",
    "KECAE", "KECAEConfig", "KECAEOutput", "count_parameters", "decoder_paddings",
    "encoder_sizes", "flops_per_image", "flops_per_pair", "PRESETS", "kecae_config",
]
