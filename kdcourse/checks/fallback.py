"""A skipped exercise does not stop the lesson: the rest of it runs on the package's reference.

Every checker in :mod:`kdcourse.checks` is wrapped by :func:`with_fallback`. When the function
it is given is still the stub that ``make lessons`` wrote (its body raises
``NotImplementedError("Exercise: ...")``), the checker does not fail: it says, once and where it
happens, that the lesson goes on with the reference, and puts the reference in the notebook under
the learner's name, so the cells below run as in the solution. A wrong (not missing) answer is
never replaced: its checker fails as before, naming the mistake.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable

__all__ = ["SKIPPED", "UNANSWERED", "is_stub", "with_fallback"]

SKIPPED = "is not written yet: the rest of this lesson uses"  # what a checker says of a stub (the grader reads it)
UNANSWERED = "is not answered yet"  # what a checker says of an answer left as `...` (the grader reads it too)


def is_stub(fn) -> bool:
    """True for a function whose body is still the exercise's stub: it raises
    ``NotImplementedError`` with a message starting ``"Exercise:"`` (what ``make lessons`` writes),
    whatever else the learner has written above that line."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return False
    messages = [c for c in code.co_consts if isinstance(c, str)]
    return "NotImplementedError" in code.co_names and any(m.startswith("Exercise:") for m in messages)


def with_fallback(check: Callable, reference: Callable, reference_name: str) -> Callable:
    """``check``, except that a stub is answered by putting ``reference`` in its place in the
    caller's namespace (the notebook's) and saying so, instead of failing."""

    @functools.wraps(check)
    def checker(fn, *args, **kwargs):
        __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
        if not is_stub(fn):
            return check(fn, *args, **kwargs)
        name = getattr(fn, "__name__", "your function")
        sys._getframe(1).f_globals[name] = reference
        print(f"⚠ {name} {SKIPPED} {reference_name}, the package's "
              f"reference, in its place. Write {name} and run its cell and this one again to check yours.")
        return None

    checker.reference = reference
    checker.reference_name = reference_name
    return checker
