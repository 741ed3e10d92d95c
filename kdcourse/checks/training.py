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
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from .. import mistakes as catalogue
from . import engine

__all__ = ["check_count_parameters", "check_accuracy", "check_kd_training_step"]


def _ok(message: str) -> None:
    print(f"✓ {message}")


def _fail(message: str) -> None:
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    raise AssertionError(message) from None


def _call(fn, name: str, *args, hint=None, shown: str = "..."):
    """The engine's call (:func:`kdcourse.checks.engine.call`): an exception becomes a message that
    shows the learner's line (``hint(error)`` may add the likely cause)."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    return engine.call(fn, name, args, shown, hint)


# ---------------------------------------------------------------- lesson 03: count_parameters


class _TinyConvNet(nn.Module):
    """Conv (with bias) + BatchNorm + conv (no bias) + linear: every kind of parameter and buffer."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1, bias=False)
        self.head = nn.Linear(6, 5)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.conv2(x))
        return self.head(x.mean((2, 3)))


def _reference_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def check_count_parameters(count_parameters) -> None:
    """Check ``count_parameters(model) -> int``: the number of scalars in ``model.parameters()``.

    Names the usual mistakes: counting tensors instead of scalars, leaving out biases or
    BatchNorm, adding the BatchNorm running statistics (buffers), counting only trainable
    parameters (a frozen teacher still has its size).
    """
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    torch.manual_seed(0)
    model = _TinyConvNet()
    frozen = copy.deepcopy(model).requires_grad_(False)
    expected = _reference_count(model)  # 40 + 8 + 216 + 35 = 299
    hint = lambda error: "Loop over model.parameters() and add up p.numel() for each tensor p."  # noqa: E731
    got = _call(count_parameters, "count_parameters", model, hint=hint, shown="a test network")
    got_frozen = _call(count_parameters, "count_parameters", frozen, hint=hint, shown="a frozen test network")
    for value in (got, got_frozen):
        if isinstance(value, torch.Tensor):
            _fail("count_parameters returned a tensor; return a Python int (e.g. int(...) or sum of p.numel()).")
        if not isinstance(value, int):
            _fail(f"count_parameters should return an int, got {type(value).__name__} ({value!r}).")
    params = list(model.parameters())
    buffers = sum(b.numel() for b in model.buffers())
    weights_only = sum(p.numel() for name, p in model.named_parameters() if name.endswith("weight"))
    no_bn = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("bn"))
    if got == len(params):
        _fail(f"You returned {got}, the number of parameter *tensors*. Count the scalars inside "
              "them: add up p.numel() for every p in model.parameters().")
    if got == expected + buffers:
        _fail(f"You returned {got} = {expected} parameters + {buffers} buffer values: the BatchNorm "
              "running statistics (model.buffers(), part of state_dict()) are not parameters. "
              "Use model.parameters().")
    if got == weights_only:
        _fail(f"You returned {got}: only the weights. Biases (and BatchNorm's weight and bias) are "
              "parameters too; add up p.numel() for every p in model.parameters().")
    if got == no_bn:
        _fail(f"You returned {got}: the BatchNorm layers' scale and shift are missing. They are "
              "learned parameters: count everything in model.parameters().")
    if got != expected:
        _fail(f"count_parameters returned {got} for a test network with {expected} parameters. "
              "Add up p.numel() for every p in model.parameters().")
    if got_frozen != expected:
        _fail(f"On a frozen copy of the network (requires_grad=False, like a teacher) you returned "
              f"{got_frozen} instead of {expected}. A frozen model still has its size: do not "
              "filter on p.requires_grad.")
    _ok(f"The test network has {expected} parameters.")


# ---------------------------------------------------------------- lesson 03: accuracy


def check_accuracy(accuracy) -> None:
    """Check ``accuracy(logits, labels) -> float``: the fraction of rows whose arg-max is the label."""
    __tracebackhide__ = True  # IPython and pytest hide this frame: the learner sees the message
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(12, 5, generator=g)
    labels = logits.argmax(1).clone()
    labels[[1, 4, 7]] = (labels[[1, 4, 7]] + 2) % 5  # 9 of 12 right
    expected = 0.75

    def hint(error):
        if "size" in str(error) or "shape" in str(error):
            return ("Logits have shape (examples, classes): take the arg-max over the classes, "
                    "logits.argmax(dim=1), not dim=0.")
        return "Compare logits.argmax(dim=1) with the labels and take the mean of the matches."

    got = _call(accuracy, "accuracy", logits, labels, hint=hint, shown="logits of shape (12, 5), labels")
    if isinstance(got, torch.Tensor):
        if got.numel() != 1:
            _fail(f"accuracy returned a tensor of shape {tuple(got.shape)}: reduce the matches to one "
                  "number with .float().mean(), then return it as a float.")
        _fail("accuracy returned a tensor; return a Python float (float(...) or .item()), so it "
              "prints and compares like a number.")
    if not isinstance(got, float):
        if isinstance(got, int) and got == 9:
            _fail("accuracy returned 9, the number of correct predictions; divide by the number of "
                  "examples (12 here) to get a fraction.")
        _fail(f"accuracy should return a float, got {type(got).__name__} ({got!r}).")
    if abs(got - 9) < 1e-6:
        _fail("accuracy returned 9.0, the number of correct predictions; divide by the number of "
              "examples (12 here) to get a fraction.")
    if abs(got - 100 * expected) < 1e-4:
        _fail(f"accuracy returned {got}, a percentage; return the fraction in [0, 1] ({expected}).")
    if abs(got - (1 - expected)) < 1e-6:
        _fail(f"accuracy returned {got}: the error rate (share of wrong predictions), not the accuracy.")
    if abs(got - expected) > 1e-6:
        _fail(f"accuracy returned {got} on 12 test rows where 9 arg-maxes match the labels "
              f"(expected {expected}). Use (logits.argmax(dim=1) == labels).float().mean().")
    # a second batch where argmax over dim 0 happens to fit the shapes
    square = torch.randn(5, 5, generator=g)
    square_labels = square.argmax(1)
    got_square = _call(accuracy, "accuracy", square, square_labels, hint=hint, shown="logits of shape (5, 5), labels")
    if abs(float(got_square) - 1.0) > 1e-6:
        _fail(f"On a 5 x 5 batch where every prediction is right you returned {float(got_square)}. "
              "Take the arg-max over the classes, dim=1 (each row is one example).")
    _ok("accuracy = share of examples whose highest logit is the true class.")


# ---------------------------------------------------------------- lesson 04: the KD training step


class _Teacher(nn.Module):
    """A teacher with BatchNorm and dropout, so running it in train mode leaves traces."""

    def __init__(self, d_in: int = 6, n_classes: int = 4):
        super().__init__()
        self.fc1 = nn.Linear(d_in, 16)
        self.bn = nn.BatchNorm1d(16)
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(16, n_classes)

    def forward(self, x):
        return self.fc2(self.drop(torch.relu(self.bn(self.fc1(x))))) * 2.0


def _kd_setup():
    """Fixed student, teacher (as it would be right after its own training: train mode,
    gradients on) and two batches, all in float64 so that gradients compare tightly."""
    torch.manual_seed(1234)
    teacher = _Teacher().double()
    with torch.no_grad():
        teacher.train()
        for _ in range(3):  # give BatchNorm non-trivial running statistics
            teacher(torch.randn(32, 6, dtype=torch.float64) * 2 + 1)
    student = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 4)).double().train()
    g = torch.Generator().manual_seed(99)
    batches = [(torch.randn(10, 6, generator=g, dtype=torch.float64),
                torch.randint(0, 4, (10,), generator=g)) for _ in range(2)]
    teacher.train()  # the step itself must put the teacher in eval mode
    return student, teacher, batches


def _soft_term(s, t, T, *, direction="forward", scale=None, reduction="batchmean"):
    log_p_s = F.log_softmax(s / T, dim=1)
    log_p_t = F.log_softmax(t / T, dim=1)
    first, second = (log_p_s, log_p_t) if direction == "forward" else (log_p_t, log_p_s)
    with warnings.catch_warnings():  # reduction="mean" warns; here it is the planted mistake
        warnings.simplefilter("ignore", UserWarning)
        kl = F.kl_div(first, second, reduction=reduction, log_target=True)
    return kl * (T * T if scale is None else scale)


def _variants(T: float, alpha: float):
    """(id, loss(s, t, y), hint) for the reference and the classic mistakes (kdcourse.mistakes.CATALOGUE)."""
    ce = F.cross_entropy
    wrong = {
        "swapped_alpha": lambda s, t, y: (1 - alpha) * _soft_term(s, t, T) + alpha * ce(s, y),
        "missing_t_squared": lambda s, t, y: alpha * _soft_term(s, t, T, scale=1.0) + (1 - alpha) * ce(s, y),
        "t_not_squared": lambda s, t, y: alpha * _soft_term(s, t, T, scale=T) + (1 - alpha) * ce(s, y),
        "reversed_kl": lambda s, t, y: alpha * _soft_term(s, t, T, direction="reverse") + (1 - alpha) * ce(s, y),
        "mean_reduction": lambda s, t, y: alpha * _soft_term(s, t, T, reduction="mean") + (1 - alpha) * ce(s, y),
        "ce_at_temperature": lambda s, t, y: alpha * _soft_term(s, t, T) + (1 - alpha) * ce(s / T, y),
        "ce_scaled_t_squared": lambda s, t, y: alpha * _soft_term(s, t, T) + (1 - alpha) * ce(s, y) * T * T,
        "nll_on_logits": lambda s, t, y: alpha * _soft_term(s, t, T) + (1 - alpha) * F.nll_loss(s, y),
        "soft_only": lambda s, t, y: _soft_term(s, t, T),
        "hard_only": lambda s, t, y: ce(s, y),
        "no_weights": lambda s, t, y: _soft_term(s, t, T) + ce(s, y),
    }
    reference = ("reference", lambda s, t, y: alpha * _soft_term(s, t, T) + (1 - alpha) * ce(s, y), "")
    return [reference] + [(name, fn, catalogue.message(name, T=T, alpha=alpha, C=4)) for name, fn in wrong.items()]

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
        return ("loss.backward() found no graph: the student's forward pass must build one. Put only "
                "the teacher's forward pass under torch.no_grad(), not the student's, and do not "
                ".detach() the student's logits.")
    if "backward through the graph a second time" in text:
        return "Call loss.backward() once per step."
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
        returned = _call(fn, "kd_training_step", student, teacher, x, y, optimizer, T, alpha, hint=_step_hint,
                         shown="student, teacher, x, y, optimizer, T, alpha")
    return returned, watch


_STUDENT_TRAIN_MODE = (
    "The student must be in train mode while it trains: there its dropout is active and its BatchNorm "
    "normalises with the batch's own statistics and updates its running averages. A student with "
    "BatchNorm or dropout (DigitsCNN has BatchNorm) computes other logits and gradients in eval mode, and "
    "its running statistics never learn the data. Only the teacher goes in eval mode; the training loop "
    "calls student.train() before its steps."
)


def _check_student_mode(watch: _StepWatch, student: nn.Module) -> None:
    __tracebackhide__ = True
    if watch.ran_eval:
        _fail("The student ran its forward pass in eval mode: the step calls student.eval() (or "
              f"student.train(False)) before it. {_STUDENT_TRAIN_MODE} Remove student.eval() from the step.")
    if not student.training:
        _fail("The step leaves the student in eval mode (student.eval() after its forward pass): the next "
              f"steps of the loop would then train it in eval mode. {_STUDENT_TRAIN_MODE} Remove "
              "student.eval() from the step; switch to eval mode only to evaluate, after training.")


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
    before1 = _params(student)
    with torch.no_grad():
        expected_loss1 = float(reference(student(x1), t_logits[0], y1))
    ref_grads1 = _grads(student, reference, x1, y1, t_logits[0])

    returned, watch = _call_step(kd_training_step, student, teacher, x1, y1, optimizer, T, alpha)

    # --- the teacher must stay untouched
    if not all(torch.equal(a, b) for a, b in zip(teacher_params, _params(teacher))):
        _fail("The teacher's weights changed: only the student may be trained. Give the optimizer "
              "only the student's parameters and run the teacher under torch.no_grad().")
    moved = [k for k, v in _state(teacher).items() if not torch.equal(v, teacher_state[k])]
    if moved and (watch.ran_eval or not student.training):
        _fail("The step puts the STUDENT in eval mode and leaves the teacher in train mode: student.eval() "
              "where teacher.eval() was meant? The teacher's BatchNorm running statistics changed "
              f"({', '.join(moved[:2])}) and its dropout was active, so its soft targets were noisy; and "
              f"the student, which is the one being trained, was put in eval mode. {_STUDENT_TRAIN_MODE} "
              "Call teacher.eval() before the teacher's forward pass, and leave the student as it is.")
    if moved:
        _fail(_capital(catalogue.message("teacher_train_mode", moved=", ".join(moved[:2]))))
    if any(p.grad is not None for p in teacher.parameters()):
        _fail(_capital(catalogue.message("teacher_not_frozen")))

    # --- the student trains in train mode
    _check_student_mode(watch, student)

    # --- the student must have been updated with the reference gradient
    after1 = _params(student)
    if all(torch.equal(a, b) for a, b in zip(before1, after1)):
        grads = [p.grad for p in student.parameters()]
        cleared = all(g is None or not g.any() for g in grads)
        if watch.backward and watch.empty_steps:
            _fail("The student did not change: loss.backward() computed its gradients, but they were "
                  "erased (optimizer.zero_grad()) before optimizer.step() ran, so the step had nothing to "
                  "apply and the student learned nothing. zero_grad() clears the OLD gradients, so it goes "
                  "before loss.backward(): optimizer.zero_grad(), then loss.backward(), then optimizer.step().")
        if not watch.backward:
            _fail("The student did not change and has no gradients: call loss.backward() "
                  "before optimizer.step().")
        if watch.backward and cleared:
            _fail("The student did not change: loss.backward() computed its gradients, but they were "
                  "erased (zero_grad()) afterwards and optimizer.step() (the optimizer passed in) never "
                  "applied them. The order is optimizer.zero_grad(), loss.backward(), optimizer.step().")
        _fail("The student did not change although gradients were computed: call optimizer.step() "
              "(the optimizer passed in) after loss.backward().")
    learner_grads1 = [(b - a) / lr for a, b in zip(after1, before1)]
    if not _close(learner_grads1, ref_grads1):
        for name, loss_fn, hint in variants[1:]:
            if _close(learner_grads1, _grads(_student_copy_at(before1, student), loss_fn, x1, y1, t_logits[0])):
                _fail(f"Your update matches a wrong loss: {hint}")
        _fail("The student's update after one step does not match the reference "
              "alpha * T^2 * KL(p_t || p_s) + (1 - alpha) * CE(y, p_s), nor any of the usual mistakes. "
              "Check that you use the optimizer passed in (no new optimizer), the T and alpha passed "
              "in, and that the teacher's logits come from the same x.")

    # --- the returned loss
    if isinstance(returned, torch.Tensor):
        _fail("kd_training_step returned a tensor: return loss.item() (a float), so that the "
              "graph is not kept alive and the values can be averaged and printed.")
    if not isinstance(returned, float):
        _fail(f"kd_training_step should return the loss as a float, got {type(returned).__name__} ({returned!r}).")
    if abs(returned - expected_loss1) > 1e-6 * max(1.0, abs(expected_loss1)):
        _fail(f"kd_training_step returned {returned:.6f}, but the loss of this batch (before the "
              f"update) is {expected_loss1:.6f}. Return loss.item() of the loss you back-propagated.")

    # --- a second step: old gradients must be cleared first
    ref_grads2 = _grads(student, reference, x2, y2, t_logits[1])
    before2 = _params(student)
    _, watch = _call_step(kd_training_step, student, teacher, x2, y2, optimizer, T, alpha)
    _check_student_mode(watch, student)
    learner_grads2 = [(b - a) / lr for a, b in zip(_params(student), before2)]
    if not _close(learner_grads2, ref_grads2):
        if _close(learner_grads2, [g2 + g1 for g1, g2 in zip(ref_grads1, ref_grads2)]):
            _fail("The first step was right, but the second one used the sum of this batch's and "
                  "the previous batch's gradients: PyTorch accumulates gradients in .grad, so call "
                  "optimizer.zero_grad() before loss.backward() in every step.")
        _fail("The first step was right but the second one was not: does your function keep state "
              "between calls, or change T, alpha or the optimizer?")
    _ok("the teacher stays frozen, the loss is alpha * T^2 * KL + (1 - alpha) * CE, "
        "and every step updates the student exactly like the reference.")


def _student_copy_at(params: list[torch.Tensor], like: nn.Module) -> nn.Module:
    """A copy of ``like`` whose parameters are set to ``params`` (used to replay a step)."""
    model = copy.deepcopy(like)
    with torch.no_grad():
        for p, v in zip(model.parameters(), params):
            p.copy_(v)
    return model
