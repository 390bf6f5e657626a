"""Built-in synthetic AP knee radiographs (KL-0 / KL-2 and more) with per-image ground truth
(:mod:`.synth`, written as a data set by :mod:`.dataset`), and the joint measurement that checks
key features on any knee image (:mod:`.measure`).

Convention: :func:`medial_on_image_left` says where the medial compartment is for a knee side.
"""

from kecae.exports import lazy_exports

_EXPORTS = {
    "JointMeasurement": "measure",
    "measure_joint": "measure",
    "measure_many": "measure",
    "FOV_MM": "synth",
    "GRADES": "synth",
    "KEY_FIELDS": "synth",
    "MARGINS": "synth",
    "NON_KEY_FIELDS": "synth",
    "OSTEOPHYTE_DEFINITE_MM": "synth",
    "PhantomParams": "synth",
    "SeverityModel": "synth",
    "medial_on_image_left": "synth",
    "render": "synth",
    "sample_params": "synth",
    "sample_patient_traits": "synth",
    "make_phantoms": "dataset",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
