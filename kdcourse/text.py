"""An embedded text corpus for the language-model lesson: Python's own help pages.

The corpus is ``pydoc_data.topics``, the text ``help("if")``, ``help("with")`` and the other
keyword and topic pages show. It ships with every CPython, so the lesson needs no download.
Its exact text changes a little from one Python version to the next (the lesson prints the
version and the corpus's SHA-256; the numbers in the stored outputs come from Python 3.11).

Tokens are characters over a fixed alphabet, :data:`VOCAB`: the newline, the 95 printable ASCII
characters and one *unknown* symbol that stands for anything else (a few dozen typographic
quotes and dashes). The alphabet does not depend on the Python version, so the shipped teacher
works with any version's text.

Splits are deterministic: the topics are joined in sorted order and cut into blocks of
:data:`BLOCK` characters; of every ten blocks the ninth goes to validation, the tenth to test,
the rest to training. Every part of the corpus appears in every split, and no character is in
two splits.
"""

from __future__ import annotations

import hashlib
import platform
from dataclasses import dataclass

import torch

__all__ = [
    "VOCAB",
    "UNKNOWN",
    "BLOCK",
    "TextSplits",
    "corpus_text",
    "encode",
    "decode",
    "load_text_data",
    "windows",
    "random_windows",
]

VOCAB = "\n" + "".join(chr(c) for c in range(32, 127)) + "\u00a4"
"""The alphabet: newline, printable ASCII, and ``¤`` (the unknown symbol, last)."""

UNKNOWN = len(VOCAB) - 1
"""The token id of the unknown symbol ``¤``."""

BLOCK = 2000
"""Characters per block of the deterministic split."""

_INDEX = {ch: i for i, ch in enumerate(VOCAB)}


def corpus_text() -> str:
    """The whole corpus: every ``pydoc_data.topics`` page, sorted by topic, blank-line separated."""
    try:
        from pydoc_data.topics import topics
    except ImportError as err:  # some stripped-down Python builds drop pydoc_data
        raise RuntimeError(
            "this Python has no pydoc_data module (a stripped-down build?). Install a standard "
            "CPython (python.org, conda, or your distribution's full python3 package)."
        ) from err
    return "\n\n".join(topics[name].strip("\n") for name in sorted(topics))


def encode(text: str) -> torch.Tensor:
    """Token ids (``int64``) of ``text``; characters outside :data:`VOCAB` become :data:`UNKNOWN`."""
    if not isinstance(text, str):
        raise ValueError(f"encode expects a str, got {type(text).__name__}")
    return torch.tensor([_INDEX.get(ch, UNKNOWN) for ch in text], dtype=torch.long)


def decode(ids) -> str:
    """The text of a sequence of token ids (a 1-D tensor, array or list)."""
    ids = torch.as_tensor(ids)
    if ids.dim() != 1:
        raise ValueError(f"decode expects a 1-D sequence of token ids, got shape {tuple(ids.shape)}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= len(VOCAB)):
        raise ValueError(f"token ids must lie in [0, {len(VOCAB) - 1}], got {int(ids.min())}..{int(ids.max())}")
    return "".join(VOCAB[i] for i in ids.tolist())


@dataclass(frozen=True)
class TextSplits:
    """Token streams of the three splits, and where they came from."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    sha256: str
    """SHA-256 of the corpus text (UTF-8)."""
    python: str
    """The Python version whose ``pydoc_data`` the text came from."""

    @property
    def vocab_size(self) -> int:
        return len(VOCAB)

    def __repr__(self) -> str:
        return (f"TextSplits(train={len(self.train):,} val={len(self.val):,} test={len(self.test):,} "
                f"characters, vocab {len(VOCAB)}, Python {self.python})")


def load_text_data(text: str | None = None) -> TextSplits:
    """The corpus (or ``text``), encoded and split by blocks (see the module docstring)."""
    text = corpus_text() if text is None else text
    if len(text) < 10 * BLOCK:
        raise ValueError(f"the text is too short to split: {len(text)} characters, need at least {10 * BLOCK}")
    ids = encode(text)
    parts: dict[str, list[torch.Tensor]] = {"train": [], "val": [], "test": []}
    for number, start in enumerate(range(0, len(ids), BLOCK)):
        block = ids[start:start + BLOCK]
        split = {8: "val", 9: "test"}.get(number % 10, "train")
        parts[split].append(block)
    return TextSplits(
        train=torch.cat(parts["train"]), val=torch.cat(parts["val"]), test=torch.cat(parts["test"]),
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(), python=platform.python_version(),
    )


def windows(stream: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping ``(inputs, targets)`` windows of a token stream, shapes ``(n, length)``.

    ``targets`` is ``inputs`` shifted by one character: position ``i`` predicts character
    ``i + 1``. The tail that does not fill a window is dropped.
    """
    if stream.dim() != 1:
        raise ValueError(f"stream must be a 1-D tensor of token ids, got shape {tuple(stream.shape)}")
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    n = (len(stream) - 1) // length
    if n < 1:
        raise ValueError(f"a stream of {len(stream)} tokens does not fill one window of {length}")
    chunk = stream[: n * length + 1]
    inputs = chunk[:-1].reshape(n, length)
    targets = chunk[1:].reshape(n, length)
    return inputs, targets


def random_windows(stream: torch.Tensor, length: int, batch_size: int,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of ``(inputs, targets)`` windows at random offsets of ``stream``."""
    starts = torch.randint(0, len(stream) - length - 1, (batch_size,), generator=generator)
    offsets = starts[:, None] + torch.arange(length + 1)
    chunk = stream[offsets]
    return chunk[:, :-1], chunk[:, 1:]
