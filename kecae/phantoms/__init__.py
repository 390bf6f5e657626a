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
    "FOV_MM": "params",
    "GRADES": "params",
    "KEY_FIELDS": "params",
    "MARGINS": "params",
    "NON_KEY_FIELDS": "params",
    "OSTEOPHYTE_DEFINITE_MM": "params",
    "PhantomParams": "params",
    "SeverityModel": "params",
    "medial_on_image_left": "params",
    "render": "synth",
    "sample_params": "params",
    "sample_patient_traits": "params",
    "make_phantoms": "dataset",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
