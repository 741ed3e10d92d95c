"""What every checker does, written once: call the learner's function, show its error, compare, diagnose.

A checker runs the learner's function on fixed inputs (:func:`call`: inputs cloned, an exception
shown with the learner's own line, an in-place change of an input refused), checks the type and
shape of what came back (:func:`tensor_output`), compares it with the reference (:func:`close`), and
when it differs looks for the simplest combination of known mistakes that reproduces every output
(:func:`diagnose` over :class:`Variant` hypotheses, :func:`explain`).
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .. import mistakes as catalogue

RTOL, ATOL = 1e-4, 1e-6

IN_PLACE_FEATURES = catalogue.message("answer.in_place_features")
"""The fix an in-place change of an input gets, by default (:func:`call`'s ``in_place``)."""


def name_of(fn: Callable, default: str) -> str:
    """The learner's name for ``fn`` (``default`` for a lambda or a nameless callable)."""
    name = getattr(fn, "__name__", "")
    return default if not name or name == "<lambda>" else name


def fmt(x) -> str:
    """A short rendering of a tensor or number for messages (rows kept as rows, up to 12 values)."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dim() == 0:
            return f"{float(x):.6g}"
        if x.numel() > 12:
            return f"a tensor of shape {tuple(x.shape)}"
        return "[" + ", ".join(fmt(v) for v in x) + "]"
    if isinstance(x, float):
        return f"{x:.6g}"
    return repr(x)


def mistake(mistake_id: str, **fields) -> str:
    """What a checker says of a mistake: its entry in :mod:`kdcourse.mistakes`, filled in with ``fields``
    (``name``: the learner's function, ``shown``: the case, ...)."""
    return catalogue.message(mistake_id, **fields)


def fail(mistake_id: str, **fields) -> AssertionError:
    """The ``AssertionError`` a checker raises for a mistake (:func:`mistake`): ``raise fail(id, name=name)``."""
    return AssertionError(mistake(mistake_id, **fields))


def randn(*shape: int, seed: int) -> torch.Tensor:
    """Fixed random inputs: the same numbers on every machine and every call."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def learner_frame(error: BaseException) -> traceback.FrameSummary:
    """The deepest frame of ``error``'s traceback outside PyTorch and this package: the learner's own
    line rather than torch's internals or a checker's (falls back on the deepest frame)."""
    frames = traceback.extract_tb(error.__traceback__)
    inside = (os.path.dirname(torch.__file__) + os.sep, os.path.dirname(os.path.dirname(__file__)) + os.sep)
    return next((f for f in reversed(frames) if not f.filename.startswith(inside)), frames[-1])


def error_text(name: str, shown: str, error: BaseException) -> str:
    """``name(shown) raised X: ...`` and the learner's line that raised it."""
    where = learner_frame(error)
    return f"{name}({shown}) raised {type(error).__name__}: {error}\n  (line {where.lineno}: {where.line})"


def not_implemented(name: str, error: Exception) -> AssertionError:
    return AssertionError(mistake("answer.not_implemented", name=name, error=error))


def try_call(fn: Callable, args: tuple, name: str | None = None, shown: str | None = None,
             in_place: str = IN_PLACE_FEATURES):
    """``(output, None)`` or ``(None, exception)``; inputs are cloned (lists copied), and an input changed in place is an
    ``AssertionError`` saying ``in_place`` (the example and the fix). ``NotImplementedError`` passes through."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    clones = tuple(a.clone() if isinstance(a, torch.Tensor) else list(a) if isinstance(a, list) else a for a in args)
    try:
        out = fn(*clones)
    except NotImplementedError:
        raise
    except Exception as error:  # reported to the learner by the caller
        return None, error
    for original, passed in zip(args, clones):
        if isinstance(original, torch.Tensor) and not torch.equal(original, passed):
            who = f"{name}({shown})" if name and shown else name or name_of(fn, "your function")
            raise AssertionError(mistake("answer.changed_input_in_place", who=who, in_place=in_place))
    return out, None


def call(fn: Callable, name: str, args: tuple, shown: str, hint: Callable | None = None,
         in_place: str = IN_PLACE_FEATURES):
    """Call the learner's function; turn an exception into a message that shows it (``hint(error)``
    may add the likely cause and its fix)."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    try:
        out, error = try_call(fn, args, name, shown, in_place)
    except NotImplementedError as error:
        raise not_implemented(name, error) from None
    if error is not None:
        extra = hint(error) if hint is not None else None
        raise AssertionError(error_text(name, shown, error) + (f"\n{extra}" if extra else "")) from error
    return out


def close(a, b, rtol: float = RTOL, atol: float = ATOL) -> bool:
    """Same shape and equal within the tolerances (NaN equal to NaN); ``False`` for anything but tensors."""
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        return False
    a, b = a.detach().double(), b.detach().double()
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True))


@dataclass(frozen=True)
class Variant:
    """One hypothesis: its mistakes (empty = an accepted answer) and the function that makes them.

    Each mistake is an id of :data:`kdcourse.mistakes.CATALOGUE` (its message filled in with the case's
    numbers) or the message itself; ``id`` names a one-mistake variant in tests.
    """

    mistakes: tuple[str, ...]
    make: Callable
    """The function that makes the mistakes (or computes the accepted answer)."""
    id: str = ""

    @property
    def message(self) -> str:
        """The message of a one-mistake row (its catalogue text when it names a catalogue id)."""
        (text,) = self.mistakes
        return catalogue.message(text) if text in catalogue.CATALOGUE else text


def row(id: str, make: Callable) -> Variant:
    """A table row: one mistake of the catalogue (its id; the message that names it and says the fix is its
    entry in :mod:`kdcourse.mistakes`) and a function that makes it."""
    return Variant((id,), make, id)


def accepted(make: Callable) -> Variant:
    """A table row for a right answer (the reference, or another way to compute it)."""
    return Variant((), make)


def diagnose(outputs: Sequence, inputs: Sequence[tuple], variants: Sequence[Variant],
             same: Callable = close) -> list[Variant]:
    """The variants, fewest mistakes first, reproducing every output that is not ``None`` (``same``
    compares two outputs)."""
    cases = [(o, a) for o, a in zip(outputs, inputs) if o is not None]
    found: list[Variant] = []
    for variant in sorted(variants, key=lambda v: len(v.mistakes)):
        if found and len(variant.mistakes) > len(found[0].mistakes):
            break  # the simplest explanation wins
        try:
            if cases and all(same(o, variant.make(*a)) for o, a in cases):
                found.append(variant)
        except Exception:  # a hypothesis that cannot be computed on these inputs explains nothing
            continue
    return found


def explain(name: str, found: Sequence[Variant], numbers: dict | None = None) -> str | None:
    """``name: the mistake`` or ``name has N mistakes:`` and a list; ``None`` when nothing was found.
    Catalogue ids are filled in with ``numbers`` (``T``, ``B``, ``C``, ``alpha``: :func:`kdcourse.mistakes.message`)."""
    if not found or not found[0].mistakes:
        return None
    texts = [catalogue.message(m, **(numbers or {})) if m in catalogue.CATALOGUE else m for m in found[0].mistakes]
    if len(texts) == 1:
        return f"{name}: {texts[0]}"
    return "\n".join([f"{name} has {len(texts)} mistakes:"] + [f"  - {m}" for m in texts])


def generic(name: str, shown: str, expected: torch.Tensor, got: torch.Tensor) -> str:
    """The message when no known mistake explains a wrong value: both values and their ratio."""
    text = f"{name}({shown}) returned {fmt(got)}, expected {fmt(expected)}."
    if expected.dim() == 0 and got.dim() == 0 and float(got) != 0:
        text += f" (ratio expected / got = {float(expected) / float(got):.4g})"
    return text + " No classic mistake explains this; compare your code with the formula above."


def unit_rows_note(out: torch.Tensor) -> str:
    """`` Its rows have L2 norms ..., not 1.`` when the rows of ``out`` are not unit vectors, else ``""``."""
    norms = out.detach().norm(dim=1)
    return "" if torch.allclose(norms, torch.ones_like(norms), atol=1e-4) else f" Its rows have L2 norms {fmt(norms)}, not 1."


def tensor_output(name: str, shown: str, out, expected_shape: Sequence[int] | None = None,
                  shape_hints: dict | None = None, finite: bool = True,
                  numpy_hint: str = mistake("answer.numpy")) -> torch.Tensor:
    """Type check (and, if given, shape check) of a returned tensor, with hints for the usual slips;
    ``finite=True`` also refuses NaN and infinite values."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    if not isinstance(out, torch.Tensor):
        hint = ""
        if isinstance(out, (float, int)):
            hint = " " + mistake("answer.returned_a_number")
        elif out is None:
            hint = " " + mistake("answer.returned_none")
        elif type(out).__module__.startswith("numpy"):
            hint = " " + numpy_hint
        raise fail("answer.not_a_tensor", name=name, shown=shown, type=type(out).__name__, hint=hint)
    if expected_shape is not None and tuple(out.shape) != tuple(expected_shape):
        hint = (shape_hints or {}).get(tuple(out.shape), "")
        raise fail("answer.wrong_shape", name=name, shown=shown, got=tuple(out.shape), expected=tuple(expected_shape),
                   hint=f" {hint}" if hint else "")
    if finite and not torch.isfinite(out).all():
        raise fail("answer.not_finite", name=name, shown=shown, got=fmt(out))
    return out


# ------------------------------------------------------------------ a loss of the student's features


def scalar_output(name: str, shown: str, out, batch: int) -> torch.Tensor:
    """A loss must be one number (a 0-d tensor)."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    out = tensor_output(name, shown, out)
    if out.dim() != 0:
        hint = ""
        if out.numel() == batch:
            hint = " " + mistake("answer.one_value_per_example")
        elif out.numel() == 1:
            hint = " " + mistake("answer.one_element")
        raise fail("answer.not_a_scalar", name=name, shown=shown, out_shape=tuple(out.shape), hint=hint)
    return out


def check_gradient(name: str, loss: torch.Tensor, wrt: torch.Tensor, what: str) -> None:
    """The loss must reach ``wrt`` (the student's features) with a finite, non-zero gradient."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    if not loss.requires_grad:
        raise fail("answer.no_graph", name=name, what=what)
    (grad,) = torch.autograd.grad(loss, wrt, allow_unused=True, retain_graph=True)
    if grad is None:
        raise fail("answer.no_gradient", name=name, what=what)
    if not torch.isfinite(grad).all():
        raise fail("answer.nan_gradient", name=name, what=what)
    if not grad.abs().sum() > 0:
        raise fail("answer.zero_gradient", name=name, what=what)


def gradient_to(what: str, index: int = 0) -> Callable:
    """An ``on_match`` check: the loss of the first case reaches argument ``index`` (``what``) with a
    finite, non-zero gradient."""
    def on_match(exercise: Exercise, name: str, fn: Callable) -> None:
        __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
        case = list(exercise.cases[0])
        wrt = case[index] = case[index].clone().requires_grad_(True)
        check_gradient(name, fn(*case), wrt, what)
    return on_match


def loss_output(name: str, shown: str, out, case: tuple) -> torch.Tensor:
    """The default ``output`` check: one number (the batch is the first argument's length)."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    return scalar_output(name, shown, out, len(case[0]))


def at_case(exercise: Exercise, out, expected, case: tuple) -> str:
    """A ``quote``: the case and both values, on a line of their own."""
    return f"\n  (at {exercise.show(case)}: got {fmt(out)}, expected {fmt(expected)})"


def ratio(expected: torch.Tensor, got: torch.Tensor) -> str:
    """`` (ratio expected / got = r)`` for two numbers, ``""`` when ``got`` is 0."""
    return f" (ratio expected / got = {float(expected) / float(got):.4g})" if float(got) != 0 else ""


def compare_with(advice: str) -> Callable:
    """A ``fallback``: both values, their ratio, and ``advice`` (what to compare the code with)."""
    def fallback(exercise: Exercise, name: str, out, expected, case: tuple) -> str:
        return (f"{name}({exercise.show(case)}) returned {fmt(out)}, expected {fmt(expected)}{ratio(expected, out)}. "
                f"No classic mistake explains this; {advice}")
    return fallback


def first_row_fallback(advice: str) -> Callable:
    """A ``fallback`` for maps with unit rows: the first row of each, whether the rows have norm 1, ``advice``."""
    def fallback(exercise: Exercise, name: str, out, expected, case: tuple) -> str:
        return (f"{name}({exercise.show(case)}) returned first row {fmt(out[0])}, expected {fmt(expected[0])}."
                f"{unit_rows_note(out)} No classic mistake explains this; {advice}")
    return fallback


@dataclass(frozen=True)
class Exercise:
    """An exercise as data: ``fn(*case)`` is checked on ``cases`` against ``reference``, and a wrong
    answer is matched against ``variants()``, its known mistakes.

    ``show(case)`` says what a case is in a message; ``success`` is the ✓ line (``{name}``: the learner's
    function, ``{n}``: the number of cases); ``output(name, shown, out, case)`` checks what came back (a loss by default) and may refuse
    it with a message; ``on_match(exercise, name, fn)`` runs once every value is right (a gradient
    check); ``fallback(exercise, name, got, expected, case)`` is the message when no mistake explains a
    wrong value. The rest say what a table cannot: ``call_hint(case)`` and ``call_error(case)`` add to
    an exception's message; ``collect_errors`` keeps an exception as one case's outcome (a mistake may
    explain it; else it is shown with ``error_hint(error, case)``); ``same`` compares outputs;
    ``numbers(case)`` fills catalogue messages; ``quote(exercise, got, expected, case)`` is added after a
    named mistake (:func:`at_case`); ``quoted(outputs, expected)`` picks the case to quote; ``diagnose_on`` limits the diagnosis
    to the first cases; ``before_diagnosis(name, outputs, expected)`` may name a mistake first;
    ``afterword(name, fn)`` is added to any wrong-value message; ``reference_name`` is how the lesson
    names the reference when it stands in for a skipped exercise.
    """

    name: str
    reference: Callable
    cases: Sequence[tuple]
    show: Callable[[tuple], str]
    variants: Callable[[], list[Variant]]
    success: str
    fallback: Callable
    output: Callable = loss_output
    on_match: Callable | None = None
    call_hint: Callable[[tuple], Callable | None] = lambda case: None
    call_error: Callable[[tuple], str | None] = lambda case: None
    collect_errors: bool = False
    error_hint: Callable[[BaseException, tuple], str] = lambda error, case: ""
    same: Callable = close
    numbers: Callable[[tuple], dict] = lambda case: {}
    quote: Callable | None = None
    quoted: Callable | None = None
    diagnose_on: int | None = None
    before_diagnosis: Callable | None = None
    afterword: Callable[[str, Callable], str] | None = None
    in_place: str = IN_PLACE_FEATURES
    reference_name: str = ""
    """How the reference is named when it stands in for a skipped exercise (:mod:`.fallback`); by default
    its module and name, ``kdcourse.losses.kd_loss``."""

    @property
    def shown_reference(self) -> str:
        return self.reference_name or f"{self.reference.__module__}.{self.reference.__qualname__}"

    @property
    def mistakes(self) -> list[Variant]:
        """The table's one-mistake rows (the accepted answers and the combinations left out)."""
        return [v for v in self.variants() if len(v.mistakes) == 1]


def check(exercise: Exercise, fn: Callable) -> None:
    """Run ``fn`` on every case of ``exercise``: print one ✓ line when every value matches the reference
    (and ``on_match`` passes), else raise ``AssertionError`` with the simplest combination of known
    mistakes that reproduces every output, or the exercise's ``fallback`` when none does."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    name = name_of(fn, exercise.name)
    outputs, errors = [], []
    for case in exercise.cases:
        shown = exercise.show(case)
        if exercise.collect_errors:
            try:
                out, error = try_call(fn, case, name, shown, exercise.in_place)
            except NotImplementedError as e:
                raise not_implemented(name, e) from None
            if error is not None:
                outputs.append(None)
                errors.append((shown, error, case))
                continue
        else:
            try:
                out = call(fn, name, case, shown, exercise.call_hint(case), exercise.in_place)
            except AssertionError as error:
                extra = exercise.call_error(case)
                if extra is None:
                    raise
                raise AssertionError(f"{error}\n{extra}") from None
        outputs.append(exercise.output(name, shown, out, case))
    expected = [exercise.reference(*case) for case in exercise.cases]
    expected = [e.detach() if isinstance(e, torch.Tensor) else e for e in expected]
    wrong = [i for i, (o, e) in enumerate(zip(outputs, expected)) if o is None or not exercise.same(o, e)]
    if not wrong:
        if exercise.on_match is not None:
            exercise.on_match(exercise, name, fn)
        print(f"✓ {exercise.success.format(name=name, n=len(exercise.cases))}")
        return
    i = exercise.quoted(outputs, expected) if exercise.quoted else next(
        (j for j in wrong if outputs[j] is not None), wrong[0])
    message = exercise.before_diagnosis(name, outputs, expected) if exercise.before_diagnosis else None
    if message is None:
        upto = exercise.diagnose_on or len(outputs)
        found = diagnose(outputs[:upto], exercise.cases[:upto], exercise.variants(), exercise.same)
        message = explain(name, found, exercise.numbers(exercise.cases[i]))
        if message is not None and exercise.quote is not None:
            message += exercise.quote(exercise, outputs[i], expected[i], exercise.cases[i])
    if message is None and errors:
        # a KeyError names what was read from the wrong place: the most telling error, when there is one
        shown, error, case = next((e for e in errors if isinstance(e[1], KeyError)), errors[0])
        message = error_text(name, shown, error) + exercise.error_hint(error, case)
    if message is None:
        i = next(j for j in wrong if outputs[j] is not None) if exercise.quoted is None else i
        message = exercise.fallback(exercise, name, outputs[i], expected[i], exercise.cases[i])
        if exercise.afterword is not None:
            message += exercise.afterword(name, fn)
    raise AssertionError(message)


def tensor_like(shape_of: Callable[[tuple], Sequence[int]], hints: Callable[[tuple, object], dict] | None = None,
                finite: bool = True, **options) -> Callable:
    """An ``output`` check for a function that returns a tensor of shape ``shape_of(case)``;
    ``hints(case, out)`` maps a wrong shape to what it suggests (:func:`tensor_output`)."""
    def output(name: str, shown: str, out, case: tuple) -> torch.Tensor:
        __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
        return tensor_output(name, shown, out, shape_of(case), hints(case, out) if hints else None, finite, **options)
    return output


def checker(exercise: Exercise, doc: str) -> Callable[[Callable], None]:
    """The learner's ``check_<name>(fn)`` of a table exercise: :func:`check` on ``exercise``, with ``doc``."""
    def check_exercise(fn: Callable) -> None:
        __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
        check(exercise, fn)
    check_exercise.__name__ = check_exercise.__qualname__ = f"check_{exercise.name}"
    check_exercise.__doc__, check_exercise.__module__ = doc, sys._getframe(1).f_globals["__name__"]
    return check_exercise
