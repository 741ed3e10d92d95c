"""Numbers checked by CI: every number the prose of a solution notebook states must be in the outputs above it.

For each markdown cell of ``solutions/*.ipynb`` (read with nbformat, never executed), every number
in its text must have a match **at the precision the prose shows** among

* the outputs of the code cells above it (stream text, ``text/plain``, ``text/html``, ``text/markdown``
  of ``execute_result`` / ``display_data``; ``error`` outputs do not count; figures are images and
  widgets are not stored, so a number only they show does not count either), or
* the numeric literals (by the syntax tree: not strings, not comments) in the source of the code
  cells above it, or of the code cells right below it up to the next markdown cell: ``T = 4``,
  ``alpha=0.9``, 40 epochs are settings the code states, and text that introduces a cell often
  names its settings ("the student gets 40 epochs:"). A result in the outputs below never counts.

The introduction (the markdown above the first code cell: title and goals) previews the lesson, so
its numbers are matched against every cell of the notebook.

Matching (``matches``). The output value is rounded to the prose's precision: prose ``94.8`` matches
``94.83``, ``94.8`` or ``94.75``; prose ``94.83`` does not match an output ``94.8`` (the prose would
claim a digit the output does not show). Prose with a ``%`` or ``points`` also matches an output
fraction (``94.8 %`` matches ``0.9483``, ``+0.6 points`` matches ``0.0063``); unit-less prose also
matches an output percentage as a fraction (``0.57`` matches ``57.4%``). Signs: prose ``−5.2``
(unicode or ASCII minus) needs a negative output, prose ``+0.6`` a non-negative one, an unsigned
``3.9`` ("loses by 3.9 points") either. Thousands separators are read (``26,682``), so are
``k`` / ``M`` suffixes (``6.9k`` matches 6,866 at the precision of 100; ``0.70 M`` matches 696,618).
Ranges and lists (``0.6–0.9``, ``3.1 to 4.2 points``, ``+3.5, +3.2 and +1.9 points``) are single
numbers, the earlier ones taking the last one's % or points. ``A ± B`` must be found as a pair: B
right after a number matching A, on one line of one output (one row of an HTML table), so a fresh
mean with a stale spread is caught. Code literals match exactly (times 100 for prose in % or
points), never by rounding.

General exemptions (few, on purpose; ``EXEMPT_RULES`` counts them):

* fenced and inline code, link targets and URLs, HTML tags: not read at all;
* names: a number glued to letters or after a letter and a hyphen (``layer3``, ``08b``, ``10th``,
  ``CIFAR-10``, ``top-20``, ``SHA-256``, ``3s`` as the plural of the digit), and sizes ``8x8``,
  ``32 x 32``;
* ``math``: an integer inside LaTeX math (``$T^2$``, ``$1/T^2$``, ``$\\beta = 1000$``); a decimal in math
  (``$-2.02$``) is checked like prose;
* ``small``: the integers 0, 1, 2 (prose: "1 - alpha", "2 seeds");
* ``year``: 1990-2030 written without a separator, with a name or "et al." before it;
* ``reference``: lesson / section / eq. / exercise / question numbers (``lessons 04-08``, ``eq. 1``),
  the number of a heading ("## 3. ...") or of a numbered-list item, and a digit named as a class
  ("an image of a 3", "an 8", "digit 3", "classes 5 and 8").

What is left and is genuinely not a result (a published study's numbers, an estimate, arithmetic on
stated sizes, a default of the package) goes into ``ALLOW``, per notebook, as (number, text around it,
reason); an entry that no longer matches anything fails the test. The rest is *pending*:
``tests/numbers_pending.json`` lists the unmatched numbers of today's notebooks, and
``tests/test_numbers.py`` fails on an unmatched number not in it and on an entry in it that no
longer occurs, so the list can only shrink. An entry is keyed by notebook, number as written and
its context (60 characters of the markdown around it, whitespace collapsed): editing the sentence
around a pending number makes it "new" and its old entry "stale"; rerun ``--write-pending``.

    .venv/bin/python tests/numbers_audit.py --report          # every unmatched number, with hints
    .venv/bin/python tests/numbers_audit.py --write-pending   # rewrite tests/numbers_pending.json
    .venv/bin/python tests/numbers_audit.py --report --solutions /tmp/x/solutions   # another copy

``--write-pending`` keeps the ``class`` and ``note`` of entries that are still pending. The report's
hints (where else the number appears: cells below, other lessons, ``results/*.json``; the nearest
outputs above) are for the writer; the test uses none of them.

Known limits: a number is matched by value, not by meaning, so a wrong number that happens to equal
another output above passes (integers most often), and a qualitative claim ("stays near 0.87 at
every temperature", "a real gap") is not checked at all.
"""

from __future__ import annotations

import argparse
import ast
import bisect
import html
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
RESULTS = ROOT / "results"
PENDING = Path(__file__).resolve().parent / "numbers_pending.json"
CONTEXT = 30  # characters of markdown on each side of a number in a finding's context
REGENERATE = ".venv/bin/python tests/numbers_audit.py --write-pending"

# --------------------------------------------------------------------------------------------------
# The allow-list: numbers in prose that are not results of the notebook, per notebook, each as
# (the number as written, a piece of the text right around it, why it needs no output).
# --------------------------------------------------------------------------------------------------
PUBLISHED = "a published study's number, not this notebook's result"
ARITHMETIC = "arithmetic on sizes the text or code states"
ALLOW: dict[str, list[tuple[str, str, str]]] = {
    "01_softmax_temperature.ipynb": [
        ("2.303", r"log 10 \approx 2.303", "log 10, a constant of mathematics"),
        ("90", "the 90 off-diagonal entries", ARITHMETIC + ": 10 x 10 - 10"),
    ],
    "03_teacher_and_student.ipynb": [
        ("4 times", "4 times narrower", ARITHMETIC + ": widths 32 / 8"),
        ("16 times", "16 times fewer", ARITHMETIC + ": (32 / 8)^2, the prediction the next cells test"),
        ("64", "mini-batches of 64", "the default batch size of kdcourse.distill.train"),
        ("30", "median of 30 timed runs", "the default repeats of kdcourse.models.measure_latency"),
    ],
    "04_distilling_logits.ipynb": [
        ("90", "About 90 student trainings", "an estimate of the notebook's cost"),
        ("0.1", 'a study\'s "$\\alpha = 0.1$"', "an example of the other convention"),
        ("80 %", 'says "80 %" is right 80 %', "an example in the definition of calibration"),
        ("133", "133 errors on 1,010", PUBLISHED + " (Hinton et al. 2015)"),
        ("1,010", "133 errors on 1,010", PUBLISHED + " (Hinton et al. 2015)"),
        ("3.5", "3.5 for their MNIST student", PUBLISHED + " (Hinton et al. 2015)"),
        ("3.5", "close to Hinton's 3.5", PUBLISHED + " (Hinton et al. 2015)"),
    ],
    "05_feature_distillation.ipynb": [
        ("73.50 %", "FitNet reaches 73.50 %", PUBLISHED + " (RepDistiller)"),
        ("73.44 %", "AT 73.44 %", PUBLISHED + " (RepDistiller)"),
        ("73.33 %", "73.33 % for KD", PUBLISHED + " (RepDistiller)"),
        ("72.50 %", "72.50 % for the student alone", PUBLISHED + " (RepDistiller)"),
        ("512", "128 x 2 x 2 = 512", ARITHMETIC),
        ("1024", "`layer2` 1024", ARITHMETIC + ": 64 x 4 x 4"),
    ],
    "06_relation_distillation.ipynb": [
        ("262,144", "262,144 for a batch of 64", ARITHMETIC + ": 64^3"),
        ("64", "262,144 for a batch of 64", "the default batch size of kdcourse.distill.train"),
        ("64", "inside a batch (64 examples", "the default batch size of kdcourse.distill.train"),
        ("72.94 %", "SP reaches 72.94 %", PUBLISHED + " (RepDistiller)"),
        ("71.90 %", "RKD 71.90 %", PUBLISHED + " (RepDistiller)"),
        ("73.33 %", "73.33 % for KD", PUBLISHED + " (RepDistiller)"),
        ("72.50 %", "72.50 % for the student", PUBLISHED + " (RepDistiller)"),
    ],
    "07_pitfalls_and_diagnostics.ipynb": [
        ("66.5 %", "(66.5 % vs 75.8 %)", PUBLISHED),
        ("75.8 %", "(66.5 % vs 75.8 %)", PUBLISHED),
        ("1000", "the papers' 1 and 1000", "the papers' weights (FitNets, attention transfer)"),
        ("82.4 %", "teacher reached 82.4 %", PUBLISHED),
        ("6.6 points", "only **6.6 points**", PUBLISHED),
        ("75.8 %", "its student's 75.8 %", PUBLISHED),
        ("6", "depth 3 to 6", PUBLISHED + " (ResNet-10 into ResNet-3..6)"),
        ("+6", "gains of +3, +6, +2", PUBLISHED),
    ],
    "08_cifar10_capstone.ipynb": [
        ("50", "(50 per class)", ARITHMETIC + ": 500 labels, 10 classes, stratified"),
        ("50", "500 images, 50 per class", ARITHMETIC + ": 500 labels, 10 classes, stratified"),
        ("50", "One point is 50 of the 5,000", ARITHMETIC),
        ("170", "about 170 MB", "the size of the CIFAR-10 download"),
        ("2.2", "2.2 MB", "the size of kdcourse/assets/cifar10_teacher_logits.npz (2,210,862 bytes)"),
        ("24,000", "(24,000)", ARITHMETIC + ": 8 epochs x 3,000 images"),
        ("2.30", r"\log 10 = 2.30", "log 10, a constant of mathematics"),
    ],
    "08b_cifar10_feature_methods.ipynb": [
        ("170", "about 170 MB", "the size of the CIFAR-10 download"),
        ("3000 ×", "CE + 3000 ×", "the paper's weight (similarity-preserving KD)"),
        ("1000 times", "use 1000 times the same sum", "the reference implementations' AT weight (mdistiller, "
                                                      "RepDistiller)"),
        ("3000", "3000 is Tung & Mori", "the paper's weight (similarity-preserving KD)"),
        ("66.5 %", "66.5 % with KD", PUBLISHED),
        ("75.8 %", "75.8 % without", PUBLISHED),
        ("90 %", "spends 90 % of its loss", "alpha = 0.9, a setting"),
        ("71.90 %", "RKD 71.90 %", PUBLISHED + " (RepDistiller)"),
        ("72.50 %", "72.50 % student", PUBLISHED + " (RepDistiller)"),
        ("30", "images for 30 epochs", "a setting of the full profile (kdcourse.capstone.FULL), not run here"),
        ("30", "short schedule (30 epochs", "a setting of the full profile (kdcourse.capstone.FULL), not run here"),
        ("30", "no more than 30 views", "a setting of the full profile: one random crop per epoch, 30 epochs"),
    ],
    "09_distilling_a_language_model.ipynb": [
        ("95", "the 95 printable ASCII", "a fact about ASCII"),
        ("2,000", "blocks of 2,000 characters", "kdcourse.text.BLOCK, a setting of the package"),
        ("6.6", r"\log_2 97 = 6.6", "log2 97, arithmetic"),
        ("6.6", "the 6.6 bits of a uniform guess", "log2 97, arithmetic"),
        ("284", "the 284 padded positions", ARITHMETIC + ": 512 - 228 real tokens, both printed above"),
        ("33", "33 characters the student writes", ARITHMETIC + ": 64 - 32 + 1"),
        ("33", "the student writes 33 characters", ARITHMETIC + ": 64 - 32 + 1"),
        ("2,000", "(2,000 steps from scratch", "a setting of the full profile (kdcourse.lm.PROFILES), not run here"),
    ],
}

EXEMPT_RULES = ("math", "small", "year", "reference")
MINUS = "-\u2212"  # ASCII hyphen-minus and the unicode minus sign
MINUS_SET = frozenset(MINUS)
PM = re.compile(r"\s*(?:±|\+-|\+/-)\s*$")
RANGE = re.compile(r"^\s*(?:–|-|\bto\b|,|\band\b)\s*$")  # "76–81 %", "3.1 to 4.2 points", "+3.5, +3.2 and +1.9 points"

# a number: optional sign, digits with thousands separators or plain, decimals, exponent
NUMBER = re.compile(
    r"(?P<sign>[+\-\u2212])?"
    r"(?P<body>\d{1,3}(?:,\d{3})+(?!\d)|\d+(?:_\d+)*)"
    r"(?P<dec>\.\d+)?"
    r"(?P<exp>[eE][+\-]?\d+)?"
)
# what may follow a number: a unit or a k / M multiplier (anything else glued on makes it a name)
AFTER = re.compile(
    r"(?P<space>[ \u00a0\u202f]?)"
    r"(?P<unit>%|percent\b|percentage points?\b|points?\b|pts?\b|pp\b|[x×](?![A-Za-z0-9])|times\b"
    r"|k(?=[\s\-,.;:)]|$)|M(?=[\s\-,.;:)]|$))?"
)
REFERENCE = re.compile(
    r"(?i)\b(?:lessons?|sections?|sec\.|eqs?\.|equations?|exercises?|questions?|chapters?)\s*"
    r"\d+[a-z]?(?:\.\d+)?(?:\s*(?:,|\band\b|\bor\b|\bto\b|–|-|&)\s*\d+[a-z]?(?:\.\d+)?)*"
)
DIGIT_CLASS = re.compile(  # a digit named as a class: "an image of a 3", "an 8", "digit 3", "classes 5 and 8"
    r"(?i)\b(?:an?|digits?|class(?:es)?)\s+\**\d\b(?![.,]\d)\**(?:\s*(?:,|\band\b|\bor\b)\s*(?:an?\s+)?\d\b(?![.,]\d))*"
)
LIST_OR_HEADING = re.compile(r"(?m)^[ \t>]*(?:#{1,6}[ \t]+)?(\d{1,2})[.)](?=\s)")


@dataclass
class Number:
    text: str  # as written, sign and unit included
    value: float  # signed, multiplier applied
    quantum: float  # the precision shown: 0.1 for "94.8", 100 for "6.9k"
    sign: str  # "+", "-" or ""
    unit: str  # "%", "points", "x", "k", "M" or ""
    start: int
    end: int
    integer: bool  # written without decimals or exponent (and without a k / M)
    in_math: bool = False
    separators: bool = False  # written with a thousands separator


def _quantum(dec: str | None, exp: str | None) -> float:
    q = 10.0 ** -(len(dec) - 1) if dec else 1.0
    return q * (10.0 ** int(exp[1:]) if exp else 1.0)


def parse_numbers(text: str, names_skipped: list | None = None) -> list[Number]:
    """The numbers in `text`, with units; numbers that are parts of names are left out (and appended
    to `names_skipped` when given)."""
    found: list[Number] = []
    for m in NUMBER.finditer(text):
        start, end = m.start(), m.end()
        sign = m.group("sign") or ""
        digits_start = start + len(sign)
        before = text[digits_start - 1] if digits_start > 0 else ""
        before2 = text[digits_start - 2] if digits_start > 1 else ""
        # a sign counts only when it does not join two words or numbers ("04-08", "0.6-0.9", "CIFAR-10")
        if sign and start > 0 and (text[start - 1].isalnum() or text[start - 1] in ("_", ".")):
            if sign in MINUS_SET and text[start - 1].isalpha():  # CIFAR-10, top-20, SHA-256: a name
                if names_skipped is not None:
                    names_skipped.append(m.group(0))
                continue
            sign, start = "", digits_start
        if before.isalnum() or before in ("_", ".") or (before in MINUS_SET and before2.isalpha()) \
                or re.search(r"\d[ \u00a0]?[x×][ \u00a0]?$", text[max(0, digits_start - 4):digits_start]):
            if names_skipped is not None:
                names_skipped.append(m.group(0))
            continue
        after = AFTER.match(text, end)
        unit = after.group("unit") or ""
        tail = re.match(r"[ \u00a0]?\d", text[after.end():])
        if not unit:
            nxt = text[end:end + 1]
            if nxt.isalpha() or nxt == "_" or (nxt == "x" and text[end + 1:end + 2].isdigit()):
                if names_skipped is not None:  # 08b, 10th, 3s, float32, 8x8
                    names_skipped.append(m.group(0))
                continue
        elif unit in ("x", "×") and tail:  # 8x8, 32 x 32: an image size
            if names_skipped is not None:
                names_skipped.append(m.group(0))
            continue
        body = m.group("body").replace(",", "").replace("_", "")
        dec, exp = m.group("dec"), m.group("exp")
        value = float(body + (dec or "") + (exp or ""))
        quantum = _quantum(dec, exp)
        unit_name = {"%": "%", "percent": "%", "x": "x", "×": "x", "times": "x", "k": "k", "M": "M"}.get(
            unit, "points" if unit else "")
        if unit_name in ("k", "M"):
            scale = 1e3 if unit_name == "k" else 1e6
            value, quantum = value * scale, quantum * scale
        if sign in MINUS_SET:
            value, sign = -value, "-"
        end = after.end() if unit else m.end()
        found.append(Number(text=text[start:end], value=value, quantum=quantum, sign=sign,
                            unit=unit_name, start=start, end=end, integer=not dec and not exp
                            and unit_name not in ("k", "M"), separators="," in m.group("body")))
    # a range or a list takes the % or points of its last member
    for a, b in zip(reversed(found[:-1]), reversed(found[1:])):
        if not a.unit and b.unit in ("%", "points") and RANGE.match(text[a.end:b.start]):
            a.unit = b.unit
    return found


# --------------------------------------------------------------------------------------------------
# Markdown: what is read, what is math
# --------------------------------------------------------------------------------------------------
SKIPPED = [
    re.compile(r"(?ms)^[ \t]*(```|~~~).*?^[ \t]*\1[^\n]*$"),  # fenced code
    re.compile(r"(`+)(?:(?!\1).)+?\1", re.S),  # inline code
    re.compile(r"!?\[[^\]]*\]\([^)]*\)"),  # images: whole; links: see below
    re.compile(r"https?://[^\s)>\]]+"),  # bare URLs
    re.compile(r"</?[A-Za-z][^>\n]*>"),  # HTML tags
]
LINK_TARGET = re.compile(r"\]\([^)]*\)")
MATH = [re.compile(r"\$\$.+?\$\$", re.S), re.compile(r"(?<![\\$])\$(?!\$)(?:\\\$|[^$])+?(?<!\\)\$", re.S)]


def mask_markdown(source: str) -> tuple[str, list[tuple[int, int]]]:
    """`source` with code, URLs, link targets and tags blanked out (positions kept), and the spans of math."""
    chars = list(source)

    def blank(a: int, b: int) -> None:
        for i in range(a, b):
            if chars[i] != "\n":
                chars[i] = " "

    for pattern in SKIPPED[:2]:
        for m in pattern.finditer("".join(chars)):
            blank(m.start(), m.end())
    text = "".join(chars)
    for m in SKIPPED[2].finditer(text):  # a link keeps its text, loses its target; an image goes
        if m.group(0).startswith("!"):
            blank(m.start(), m.end())
        else:
            t = LINK_TARGET.search(m.group(0))
            blank(m.start() + t.start(), m.start() + t.end())
    for pattern in SKIPPED[3:]:
        for m in pattern.finditer("".join(chars)):
            blank(m.start(), m.end())
    text = "".join(chars)
    spans: list[tuple[int, int]] = []
    for pattern in MATH:
        for m in pattern.finditer(text):
            if not any(a <= m.start() < b for a, b in spans):
                spans.append((m.start(), m.end()))
    return text, spans


def exemption(num: Number, text: str, references: list[tuple[int, int]]) -> str | None:
    """The general rule that exempts `num` (found in the masked markdown `text`), or None."""
    if any(a <= num.start and num.end <= b for a, b in references):
        return "reference"
    if num.in_math and num.integer:
        return "math"
    if num.integer and abs(num.value) in (0, 1, 2):
        return "small"
    if num.integer and not num.separators and not num.unit and num.sign == "" and 1990 <= num.value <= 2030:
        before = text[max(0, num.start - 40):num.start]
        if re.search(r"et al|[A-Z][a-z]+|&", before):
            return "year"
    return None


def reference_spans(text: str) -> list[tuple[int, int]]:
    spans = [(m.start(), m.end()) for m in REFERENCE.finditer(text)]
    spans += [(m.start(), m.end()) for m in DIGIT_CLASS.finditer(text)]
    spans += [(m.start(1), m.end(1)) for m in LIST_OR_HEADING.finditer(text)]
    return spans


# --------------------------------------------------------------------------------------------------
# Outputs and source: what the prose can be matched against
# --------------------------------------------------------------------------------------------------
def html_to_text(markup: str) -> str:
    markup = re.sub(r"(?is)<style.*?</style>", "", markup)
    markup = re.sub(r"(?i)</tr\s*>|<br\s*/?>|</p\s*>|</div\s*>", "\n", markup)
    markup = re.sub(r"(?i)</t[dh]\s*>", "   ", markup)
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


def output_texts(cell) -> list[str]:
    """The text of a code cell's outputs: streams and plain / HTML / markdown displays, never errors."""
    texts = []
    for out in cell.get("outputs", []):
        kind = out.get("output_type")
        if kind == "stream":
            texts.append(out.get("text", ""))
        elif kind in ("execute_result", "display_data"):
            data = out.get("data", {})
            for mime in ("text/plain", "text/markdown"):
                if mime in data:
                    texts.append(data[mime] if isinstance(data[mime], str) else "".join(data[mime]))
            if "text/html" in data:
                markup = data["text/html"]
                texts.append(html_to_text(markup if isinstance(markup, str) else "".join(markup)))
    return texts


def source_constants(source: str) -> set[float]:
    """The numeric literals of a code cell (by its syntax tree: not in strings or comments), unsigned."""
    lines = [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError:
        return {float(m.group(0).replace("_", "")) for m in re.finditer(r"(?<![\w.])\d[\d_]*(?:\.\d+)?(?:e-?\d+)?", source)}
    return {abs(float(node.value)) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool)}


@dataclass
class Pool:
    """What the prose of one markdown cell was matched against (kept for the report)."""
    lines: list[list[Number]] = field(default_factory=list)  # one list per output line, in order
    constants: set[float] = field(default_factory=set)


class CodeNumbers:
    """The numbers of a notebook's code cells: outputs line by line and literals cell by cell, with
    the output numbers sorted by magnitude (on each scale a prose number may read them) for lookups."""

    FACTORS = (1.0, 100.0, 0.01)

    def __init__(self, cells) -> None:
        self.lines: list[tuple[int, list[Number]]] = []
        self.constants: dict[int, set[float]] = {}
        entries: dict[float, list[tuple[float, int, Number]]] = {f: [] for f in self.FACTORS}
        for index, cell in enumerate(cells):
            if cell.cell_type != "code":
                continue
            self.constants[index] = source_constants(cell.source)
            for text in output_texts(cell):
                for line in text.splitlines():
                    numbers = parse_numbers(line)
                    if not numbers:
                        continue
                    self.lines.append((index, numbers))
                    for o in numbers:
                        entries[1.0].append((abs(o.value), index, o))
                        entries[0.01 if o.unit == "%" else 100.0].append((abs(o.value) * (0.01 if o.unit == "%" else 100.0), index, o))
        self.entries = {f: sorted(e, key=lambda t: t[0]) for f, e in entries.items()}
        self.keys = {f: [t[0] for t in e] for f, e in self.entries.items()}

    def any_match(self, prose: Number, before: int) -> bool:
        """Is there an output number of a cell with index < `before` that shows `prose`?"""
        half = prose.quantum / 2 * (1 + 1e-9) + 1e-12
        target = abs(prose.value)
        for f in (1.0, 100.0) if prose.unit in ("%", "points") else (1.0, 0.01):
            keys = self.keys[f]
            for k in range(bisect.bisect_left(keys, target - half), bisect.bisect_right(keys, target + half)):
                _, index, out = self.entries[f][k]
                if index < before and matches(prose, out):
                    return True
        return False

    def pair_found(self, mean: Number, spread: Number, before: int) -> bool:
        """`mean ± spread`: a number showing the mean followed directly by one showing the spread, on one line."""
        return any(matches(mean, a) and matches(spread, b)
                   for index, line in self.lines if index < before for a, b in zip(line, line[1:]))

    def constants_of(self, indices) -> set[float]:
        out: set[float] = set()
        for i in indices:
            out |= self.constants.get(i, set())
        return out

    def pool(self, before: int) -> Pool:
        return Pool([line for index, line in self.lines if index < before], self.constants_of(range(before)))


def _candidates(prose: Number, out: Number) -> list[tuple[float, float]]:
    """(value, quantum) readings of an output number on the prose number's scale."""
    readings = [(out.value, out.quantum)]
    if prose.unit in ("%", "points") and out.unit != "%":
        readings.append((100 * out.value, 100 * out.quantum))
    if prose.unit not in ("%", "points") and out.unit == "%":
        readings.append((out.value / 100, out.quantum / 100))
    return readings


def matches(prose: Number, out: Number) -> bool:
    """Does the output number `out` show the prose number `prose`, at the precision the prose shows?"""
    if prose.value != 0 and out.value != 0:
        if prose.sign == "-" and out.value > 0:
            return False
        if prose.sign == "+" and out.value < 0:
            return False
    target, q = abs(prose.value), prose.quantum
    for value, quantum in _candidates(prose, out):
        if quantum > q * (1 + 1e-9):  # the output is coarser than the prose: the prose's digit is not shown
            continue
        if abs(abs(value) - target) <= q / 2 * (1 + 1e-9) + 1e-12:
            return True
    return False


def matches_constant(prose: Number, constants: set[float]) -> bool:
    target = abs(prose.value)
    scales = (1, 100) if prose.unit in ("%", "points") else (1,)
    return any(abs(c * s - target) <= 1e-9 * max(1.0, target) for c in constants for s in scales)


# --------------------------------------------------------------------------------------------------
# The audit
# --------------------------------------------------------------------------------------------------
@dataclass
class Finding:
    notebook: str
    cell: int
    number: str
    context: str
    kind: str = "number"  # "number", or "pair" for A ± B found separately but never together
    prose: Number | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.notebook, self.number, self.context)


@dataclass
class NotebookAudit:
    notebook: str
    counts: Counter = field(default_factory=Counter)
    unmatched: list[Finding] = field(default_factory=list)
    allowed: list[tuple[Finding, str]] = field(default_factory=list)
    allow_used: Counter = field(default_factory=Counter)
    allow_seen: Counter = field(default_factory=Counter)  # entries whose number and context occur at all
    pools: dict[int, Pool] = field(default_factory=dict)


def context_of(source: str, start: int, end: int) -> str:
    snippet = source[max(0, start - CONTEXT):end + CONTEXT]
    return re.sub(r"\s+", " ", snippet).strip()


def _allowed(notebook: str, number: str, context: str) -> int | None:
    for i, (text, around, _reason) in enumerate(ALLOW.get(notebook, [])):
        if text == number and around in context:
            return i
    return None


MATCHED = ("output", "source", "code below", "preview")


def audit_notebook(path: Path, keep_pools: bool = False) -> NotebookAudit:
    nb = nbformat.read(path, as_version=4)
    cells = nb.cells
    result = NotebookAudit(path.name)
    code = CodeNumbers(cells)
    first_code = next((i for i, c in enumerate(cells) if c.cell_type == "code"), len(cells))
    everything = code.constants_of(range(len(cells)))
    above: set[float] = set()
    for index, cell in enumerate(cells):
        if cell.cell_type == "code":
            above |= code.constants[index]
            continue
        if cell.cell_type != "markdown":
            continue
        # the introduction (markdown above the first code cell) is matched against the whole notebook
        preview = index < first_code
        before = len(cells) if preview else index
        constants = everything if preview else above
        below: set[float] = set()  # the settings of the code cells this text introduces
        for j in range(index + 1, len(cells)):
            if cells[j].cell_type == "markdown":
                break
            below |= code.constants.get(j, set())
        if keep_pools:
            result.pools[index] = code.pool(before)
        source = cell.source
        text, math_spans = mask_markdown(source)
        references = reference_spans(text)
        names: list = []
        numbers = parse_numbers(text, names)
        result.counts["found"] += len(numbers)
        result.counts["name"] += len(names)
        for num in numbers:
            num.in_math = any(a <= num.start < b for a, b in math_spans)
        pair_of = {}  # index of a spread -> index of its mean
        for i, (a, b) in enumerate(zip(numbers, numbers[1:])):
            if PM.match(text[a.end:b.start]):
                pair_of[i + 1] = i
                if not b.unit and a.unit:
                    b.unit = a.unit
                elif not a.unit and b.unit in ("%", "points"):
                    a.unit = b.unit
        status: dict[int, str] = {}
        for i, num in enumerate(numbers):
            rule = exemption(num, text, references)
            if rule:
                status[i] = rule
            elif code.any_match(num, before):
                status[i] = "preview" if preview else "output"
            elif matches_constant(num, constants):
                status[i] = "preview" if preview else "source"
            elif matches_constant(num, below):
                status[i] = "code below"
            else:
                status[i] = "unmatched"
        # A ± B: both found, but never next to each other in one output line
        for i, j in pair_of.items():
            if status[i] in ("output", "preview") and status[j] in ("output", "preview") \
                    and not code.pair_found(numbers[j], numbers[i], before):
                status[i] = status[j] = "pair"
        for i, num in enumerate(numbers):
            s = status[i]
            # an ALLOW entry still describes its number when an output happens to match it too
            # (e.g. "30 epochs" once a latency ratio of 30x is printed above): it is not stale
            seen = _allowed(path.name, num.text, context_of(source, num.start, num.end))
            if seen is not None:
                result.allow_seen[seen] += 1
            if s in EXEMPT_RULES:
                result.counts[s] += 1
                continue
            result.counts["checked"] += 1
            if s in MATCHED:
                result.counts[s] += 1
                continue
            if s == "pair" and i in pair_of.values():
                continue  # reported once, at the spread
            if s == "pair":
                mean = numbers[pair_of[i]]
                shown = re.sub(r"\s+", " ", source[mean.start:num.end])
                finding = Finding(path.name, index, shown, context_of(source, mean.start, num.end), "pair", num)
            else:
                finding = Finding(path.name, index, num.text, context_of(source, num.start, num.end), prose=num)
            n = 2 if s == "pair" else 1
            allow = _allowed(path.name, finding.number, finding.context)
            if allow is not None:
                result.counts["allowed"] += n
                result.allow_used[allow] += 1
                result.allowed.append((finding, ALLOW[path.name][allow][2]))
            else:
                result.counts["unmatched"] += n
                result.unmatched.append(finding)
    return result


def notebooks(solutions: Path = SOLUTIONS) -> list[Path]:
    return sorted(solutions.glob("*.ipynb"))


def audit_all(keep_pools: bool = False, solutions: Path = SOLUTIONS) -> dict[str, NotebookAudit]:
    return {p.name: audit_notebook(p, keep_pools) for p in notebooks(solutions)}


def unused_allow_entries(audits: dict[str, NotebookAudit]) -> list[str]:
    stale = []
    for name, entries in ALLOW.items():
        audit = audits.get(name)
        for i, (number, around, reason) in enumerate(entries):
            if audit is None or not (audit.allow_used[i] or audit.allow_seen[i]):
                stale.append(f"{name}: ALLOW entry {number!r} around {around!r} ({reason}) matches nothing any more")
    return stale


# --------------------------------------------------------------------------------------------------
# The pending file
# --------------------------------------------------------------------------------------------------
def load_pending(path: Path = PENDING) -> dict[str, list[dict]]:
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))["pending"]


def pending_keys(pending: dict[str, list[dict]]) -> Counter:
    return Counter((nb, e["number"], e["context"]) for nb, entries in pending.items() for e in entries)


def write_pending(audits: dict[str, NotebookAudit], path: Path = PENDING) -> int:
    old = {(nb, e["number"], e["context"]): e for nb, entries in load_pending(path).items() for e in entries}
    pending = {}
    for name, audit in audits.items():
        entries = []
        for f in audit.unmatched:
            entry = {"cell": f.cell, "number": f.number, "context": f.context}
            if f.kind == "pair":
                entry["kind"] = "pair"
            kept = old.get(f.key, {})
            for k in ("class", "note"):
                if k in kept:
                    entry[k] = kept[k]
            entries.append(entry)
        if entries:
            pending[name] = entries
    doc = {
        "about": "Numbers in the prose of solutions/*.ipynb with no match in the outputs (or code) above them, "
                 "accepted for now (issue 12, item 5). tests/test_numbers.py fails on any other unmatched "
                 "number and on any entry here that no longer occurs: fix the prose or the outputs, then run "
                 f"`{REGENERATE}`. class: a = wrong number in the prose, b = right but printed only below / "
                 "in another lesson / in a figure or results/, c = not a result (move it to ALLOW in tests/numbers_audit.py). "
                 "'cell' is informative (the index of the markdown cell); the key is notebook, number, context.",
        "pending": pending,
    }
    dump_pending(doc, path)
    return sum(len(v) for v in pending.values())


def dump_pending(doc: dict, path: Path = PENDING) -> None:
    """The pending file with one entry per line, so that a fix shows as a one-line diff."""
    lines = ["{", f' "about": {json.dumps(doc["about"], ensure_ascii=False)},', ' "pending": {']
    for i, (name, entries) in enumerate(doc["pending"].items()):
        lines.append(f"  {json.dumps(name)}: [")
        lines += [f"   {json.dumps(e, ensure_ascii=False)}{',' if j < len(entries) - 1 else ''}" for j, e in enumerate(entries)]
        lines.append("  ]" + ("," if i < len(doc["pending"]) - 1 else ""))
    lines += [" }", "}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------------
# The human report: per notebook, each unmatched number with hints for the writer
# --------------------------------------------------------------------------------------------------
def _json_numbers(obj, prefix=""):
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)):
        yield prefix, float(obj)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _json_numbers(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _json_numbers(v, f"{prefix}[{i}]")


def _parsed_outputs(cells) -> list[tuple[int, list[Number]]]:
    return [(i, [o for t in output_texts(c) for line in t.splitlines() for o in parse_numbers(line)])
            for i, c in enumerate(cells) if c.cell_type == "code"]


def _where_else(finding: Finding, parsed: dict[str, list], results: dict[str, list]) -> list[str]:
    num = finding.prose
    if num is None:
        return []
    hints = []
    below = [i for i, outs in parsed[finding.notebook] if i > finding.cell and any(matches(num, o) for o in outs)]
    if below:
        hints.append(f"in the outputs of cell(s) {below[:4]} below")
    others = [name for name, cells in parsed.items() if name != finding.notebook
              and any(matches(num, o) for _, outs in cells for o in outs)]
    if others:
        hints.append("in the outputs of " + ", ".join(n.split("_")[0] for n in others[:6]))
    in_json = [f"{file}:{key}" for file, items in results.items() for key, v in items
               if matches(num, Number("", v, 10.0 ** -12, "-" if v < 0 else "", "", 0, 0, False))]
    if in_json:
        hints.append("in " + ", ".join(in_json[:2]))
    return hints


def _nearest(finding: Finding, pool: Pool, n: int = 3) -> list[str]:
    num = finding.prose
    if num is None or not pool.lines:
        return []
    scored = []
    for line in pool.lines:
        for o in line:
            for value, _q in _candidates(num, o):
                scored.append((abs(abs(value) - abs(num.value)) / max(abs(num.value), 1e-9), o.text))
    seen, out = set(), []
    for _, text in sorted(scored):
        if text not in seen:
            seen.add(text)
            out.append(text)
        if len(out) == n:
            break
    return out


def report(audits: dict[str, NotebookAudit], out=sys.stdout, solutions: Path = SOLUTIONS) -> None:
    pending = load_pending()
    notes = {(nb, e["number"], e["context"]): e for nb, entries in pending.items() for e in entries}
    parsed = {p.name: _parsed_outputs(nbformat.read(p, as_version=4).cells) for p in notebooks(solutions)}
    results = {p.name: list(_json_numbers(json.loads(p.read_text())))
               for p in sorted((solutions.parent / "results").glob("*.json"))}
    total = Counter()
    for audit in audits.values():
        total.update(audit.counts)
    print("Numbers in the prose of solutions/*.ipynb\n", file=out)
    print(f"numbers read: {total['found']} (plus {total['name']} parts of names, not read as numbers)", file=out)
    print("exempt by a general rule: " + ", ".join(f"{r} {total[r]}" for r in EXEMPT_RULES), file=out)
    print(f"checked: {total['checked']}: matched {sum(total[k] for k in MATCHED)} (outputs above "
          f"{total['output']}, code above {total['source']}, code right below {total['code below']}, "
          f"introduction against the whole notebook {total['preview']}), allow-listed {total['allowed']}, "
          f"unmatched {total['unmatched']}\n", file=out)
    for name, audit in audits.items():
        if not audit.unmatched:
            continue
        c = audit.counts
        print(f"== {name}: {c['checked']} checked, {sum(c[k] for k in MATCHED)} matched, {c['allowed']} "
              f"allow-listed, {c['unmatched']} unmatched", file=out)
        for f in audit.unmatched:
            entry = notes.get(f.key, {})
            label = f"({entry['class']}) " if "class" in entry else ""
            print(f"  [{f.cell}] {label}{f.number!r}{' (± pair not together in one output line)' if f.kind == 'pair' else ''}",
                  file=out)
            print(f"        ...{f.context}...", file=out)
            if "note" in entry:
                print(f"        note: {entry['note']}", file=out)
            pool = audit.pools.get(f.cell)
            if pool is not None:
                near = _nearest(f, pool)
                if near:
                    print(f"        nearest outputs above: {', '.join(near)}", file=out)
            hints = _where_else(f, parsed, results)
            if hints:
                print(f"        found {'; '.join(hints)}", file=out)
        print(file=out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--report", action="store_true", help="print every unmatched number with hints")
    parser.add_argument("--write-pending", action="store_true", help=f"rewrite {PENDING.relative_to(ROOT)}")
    parser.add_argument("--solutions", type=Path, default=SOLUTIONS,
                        help="the notebooks to read (default: solutions/), e.g. an export of a commit")
    args = parser.parse_args(argv)
    audits = audit_all(keep_pools=args.report, solutions=args.solutions)
    if args.write_pending:
        n = write_pending(audits)
        print(f"wrote {n} pending entries to {PENDING.relative_to(ROOT)}")
    if args.report or not args.write_pending:
        report(audits, solutions=args.solutions)
    for line in unused_allow_entries(audits):
        print("stale:", line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
