"""The classic mistakes, written once: what each is, how it shows, how to fix it.

Every place that names a mistake reads it here: every checker (:mod:`kdcourse.checks`, whose
tables name a mistake by its id and give the function that makes it), lesson 07's broken
distillers (:data:`kdcourse.pitfalls.PITFALLS`) and its diagnosis exercise
(:func:`~kdcourse.checks.check_diagnosis`, which accepts the ``aliases``). A checker written by
hand says its messages from here too (``engine.fail(id, name=...)``). One module per family:
:mod:`.logits` (lessons 01, 02, 04 and 07), :mod:`.training` (03 and 04's training step),
:mod:`.features` (05, 08b), :mod:`.relations` (06), :mod:`.studies` (08, 08c), :mod:`.language` (09),
and :mod:`.answers` (what any checker says of what came back: a number where a tensor was due, NaN,
a gradient that does not reach the student). What the logit mistakes compute is here too
(:mod:`.wrong_losses`): the checkers of lessons 02 and 04 try it, and lesson 07's broken losses equal it.

Each entry has an ``id`` (an exercise's own mistakes are ``exercise.mistake``), a one-line
``summary`` (what is wrong; the logit mistakes, which lesson 07 lists), a ``fix`` (what it does,
why it matters, what to write instead; it may name the numbers of the case at hand: ``{T2}`` the
factor ``T^2``, ``{C}`` the number of classes, ``{B}`` the batch size, ``{alpha}`` and
``{1-alpha}`` the weights, ``{moved}`` the teacher's buffers that moved; ``{name}``, ``{shown}`` and
the other fields, what the checker at hand passes), and ``pitfall=True`` for the seven of lesson 07.
:func:`message` fills them in. An entry that starts in lower case or ends without a full stop is a
fragment a checker splices into a sentence (``language.nan_from_log``, a regressor's shape hint).

    >>> print(message("missing_t_squared", T=4))
    the soft term is off by a factor T^2 (= 16 at T=4): ...
"""

from __future__ import annotations

import re

from . import answers, features, language, logits, relations, studies, training
from .entry import Mistake

__all__ = ["Mistake", "CATALOGUE", "message", "placeholders", "pitfalls", "resolve"]

_ENTRIES = (*logits.ENTRIES, *training.ENTRIES, *features.ENTRIES, *relations.ENTRIES, *studies.ENTRIES,
            *language.ENTRIES, *answers.ENTRIES)

CATALOGUE: dict[str, Mistake] = {m.id: m for m in _ENTRIES}
"""Every mistake by its id."""


def message(mistake_id: str, *, T: float | None = None, C: int | None = None, B: int | None = None,
            alpha: float | None = None, moved: str | None = None, **fields) -> str:
    """The ``fix`` of a mistake with the numbers of the case at hand (a placeholder without its number
    is written as its symbol: ``T^2``, ``C``, ``B``, ``alpha``, ``1 - alpha``); any other placeholder,
    ``{name}`` for instance (the learner's function), is filled from ``fields`` and must be given."""
    text = CATALOGUE[mistake_id].fix
    missing = [f for f in placeholders(mistake_id) if f not in fields]
    if missing:
        raise KeyError(f"the message of {mistake_id!r} needs {', '.join(missing)}")
    numbers = {"T2": f"{T * T:g} at T={T:g}" if T else "T^2", "C": str(C) if C else "C", "B": str(B) if B else "B",
               "1-alpha": f"{1 - alpha:g}" if alpha is not None else "1 - alpha",
               "alpha": f"{alpha:g}" if alpha is not None else "alpha", "moved": moved or "see teacher_drift"}
    values = {**numbers, **{k: str(v) for k, v in fields.items()}}
    # one pass: a value that holds braces (a learner's error message, a dict) is left as it is
    return re.sub(r"\{(1-alpha|[A-Za-z_]\w*)\}", lambda m: values.get(m.group(1), m.group(0)), text)


def placeholders(mistake_id: str) -> list[str]:
    """The named fields a mistake's message needs besides the case's numbers (``T``, ``C``, ...)."""
    return [f for f in _PLACEHOLDER.findall(CATALOGUE[mistake_id].fix) if f not in _NUMBERS]


_PLACEHOLDER = re.compile(r"\{([A-Za-z_]\w*)\}")
_NUMBERS = ("T2", "C", "B", "alpha", "moved")  # {1-alpha} is not an identifier


def pitfalls() -> dict[str, str]:
    """Lesson 07's pitfalls: ``{id: summary}``, in the catalogue's order."""
    return {m.id: m.summary for m in _ENTRIES if m.pitfall}


def resolve(answer: str) -> str:
    """A learner's spelling of a pitfall (``"no T2"``, ``"Reversed KL"``) -> its id; unknown text is
    returned normalised (lower case, ``_`` for spaces and hyphens)."""
    text = answer.strip().lower().replace("-", "_").replace(" ", "_")
    for m in _ENTRIES:
        if m.pitfall and (text == m.id or text in m.aliases):
            return m.id
    return text
