"""Shared by the checker tests: a checker's failure and its message (``fails_with``), and which of the
checkers' own frames a learner's traceback would show (``shown_checker_frames``)."""

from __future__ import annotations

import os
import re

import pytest


def shown_checker_frames(error: BaseException) -> list[str]:
    """The checker functions a traceback would show: frames of kdcourse/checks without __tracebackhide__,
    in the error and in the learner's error it was raised from."""
    names, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        tb = error.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            if f"kdcourse{os.sep}checks{os.sep}" in frame.f_code.co_filename and \
                    not frame.f_locals.get("__tracebackhide__"):
                names.append(frame.f_code.co_name)
            tb = tb.tb_next
        error = error.__cause__ or error.__context__
    return names


def fails_with(check, fn, *patterns):
    """Run the checker on a wrong ``fn``; assert it raises and its message matches every pattern (regular
    expressions, case-insensitive); return the message."""
    with pytest.raises(AssertionError) as info:
        check(fn)
    message = str(info.value)
    for pattern in patterns:
        assert re.search(pattern, message, re.IGNORECASE | re.DOTALL), f"{pattern!r} not in:\n{message}"
    return message
