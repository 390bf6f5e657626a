"""Is a classifier worth reading? A classifier that calls (nearly) every knee one grade, or is no
more accurate than always calling the larger class, makes every rate computed with it
meaningless: an exchange "succeeds" whenever the donor happens to carry that grade.

:func:`classifier_validity` is a pure function of a confusion matrix; ``kecae evaluate`` applies
it to the judge and the supervisor, the targets that use a degenerate one are marked not
meaningful, and the report flags it at the top.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: A classifier that gives one class to at least this share of the test images is degenerate.
ONE_CLASS_SHARE = 0.95

#: ... and so is one whose accuracy is within this many points of the majority rate.
MAJORITY_MARGIN = 0.02


def classifier_validity(
    confusion: Any, grades: tuple[int, int] = (0, 2), who: str = "the classifier"
) -> dict[str, Any]:
    """Whether a classifier is degenerate on its test images, and why.

    Args:
        confusion: 2x2 ``[[tn, fp], [fn, tp]]`` (rows: true class 0, 1; columns: called 0, 1).
        grades: the KL grades of class 0 and class 1 (for the reason's words).
        who: how the reason names the classifier.
    Returns:
        ``{"degenerate", "accuracy", "majority_rate", "called_share", "n", "reason"}``:
        ``called_share`` is the share of images called class 0 and class 1; ``reason`` says in
        one sentence what is wrong (empty when nothing is).
    """
    cm = np.asarray(confusion, dtype=np.int64)
    if cm.shape != (2, 2) or (cm < 0).any():
        raise ValueError(f"confusion must be a 2x2 matrix of counts, got {cm.tolist()}")
    n = int(cm.sum())
    if n == 0:
        return {
            "degenerate": None,
            "accuracy": None,
            "majority_rate": None,
            "called_share": [None, None],
            "n": 0,
            "reason": "",
        }
    accuracy = float(np.trace(cm)) / n
    true_share = cm.sum(axis=1) / n  # per true class
    called = cm.sum(axis=0) / n  # per called class
    majority = float(true_share.max())
    top = int(called.argmax())
    reason = ""
    if called[top] >= ONE_CLASS_SHARE:
        reason = (
            f"{who} calls {100 * called[top]:.0f} % of the test knees KL-{grades[top]} "
            f"(accuracy {100 * accuracy:.1f} %, the share of the larger grade is "
            f"{100 * majority:.1f} %)"
        )
    elif accuracy <= majority + MAJORITY_MARGIN:
        reason = (
            f"{who} is {100 * accuracy:.1f} % accurate, no better than calling every knee "
            f"KL-{grades[int(true_share.argmax())]} ({100 * majority:.1f} %)"
        )
    return {
        "degenerate": bool(reason),
        "accuracy": accuracy,
        "majority_rate": majority,
        "called_share": [float(c) for c in called],
        "n": n,
        "reason": reason,
    }
