"""Built-in synthetic AP knee radiographs (KL-0 / KL-2 and more) with per-image ground truth,
and the joint measurement that checks key features on any knee image.

Convention: :func:`medial_on_image_left` says where the medial compartment is for a knee side.
"""

from kecae.phantoms.measure import JointMeasurement, measure_joint, measure_many
from kecae.phantoms.synth import (
    FOV_MM, GRADES, KEY_FIELDS, MARGINS, NON_KEY_FIELDS, OSTEOPHYTE_DEFINITE_MM, PhantomParams,
    SeverityModel, medial_on_image_left, render, sample_params, sample_patient_traits,
)

__all__ = [
    "FOV_MM", "GRADES", "KEY_FIELDS", "MARGINS", "NON_KEY_FIELDS", "OSTEOPHYTE_DEFINITE_MM",
    "JointMeasurement", "PhantomParams", "SeverityModel", "make_phantoms", "measure_joint",
    "measure_many", "medial_on_image_left", "render", "sample_params", "sample_patient_traits",
]


def __getattr__(name: str):
    # the data set writer pulls in file I/O and multiprocessing: import it only when asked for
    if name == "make_phantoms":
        from kecae.phantoms.dataset import make_phantoms
        return make_phantoms
    raise AttributeError(f"module 'kecae.phantoms' has no attribute {name!r}")
