"""Checker for the diagnosis exercise of lesson 07: name the bug behind a mystery distiller.

The learner reads the symptoms of :data:`kdcourse.pitfalls.MYSTERIES` (accuracy, loss parts at
the first step, how far the teacher moved) and names one of :data:`kdcourse.pitfalls.PITFALLS`.

    >>> check_diagnosis("mystery_a", "mean_reduction")
    ✓ mystery_a is mean_reduction: ...
"""

from __future__ import annotations

from ..mistakes import resolve
from ..pitfalls import _DIAGNOSES, MYSTERIES, PITFALLS
from .engine import fail, mistake
from .fallback import UNANSWERED

__all__ = ["check_diagnosis"]

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
        raise fail("diagnosis.not_a_string", pitfalls=', '.join(PITFALLS), answer=f"{answer!r}")
    name = resolve(answer)  # the accepted spellings: kdcourse.mistakes.CATALOGUE
    if name not in PITFALLS:
        listing = "\n".join(f"  {k!r}: {v}" for k, v in PITFALLS.items())
        raise AssertionError(mistake("diagnosis.unknown", answer=f"{answer!r}") + f"\n{listing}")
    truth, diagnosis = _DIAGNOSES[mystery].bug, _DIAGNOSES[mystery]
    if name != truth:
        hint = diagnosis.hints.get(name, diagnosis.hint)
        raise AssertionError(mistake("diagnosis.wrong", mystery=mystery, answer=f"{name!r}", summary=PITFALLS[name])
                             + f"\nHint: {hint}")
    print(f"✓ {mystery} is {truth!r}: {diagnosis.why}")
