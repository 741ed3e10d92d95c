"""Shared by the checker tests: which of the checkers' own frames a learner's traceback would show."""

from __future__ import annotations

import os


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
