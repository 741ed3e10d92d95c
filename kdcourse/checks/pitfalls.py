"""Checker for the diagnosis exercise of lesson 07: name the bug behind a mystery distiller.

The learner reads the symptoms of :data:`kdcourse.pitfalls.MYSTERIES` (accuracy, loss parts at
the first step, how far the teacher moved) and names one of :data:`kdcourse.pitfalls.PITFALLS`.

    >>> check_diagnosis("mystery_a", "mean_reduction")
    ✓ mystery_a is mean_reduction: ...
"""

from __future__ import annotations

from ..mistakes import resolve
from ..pitfalls import _MYSTERY_BUGS, MYSTERIES, PITFALLS
from .fallback import UNANSWERED

__all__ = ["check_diagnosis"]

# Why each mystery shows its symptoms (printed when the diagnosis is right).
_EXPLAIN = {
    "mystery_a": (
        "its soft term is exactly 1/10 of the correct one from the very first step, and 10 is the "
        "number of classes, not T^2 = 16: F.kl_div(..., reduction='mean') averages over the 10 "
        "classes as well as over the batch. The teacher never moved. Accuracy barely suffers here "
        "because Adam rescales gradients, so only the soft/hard balance changed (0.09 : 0.1 instead "
        "of 0.9 : 0.1); on CIFAR-100 the factor would be 100."
    ),
    "mystery_b": (
        "the teacher's weights did not move but its BatchNorm running statistics did, and its soft "
        "term at the first step differs from the correct one although the loss code is right: the "
        "teacher ran in train mode (batch statistics, dropout on). Accuracy hardly changed, which is "
        "what makes this bug dangerous: only the symptoms give it away."
    ),
}

# Hints for a wrong answer: specific ones for likely confusions, then a general one.
_HINTS = {
    ("mystery_a", "missing_t_squared"): (
        "Close: the soft term is too small by a constant factor from the first step. But is that "
        "factor T^2 = 16? Compare the two 'kd' values in the table. What else in this problem "
        "equals 10?"
    ),
    ("mystery_a", "teacher_train_mode"): (
        "A teacher in train mode moves its BatchNorm statistics; look at the teacher columns for "
        "mystery_a: did anything about the teacher change?"
    ),
    ("mystery_a", "swapped_alpha"): (
        "A swapped alpha changes the weights, not the values: the weights of mystery_a are 0.1 and "
        "0.9 as they should be. Look at the unweighted soft-term value instead."
    ),
    ("mystery_b", "teacher_not_frozen"): (
        "Close: the teacher did change. But which part of it: its weights, or only its BatchNorm "
        "running statistics? Only one of the two can be changed without gradients."
    ),
    ("mystery_b", "reversed_kl"): (
        "A reversed KL changes the soft term's value, but would it change the teacher's BatchNorm "
        "statistics? Look at the teacher columns."
    ),
}
_GENERAL = {
    "mystery_a": "Compare its first-step soft term with the correct distiller's on the same batch: "
                 "by what exact factor do they differ, and did the teacher move?",
    "mystery_b": "Look at the teacher: which of its numbers changed during the student's training, "
                 "and which stayed put? What changes a module's buffers but not its weights?",
}


def check_diagnosis(mystery: str, answer: str) -> None:
    """Check a diagnosis: ``answer`` names the pitfall (one of ``PITFALLS``) behind ``mystery``.

    Prints why the symptoms fit when right; raises ``AssertionError`` with a hint when wrong. The
    lesson's stub, ``...``, is not answered yet: said once, and the lesson goes on.
    """
    if mystery not in MYSTERIES:
        raise ValueError(f"unknown mystery {mystery!r}; choose one of {list(MYSTERIES)}")
    if answer is ...:  # the lesson's stub: not answered yet, and nothing below depends on it
        print(f"⚠ {mystery} {UNANSWERED}: write the name of its pitfall (one of {', '.join(PITFALLS)}) in "
              "place of ... and run both cells again. The lesson goes on without it; section 4 reveals the answers.")
        return
    if not isinstance(answer, str) or not answer.strip():
        raise AssertionError(
            f"Write your diagnosis as a string, one of: {', '.join(PITFALLS)} "
            f"(got {answer!r})."
        )
    name = resolve(answer)  # the accepted spellings: kdcourse.mistakes.CATALOGUE
    if name not in PITFALLS:
        listing = "\n".join(f"  {k!r}: {v}" for k, v in PITFALLS.items())
        raise AssertionError(f"{answer!r} is not one of the pitfalls. Choose one of:\n{listing}")
    truth = _MYSTERY_BUGS[mystery]
    if name != truth:
        hint = _HINTS.get((mystery, name), _GENERAL[mystery])
        raise AssertionError(
            f"Good try, but the symptoms of {mystery} do not fit {name!r} ({PITFALLS[name]}).\n"
            f"Hint: {hint}"
        )
    print(f"✓ {mystery} is {truth!r}: {_EXPLAIN[mystery]}")
