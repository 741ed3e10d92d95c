"""Checkers for lessons 03 (teacher and student) and 04 (distilling logits).

- :func:`check_count_parameters`: the learner's ``count_parameters(model) -> int``;
- :func:`check_accuracy`: the learner's ``accuracy(logits, labels) -> float``;
- :func:`check_kd_training_step`: the learner's
  ``kd_training_step(student, teacher, x, y, optimizer, T, alpha) -> float``.

Each runs the learner's function on small fixed models and inputs, compares with the reference
and, when they differ, raises ``AssertionError`` naming the likely mistake.

The KD step is checked with plain SGD (no momentum), so a parameter update is exactly
``-lr * gradient``: the checker reads the learner's gradient back from the update and compares
it with the gradients of the usual wrong losses (alpha swapped, ``T^2`` missing, ...).
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch
from torch import nn

from .. import mistakes as catalogue
from ..distill import accuracy
from ..losses import distillation_loss
from ..models import count_parameters
from . import engine
from .engine import accepted, row
from .logits import DISTILLATION_LOSS

__all__ = ["check_count_parameters", "check_accuracy", "check_kd_training_step"]


# ---------------------------------------------------------------- lesson 03: count_parameters


with torch.random.fork_rng(devices=[]):
    torch.manual_seed(0)
    # conv (with bias) + BatchNorm + conv (no bias) + linear: every kind of parameter and buffer
    _NET = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(1, 4, 3, padding=1), bn1=nn.BatchNorm2d(4), relu1=nn.ReLU(),
        conv2=nn.Conv2d(4, 6, 3, padding=1, bias=False), relu2=nn.ReLU(),
        pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), head=nn.Linear(6, 5)))
_COUNT_CASES = ((_NET,), (copy.deepcopy(_NET).requires_grad_(False),))  # 40 + 8 + 216 + 35 = 299 parameters


def _an_int(name: str, shown: str, out, case: tuple):
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    if isinstance(out, torch.Tensor):
        raise engine.fail("count_parameters.returned_tensor", name=name)
    if not isinstance(out, int):
        raise engine.fail("count_parameters.not_an_int", name=name, type=type(out).__name__, out=f"{out!r}")
    return out


def _count_variants() -> list[engine.Variant]:
    m = "count_parameters."
    return [
        accepted(count_parameters),
        row(m + "tensors", lambda net: len(list(net.parameters()))),
        row(m + "with_buffers", lambda net: count_parameters(net) + sum(b.numel() for b in net.buffers())),
        row(m + "weights_only",
            lambda net: sum(p.numel() for k, p in net.named_parameters() if k.endswith("weight"))),
        row(m + "no_batchnorm",
            lambda net: sum(p.numel() for k, p in net.named_parameters() if not k.startswith("bn"))),
        row(m + "trainable_only", lambda net: sum(p.numel() for p in net.parameters() if p.requires_grad)),
    ]


def _numbers(exercise, out, expected, case) -> str:
    return f"\n  (on {exercise.show(case)}: got {engine.fmt(out)}, expected {engine.fmt(expected)})"


COUNT_PARAMETERS = engine.Exercise(
    "count_parameters", count_parameters, _COUNT_CASES,
    show=lambda case: "a test network" if case[0] is _NET else "a frozen copy of the test network",
    variants=_count_variants, success=f"The test network has {count_parameters(_NET)} parameters.",
    fallback=lambda exercise, name, out, expected, case: (
        f"{name} returned {out} for {exercise.show(case)} with {expected} parameters. Add up p.numel() for every "
        "p in model.parameters()."),
    output=_an_int, same=lambda a, b: a == b, quote=_numbers,
    call_hint=lambda case: lambda error: engine.mistake("count_parameters.raised"),
)


check_count_parameters = engine.checker(COUNT_PARAMETERS, """
    Check ``count_parameters(model) -> int``: the number of scalars in ``model.parameters()``.

    Names the usual mistakes: counting tensors instead of scalars, leaving out biases or
    BatchNorm, adding the BatchNorm running statistics (buffers), counting only trainable
    parameters (a frozen teacher still has its size).
    """)


# ---------------------------------------------------------------- lesson 03: accuracy

_G = torch.Generator().manual_seed(3)
_LOGITS = torch.randn(12, 5, generator=_G)
_LABELS = _LOGITS.argmax(1).clone()
_LABELS[[1, 4, 7]] = (_LABELS[[1, 4, 7]] + 2) % 5  # 9 of 12 right
# every prediction right, and argmax over dim 0 fits the shapes (and gets 2 of 5 rows right)
_SQUARE = torch.randn(5, 5, generator=torch.Generator().manual_seed(0))
_ACCURACY_CASES = ((_LOGITS, _LABELS), (_SQUARE, _SQUARE.argmax(1)))


def _accuracy_variants() -> list[engine.Variant]:
    m = "accuracy."
    return [
        accepted(accuracy),
        row(m + "count", lambda z, y: int((z.argmax(1) == y).sum())),
        row(m + "percentage", lambda z, y: 100 * accuracy(z, y)),
        row(m + "error_rate", lambda z, y: 1 - accuracy(z, y)),
        row(m + "over_batch", lambda z, y: float((z.argmax(0) == y).float().mean())),
    ]


def _a_number(name: str, shown: str, out, case: tuple):
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    if isinstance(out, torch.Tensor):
        if out.numel() != 1:
            raise engine.fail("accuracy.tensor_of_matches", name=name, out_shape=tuple(out.shape))
        raise engine.fail("accuracy.returned_tensor", name=name)
    if isinstance(out, bool) or not isinstance(out, (int, float)):
        raise engine.fail("accuracy.not_a_float", name=name, type=type(out).__name__, out=f"{out!r}")
    return out


def _accuracy_fallback(exercise, name, out, expected, case) -> str:
    if case[0] is _SQUARE:
        return engine.mistake("accuracy.unexplained_square", out=out)
    return engine.mistake("accuracy.unexplained", name=name, out=out, expected=expected)


ACCURACY = engine.Exercise(
    "accuracy", accuracy, _ACCURACY_CASES,
    show=lambda case: f"logits of shape {tuple(case[0].shape)}, labels", variants=_accuracy_variants,
    success="accuracy = share of examples whose highest logit is the true class.",
    fallback=_accuracy_fallback, output=_a_number, quote=_numbers,
    same=lambda a, b: isinstance(a, (int, float)) and abs(a - b) < 1e-6, collect_errors=True,
    error_hint=lambda error, case: "\n" + (  # a shape error: most likely the arg-max over the batch
        engine.mistake("accuracy.argmax_over_batch_error") if "shape" in str(error) or "size" in str(error)
        else engine.mistake("accuracy.raised")),
)


check_accuracy = engine.checker(ACCURACY, """
    Check ``accuracy(logits, labels) -> float``: the fraction of rows whose arg-max is the label.""")


# ---------------------------------------------------------------- lesson 04: the KD training step


def _kd_setup():
    """Fixed student, teacher (as it would be right after its own training: train mode,
    gradients on) and two batches, all in float64 so that gradients compare tightly."""
    torch.manual_seed(1234)
    # with BatchNorm and dropout, so that running it in train mode leaves traces
    teacher = nn.Sequential(OrderedDict(fc1=nn.Linear(6, 16), bn=nn.BatchNorm1d(16), relu=nn.ReLU(),
                                        drop=nn.Dropout(0.5), fc2=nn.Linear(16, 4))).double()
    with torch.no_grad():
        for p in teacher.fc2.parameters():
            p.mul_(2.0)  # confident logits
        teacher.train()
        for _ in range(3):  # give BatchNorm non-trivial running statistics
            teacher(torch.randn(32, 6, dtype=torch.float64) * 2 + 1)
    student = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 4)).double().train()
    g = torch.Generator().manual_seed(99)
    batches = [(torch.randn(10, 6, generator=g, dtype=torch.float64),
                torch.randint(0, 4, (10,), generator=g)) for _ in range(2)]
    teacher.train()  # the step itself must put the teacher in eval mode
    return student, teacher, batches


def _variants(T: float, alpha: float):
    """(id, loss(s, t, y), message) for the reference, then for every one-mistake row of the distillation loss's
    table (:data:`kdcourse.checks.logits.DISTILLATION_LOSS`: alpha swapped, T^2 missing, CE at T, ...)."""
    rows = DISTILLATION_LOSS.mistakes
    return [("reference", lambda s, t, y: distillation_loss(s, t, y, T, alpha), "")] + [
        (v.mistakes[0], lambda s, t, y, f=v.make: f(s, t, y, T, alpha),
         catalogue.message(v.mistakes[0], T=T, alpha=alpha, C=4)) for v in rows]


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _grads(student: nn.Module, loss_fn, x, y, t_logits) -> list[torch.Tensor]:
    student = copy.deepcopy(student)
    student.zero_grad(set_to_none=True)
    loss_fn(student(x), t_logits, y).backward()
    return [p.grad.detach().clone() for p in student.parameters()]


def _close(a: list[torch.Tensor], b: list[torch.Tensor], tol: float = 1e-7) -> bool:
    return all(torch.allclose(u, v, rtol=1e-5, atol=tol) for u, v in zip(a, b))


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _step_hint(error: Exception) -> str | None:
    text = str(error)
    if "does not require grad" in text:
        return engine.mistake("kd_training_step.student_without_graph")
    if "backward through the graph a second time" in text:
        return engine.mistake("kd_training_step.backward_twice")
    return None


class _StepWatch:
    """What happened to the student during one call of the learner's step: its mode at every
    forward pass, whether a backward pass reached its parameters, and whether ``optimizer.step()``
    found any gradient to apply. The hooks are removed right after the call."""

    def __init__(self, student: nn.Module, optimizer: torch.optim.Optimizer):
        self.student, self.optimizer = student, optimizer
        self.modes: list[bool] = []  # student.training at each forward pass it can be trained through
        self.backward = False  # a backward pass computed gradients for the student's parameters
        self.steps = 0  # calls of optimizer.step()
        self.empty_steps = 0  # ... that found every gradient None or zero

    def __enter__(self):
        params = list(self.student.parameters())

        def on_step(optimizer, args, kwargs):
            self.steps += 1
            if all(p.grad is None or not p.grad.any() for p in params):
                self.empty_steps += 1

        def on_grad(grad):
            self.backward = True

        def on_forward(module, args):
            if torch.is_grad_enabled():  # an evaluation under torch.no_grad() trains nothing: not watched
                self.modes.append(module.training)

        self._handles = [self.student.register_forward_pre_hook(on_forward),
                         self.optimizer.register_step_pre_hook(on_step)]
        self._handles += [p.register_hook(on_grad) for p in params if p.requires_grad]
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        return False

    @property
    def ran_eval(self) -> bool:
        """The student's forward pass ran in eval mode."""
        return any(not training for training in self.modes)


def _call_step(fn, student, teacher, x, y, optimizer, T, alpha) -> tuple[object, _StepWatch]:
    __tracebackhide__ = True
    with _StepWatch(student, optimizer) as watch:
        returned = engine.call(fn, "kd_training_step", (student, teacher, x, y, optimizer, T, alpha),
                               "student, teacher, x, y, optimizer, T, alpha", _step_hint)
    return returned, watch


_STUDENT_TRAIN_MODE = engine.mistake("kd_training_step.student_train_mode")


def _check_student_mode(watch: _StepWatch, student: nn.Module) -> None:
    __tracebackhide__ = True
    if watch.ran_eval:
        raise engine.fail("kd_training_step.student_eval_before_forward", why=_STUDENT_TRAIN_MODE)
    if not student.training:
        raise engine.fail("kd_training_step.student_left_in_eval", why=_STUDENT_TRAIN_MODE)


def check_kd_training_step(kd_training_step, T: float = 3.0, alpha: float = 0.3, lr: float = 0.5) -> None:
    """Check ``kd_training_step(student, teacher, x, y, optimizer, T, alpha) -> float``.

    One step must: run the teacher frozen (eval mode, under ``torch.no_grad()``), compute
    ``alpha * T^2 * KL(p_t || p_s) + (1 - alpha) * CE(y, p_s)``, clear old gradients, back-propagate,
    update the student with ``optimizer`` and return the loss as a float.

    The checker hands over a teacher still in train mode with gradients on (as it would be right
    after its own training), runs two steps with SGD and compares every update with the
    reference; a mismatch is matched against the classic mistakes. It also watches the student's
    mode at its forward passes (it trains in train mode) and the order of ``backward`` and ``step``.
    """
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    student, teacher, batches = _kd_setup()
    variants = _variants(T, alpha)
    reference = variants[0][1]

    teacher_eval = copy.deepcopy(teacher).eval()
    with torch.no_grad():
        t_logits = [teacher_eval(x) for x, _ in batches]
    teacher_params, teacher_state = _params(teacher), _state(teacher)

    optimizer = torch.optim.SGD(student.parameters(), lr=lr)
    (x1, y1), (x2, y2) = batches
    before1, start = _params(student), copy.deepcopy(student)
    with torch.no_grad():
        expected_loss1 = float(reference(student(x1), t_logits[0], y1))
    ref_grads1 = _grads(student, reference, x1, y1, t_logits[0])

    returned, watch = _call_step(kd_training_step, student, teacher, x1, y1, optimizer, T, alpha)

    # --- the teacher must stay untouched
    if not all(torch.equal(a, b) for a, b in zip(teacher_params, _params(teacher))):
        raise engine.fail("kd_training_step.teacher_trained")
    moved = [k for k, v in _state(teacher).items() if not torch.equal(v, teacher_state[k])]
    if moved and (watch.ran_eval or not student.training):
        raise engine.fail("kd_training_step.student_eval_not_teacher", moved=', '.join(moved[:2]),
                             why=_STUDENT_TRAIN_MODE)
    if moved:
        raise AssertionError(_capital(catalogue.message("teacher_train_mode", moved=", ".join(moved[:2]))))
    if any(p.grad is not None for p in teacher.parameters()):
        raise AssertionError(_capital(catalogue.message("teacher_not_frozen")))

    # --- the student trains in train mode
    _check_student_mode(watch, student)

    # --- the student must have been updated with the reference gradient
    after1 = _params(student)
    if all(torch.equal(a, b) for a, b in zip(before1, after1)):
        grads = [p.grad for p in student.parameters()]
        cleared = all(g is None or not g.any() for g in grads)
        if watch.backward and watch.empty_steps:
            raise engine.fail("kd_training_step.zero_grad_after_backward")
        if not watch.backward:
            raise engine.fail("kd_training_step.no_backward")
        if watch.backward and cleared:
            raise engine.fail("kd_training_step.gradients_erased")
        raise engine.fail("kd_training_step.no_step")
    learner_grads1 = [(b - a) / lr for a, b in zip(after1, before1)]
    if not _close(learner_grads1, ref_grads1):
        for name, loss_fn, hint in variants[1:]:
            if _close(learner_grads1, _grads(start, loss_fn, x1, y1, t_logits[0])):
                raise AssertionError(f"Your update matches a wrong loss: {hint}")
        raise engine.fail("kd_training_step.unexplained")

    # --- the returned loss
    if isinstance(returned, torch.Tensor):
        raise engine.fail("kd_training_step.returned_tensor")
    if not isinstance(returned, float):
        raise engine.fail("kd_training_step.not_a_float", type=type(returned).__name__, returned=f"{returned!r}")
    if abs(returned - expected_loss1) > 1e-6 * max(1.0, abs(expected_loss1)):
        raise engine.fail("kd_training_step.returned_other_loss", returned=f"{returned:.6f}",
                             expected_loss1=f"{expected_loss1:.6f}")

    # --- a second step: old gradients must be cleared first
    ref_grads2 = _grads(student, reference, x2, y2, t_logits[1])
    before2 = _params(student)
    _, watch = _call_step(kd_training_step, student, teacher, x2, y2, optimizer, T, alpha)
    _check_student_mode(watch, student)
    learner_grads2 = [(b - a) / lr for a, b in zip(_params(student), before2)]
    if not _close(learner_grads2, ref_grads2):
        if _close(learner_grads2, [g2 + g1 for g1, g2 in zip(ref_grads1, ref_grads2)]):
            raise engine.fail("kd_training_step.gradients_accumulate")
        raise engine.fail("kd_training_step.state_between_calls")
    print("✓ the teacher stays frozen, the loss is alpha * T^2 * KL + (1 - alpha) * CE, "
        "and every step updates the student exactly like the reference.")
