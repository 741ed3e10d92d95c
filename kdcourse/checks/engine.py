"""What every checker does, written once: call the learner's function, show its error, compare, diagnose.

A checker runs the learner's function on fixed inputs (:func:`call`: inputs cloned, an exception
shown with the learner's own line, an in-place change of an input refused), checks the type and
shape of what came back (:func:`tensor_output`), compares it with the reference (:func:`close`), and
when it differs looks for the simplest combination of known mistakes that reproduces every output
(:func:`diagnose` over :class:`Variant` hypotheses, :func:`explain`).
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

RTOL, ATOL = 1e-4, 1e-6

IN_PLACE_FEATURES = ("an in-place op such as `x.pow_(2)`, `x /= n` or `x[...] = ...`). Compute new tensors "
                     "instead: the caller's features must stay as they were.")
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
    return AssertionError(
        f"{name} is not implemented yet ({error}). Replace the `raise NotImplementedError` line with "
        "your code, run that cell again, then run this check."
    )


def try_call(fn: Callable, args: tuple, name: str | None = None, shown: str | None = None,
             in_place: str = IN_PLACE_FEATURES):
    """``(output, None)`` or ``(None, exception)``; inputs are cloned, and an input changed in place is an
    ``AssertionError`` saying ``in_place`` (the example and the fix). ``NotImplementedError`` passes through."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    clones = tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)
    try:
        out = fn(*clones)
    except NotImplementedError:
        raise
    except Exception as error:  # reported to the learner by the caller
        return None, error
    for original, passed in zip(args, clones):
        if isinstance(original, torch.Tensor) and not torch.equal(original, passed):
            who = f"{name}({shown})" if name and shown else name or name_of(fn, "your function")
            raise AssertionError(f"{who} changed its input tensor in place ({in_place}")
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


@dataclass
class Variant:
    """One hypothesis: its mistakes (empty = an accepted answer) and what it would return."""

    mistakes: tuple[str, ...]
    fn: Callable


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
            if cases and all(same(o, variant.fn(*a)) for o, a in cases):
                found.append(variant)
        except Exception:  # a hypothesis that cannot be computed on these inputs explains nothing
            continue
    return found


def explain(name: str, found: Sequence[Variant]) -> str | None:
    """``name: the mistake`` or ``name combines N mistakes:`` and a list; ``None`` when nothing was found."""
    if not found or not found[0].mistakes:
        return None
    mistakes = found[0].mistakes
    if len(mistakes) == 1:
        return f"{name}: {mistakes[0]}"
    return "\n".join([f"{name} combines {len(mistakes)} mistakes:"] + [f"  - {m}" for m in mistakes])


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
                  numpy_hint: str = "Use torch operations and return a torch.Tensor (gradients cannot flow "
                                    "through NumPy).") -> torch.Tensor:
    """Type check (and, if given, shape check) of a returned tensor, with hints for the usual slips;
    ``finite=True`` also refuses NaN and infinite values."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    if not isinstance(out, torch.Tensor):
        hint = ""
        if isinstance(out, (float, int)):
            hint = " Did you call `.item()` or `float(...)`? Return the tensor, so gradients can flow."
        elif out is None:
            hint = " Did you forget the `return` statement?"
        elif type(out).__module__.startswith("numpy"):
            hint = " " + numpy_hint
        raise AssertionError(f"{name}({shown}) returned a {type(out).__name__}, expected a torch.Tensor.{hint}")
    if expected_shape is not None and tuple(out.shape) != tuple(expected_shape):
        hint = (shape_hints or {}).get(tuple(out.shape), "")
        raise AssertionError(
            f"{name}({shown}) returned shape {tuple(out.shape)}, expected {tuple(expected_shape)}. {hint}".rstrip()
        )
    if finite and not torch.isfinite(out).all():
        raise AssertionError(f"{name}({shown}) returned NaN or infinite values: {fmt(out)}.")
    return out


# ------------------------------------------------------------------ a loss of the student's features


def scalar_output(name: str, shown: str, out, batch: int) -> torch.Tensor:
    """A loss must be one number (a 0-d tensor)."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    out = tensor_output(name, shown, out)
    if out.dim() != 0:
        hint = ""
        if out.numel() == batch:
            hint = " It looks like one value per example: average over the batch as well (a single number)."
        elif out.numel() == 1:
            hint = " Return a 0-d tensor (e.g. `.mean()` or `.sum()`, or `.squeeze()`)."
        raise AssertionError(f"{name}({shown}) returned shape {tuple(out.shape)}; a loss is one number.{hint}")
    return out


def check_gradient(name: str, loss: torch.Tensor, wrt: torch.Tensor, what: str) -> None:
    """The loss must reach ``wrt`` (the student's features) with a finite, non-zero gradient."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    if not loss.requires_grad:
        raise AssertionError(
            f"{name}: no gradient reaches {what}. Did you call `.detach()`, `.item()` or compute under "
            "`torch.no_grad()`? The student learns only through this gradient."
        )
    (grad,) = torch.autograd.grad(loss, wrt, allow_unused=True, retain_graph=True)
    if grad is None:
        raise AssertionError(
            f"{name}: no gradient reaches {what}. Did you `.detach()` it (or use it under `torch.no_grad()`)? "
            "The student learns only through this gradient."
        )
    if not torch.isfinite(grad).all():
        raise AssertionError(
            f"{name}: the gradient with respect to {what} contains NaN. A square root or a division at "
            "zero (e.g. the distance of an example to itself) has an infinite derivative: clamp before "
            "`sqrt` (`d2.clamp_min(1e-12).sqrt()`) and normalise with `F.normalize`, which adds an eps."
        )
    if not grad.abs().sum() > 0:
        raise AssertionError(f"{name}: the gradient with respect to {what} is zero: the loss must depend on it.")


@dataclass(frozen=True)
class LossExercise:
    """A loss exercise as data: ``fn(student, teacher, *settings) -> a number``, checked on ``cases``
    against ``reference``, its classic mistakes in ``variants()``.

    ``show(case)`` says what a case is in a message; ``success`` ends the ✓ line; ``fallback(name,
    got, expected, case)`` is the message when no mistake explains a wrong value; ``afterword(name,
    fn)`` may add to any failure (e.g. a scale-invariance test); ``call_hint(case)`` is the ``hint``
    of :func:`call` and ``call_error(case)`` a line added to a call's error; the gradient of the first
    case must reach the student's input (``gradient_of`` names it).
    """

    name: str
    reference: Callable
    cases: Sequence[tuple]
    show: Callable[[tuple], str]
    variants: Callable[[], list[Variant]]
    success: str
    fallback: Callable[[str, torch.Tensor, torch.Tensor, tuple], str]
    gradient_of: str = "the student's features"
    call_hint: Callable[[tuple], Callable | None] = lambda case: None
    call_error: Callable[[tuple], str | None] = lambda case: None
    afterword: Callable[[str, Callable], str] | None = None


def check_loss(exercise: LossExercise, fn: Callable) -> None:
    """Run ``fn`` on every case of ``exercise``: print one ✓ line when it matches the reference and
    its gradient reaches the student, else raise ``AssertionError`` naming the likely mistake."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    name = name_of(fn, exercise.name)
    outputs = []
    for case in exercise.cases:
        shown = exercise.show(case)
        try:
            out = call(fn, name, case, shown, hint=exercise.call_hint(case))
        except AssertionError as error:
            extra = exercise.call_error(case)
            if extra is None:
                raise
            raise AssertionError(f"{error}\n{extra}") from None
        outputs.append(scalar_output(name, shown, out, len(case[0])))
    def gradient() -> None:
        __tracebackhide__ = True  # noqa: F841  (read by IPython and pytest from the frame)
        first = exercise.cases[0]
        s = first[0].clone().requires_grad_(True)
        check_gradient(name, fn(s, *first[1:]), s, exercise.gradient_of)

    fallback = exercise.fallback
    if exercise.afterword is not None:
        def fallback(name, out, e, case):  # noqa: F811  (the exercise's, with its afterword)
            __tracebackhide__ = True  # noqa: F841
            return exercise.fallback(name, out, e, case) + exercise.afterword(name, fn)
    judge(name, outputs, [exercise.reference(*case) for case in exercise.cases], exercise.cases,
          exercise.variants(), exercise.success, fallback, on_match=gradient)


def judge(name: str, outputs: Sequence, expected: Sequence, cases: Sequence[tuple], variants: Sequence[Variant],
          success: str, fallback: Callable[[str, torch.Tensor, torch.Tensor, tuple], str],
          on_match: Callable[[], None] | None = None) -> None:
    """The verdict on a checker's outputs: when every one matches its expected value, ``on_match()``
    (e.g. a gradient check) and the line ``✓ {name} matches the reference on N test cases{success}``;
    else ``AssertionError`` with the simplest combination of ``variants`` that explains the outputs,
    or ``fallback(name, got, expected, case)`` for the first wrong case when none does."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    if all(close(o, e) for o, e in zip(outputs, expected)):
        if on_match is not None:
            on_match()
        print(f"✓ {name} matches the reference on {len(cases)} test cases{success}")
        return
    message = explain(name, diagnose(outputs, cases, variants))
    if message is None:
        i = next(i for i, (o, e) in enumerate(zip(outputs, expected)) if not close(o, e))
        message = fallback(name, outputs[i], expected[i], cases[i])
    raise AssertionError(message)
