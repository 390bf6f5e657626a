"""Registry names the CLI offers as choices, kept free of torch imports so that `kecae --help`
and `kecae data check` start in a fraction of a second. A test checks them against the real
registries (``kecae.models.PRESETS`` and ``kecae.models.CLASSIFIERS``)."""

PRESET_NAMES = ("cpu", "paper", "tiny")
CLASSIFIER_NAMES = ("densenet201", "resnet18", "siamese", "small", "vgg11")
