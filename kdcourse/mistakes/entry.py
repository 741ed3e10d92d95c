"""One entry of the catalogue of mistakes (:mod:`kdcourse.mistakes`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mistake:
    """A classic mistake: its ``id``, a one-line ``summary``, the ``fix`` a checker says (what is wrong,
    why it matters, what to write instead), the ``aliases`` lesson 07's diagnosis accepts and
    ``pitfall=True`` for lesson 07's seven."""

    id: str
    summary: str = ""
    fix: str = ""
    aliases: tuple[str, ...] = ()
    pitfall: bool = False


def entries(text: str) -> tuple[Mistake, ...]:
    """The mistakes of a glossary: blocks separated by a blank line, each an id on its first line and
    the fix, indented, on the next ones (joined with single spaces)."""
    found = []
    for block in text.strip().split("\n\n"):
        id, *fix = block.splitlines()
        if not fix or id != id.strip() or not all(line.startswith("    ") for line in fix):
            raise ValueError(f"a catalogue block is an unindented id, then its fix indented by 4: {block!r}")
        found.append(Mistake(id, fix=" ".join(line.strip() for line in fix)))
    return tuple(found)
