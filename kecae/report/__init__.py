"""The run report: one self-contained HTML page built from what the pipeline left in a run folder.

- :mod:`.load` reads the run folder (every file optional; a damaged one is a recorded problem);
- :mod:`.format` and :mod:`.parts` turn numbers and text into HTML (``templates/parts.html``);
- :mod:`.figures` draws the figures (matplotlib, embedded as base64 PNGs);
- :mod:`.sections` lists the page's sections in order; each is laid out from the typed results of
  :mod:`kecae.results` by its own module (:mod:`.summary`, :mod:`.exchange`, :mod:`.measures`,
  :mod:`.grade_match`, :mod:`.downstream`, :mod:`.ablation`, :mod:`.robustness`, :mod:`.tune`,
  :mod:`.recipe`, :mod:`.reader`), with the metric tables' keys in :mod:`.rows` and the notes for
  missing parts in :mod:`.missing`, and the downstream study's answer in words in :mod:`.answer`
  (the study prints the same sentences);
- :mod:`.page` renders ``templates/report.html`` with ``static/report.css`` inlined, so the page
  has no external URL and can be mailed or archived as one file.
"""

from kecae.exports import lazy_exports

_EXPORTS = {
    "RunData": "load",
    "load_run": "load",
    "SECTIONS": "sections",
    "render_report": "page",
    "write_report": "page",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
