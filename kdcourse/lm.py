"""Character language models: evaluation, generation and the students' training loop.

Everything here works on :class:`kdcourse.models.CharTransformer` models and the token streams of
:mod:`kdcourse.text`. Shapes: token ids ``(batch, length)``, logits ``(batch, length, vocab)``;
position ``i`` of the logits predicts token ``i + 1``.

Bits per character (bpc) is the mean next-character cross-entropy in base 2:
``bpc = CE / ln 2`` -- 0 would be perfect prediction, ``log2(97) = 6.6`` a uniform guess.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .text import random_windows, windows

__all__ = [
    "logits_on",
    "bits_per_char",
    "generate",
    "sample_stats",
    "LMRecipe",
    "train_char_model",
    "label_batches",
    "METHODS",
    "CharSetting",
    "char_setting",
    "method_batch_loss",
    "STUDENT",
    "char_student",
    "distil_char_student",
    "evaluate_char_student",
    "fit_bell",
    "PROFILES",
    "CharStudy",
    "char_study",
]

LN2 = math.log(2.0)


@torch.no_grad()
def logits_on(model: nn.Module, inputs: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """The model's logits on ``inputs`` ``(n, length)`` in eval mode, batch by batch, float32."""
    was_training = model.training
    model.eval()
    try:
        return torch.cat([model(inputs[i:i + batch_size]) for i in range(0, len(inputs), batch_size)])
    finally:
        model.train(was_training)


@torch.no_grad()
def bits_per_char(model: nn.Module, stream: torch.Tensor, context: int | None = None) -> float:
    """Mean next-character cross-entropy of ``model`` on a token stream, in bits per character.

    The stream is cut into non-overlapping windows of the model's context (:func:`~kdcourse.text.windows`);
    every position of every window counts once.
    """
    context = context or model.context
    inputs, targets = windows(stream, context)
    logits = logits_on(model, inputs)
    return float(F.cross_entropy(logits.flatten(0, 1), targets.flatten())) / LN2


@torch.no_grad()
def generate(model: nn.Module, prompts: torch.Tensor, new_tokens: int, temperature: float = 1.0,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample ``new_tokens`` characters after each prompt: ``(batch, prompt + new_tokens)`` ids.

    Each step feeds the last ``model.context`` tokens, samples the next one from
    ``softmax(logits / temperature)`` and appends it. ``temperature`` < 1 sharpens the
    distribution (safer, more repetitive text), > 1 flattens it (more diverse, more errors).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    was_training = model.training
    model.eval()
    ids = prompts.clone()
    try:
        for _ in range(new_tokens):
            logits = model(ids[:, -model.context:])[:, -1] / temperature
            nxt = torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)
            ids = torch.cat([ids, nxt], dim=1)
    finally:
        model.train(was_training)
    return ids


@torch.no_grad()
def sample_stats(student: nn.Module, teacher: nn.Module, prompts: torch.Tensor, new_tokens: int,
                 temperature: float = 1.0, seed: int = 0) -> dict:
    """Generate from ``student`` and measure the samples, over the generated positions only.

    - ``entropy_bits``: the mean entropy of the student's own (tempered) next-character
      distribution along its samples -- how many options it keeps open;
    - ``teacher_bpc``: the teacher's cross-entropy of the sampled characters (bits per character)
      -- how plausible the teacher finds the student's text (lower = more plausible);
    - ``samples``: the generated ids, prompts included.
    """
    generator = torch.Generator().manual_seed(seed)
    ids = generate(student, prompts, new_tokens, temperature, generator)
    window = ids[:, -student.context - 1:]
    inputs, targets = window[:, :-1], window[:, 1:]
    generated = torch.zeros_like(targets, dtype=torch.bool)
    generated[:, -new_tokens:] = True
    s_logits = logits_on(student, inputs) / temperature
    t_logits = logits_on(teacher, inputs)
    log_p = F.log_softmax(s_logits, dim=-1)
    entropy = -(log_p.exp() * log_p).sum(-1)
    teacher_nll = F.cross_entropy(t_logits.flatten(0, 1), targets.flatten(), reduction="none").view_as(targets)
    return {
        "entropy_bits": float(entropy[generated].mean()) / LN2,
        "teacher_bpc": float(teacher_nll[generated].mean()) / LN2,
        "samples": ids,
    }


@dataclass(frozen=True)
class LMRecipe:
    """How a character model trains: steps, batch, optimiser, schedule."""

    steps: int = 400
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup: int = 40
    """Linear warm-up steps, then cosine decay to 10 % of ``lr``."""
    grad_clip: float = 1.0

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.steps - self.warmup)
        return self.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass
class LMHistory:
    """Per-step training losses of :func:`train_char_model`."""

    loss: list[float] = field(default_factory=list)


def train_char_model(model: nn.Module, batch_loss: Callable[[nn.Module, int, torch.Generator], torch.Tensor],
                     recipe: LMRecipe, seed: int = 0, start_step: int = 0) -> LMHistory:
    """Train ``model`` for ``recipe.steps`` steps; ``batch_loss(model, step, generator)`` draws a
    batch and returns its loss (this is where the methods differ: labels, KD, on-policy, ...).

    AdamW (``recipe.lr``, ``weight_decay``), gradient clipping at ``grad_clip``, warm-up then
    cosine schedule. ``seed`` seeds the generator every batch draw uses, so two methods with the
    same seed see the same batches.
    """
    from . import memo

    key = memo.key_for("lm.train_char_model", model, batch_loss, recipe, seed, start_step)
    if key is not None:
        record = memo.load(key, {"model": model})  # this very run finished before (KDCOURSE_TRAIN_MEMO=1)
        if record is not None:
            model.eval()
            return LMHistory(**record)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay,
                                  betas=(0.9, 0.99))
    history = LMHistory()
    model.train()
    for step in range(start_step, start_step + recipe.steps):
        for group in optimizer.param_groups:
            group["lr"] = recipe.lr_at(step - start_step)
        loss = batch_loss(model, step, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        optimizer.step()
        history.loss.append(loss.item())
    model.eval()
    if key is not None:
        memo.store(key, {"model": model}, {"loss": history.loss})
    return history


def label_batches(stream: torch.Tensor, context: int, batch_size: int) -> Callable:
    """``batch_loss`` for plain next-character cross-entropy on random windows of ``stream``."""

    def batch_loss(model, step, generator):
        x, y = random_windows(stream, context, batch_size, generator)
        return F.cross_entropy(model(x).flatten(0, 1), y.flatten())

    return batch_loss


# ------------------------------------------------------------------ distilling a character model

METHODS = ("labels", "forward", "reverse", "jsd", "top-k", "sequence", "on-policy")
"""What :func:`distil_char_student` can train with (see its docstring)."""


@dataclass
class CharSetting:
    """What every student of lesson 09 shares: the data, the frozen teacher and its cached logits.

    ``train_inputs`` / ``train_targets`` are the non-overlapping training windows ``(n, context)``;
    ``teacher_train`` the teacher's logits on them ``(n, context, vocab)``, computed once (the
    "cache" of token-level distillation); ``test_inputs`` / ``test_targets`` and ``teacher_test``
    the same for the test split; ``teacher_text`` the token stream of text the teacher wrote
    (sequence-level distillation).
    """

    data: object
    teacher: nn.Module
    train_inputs: torch.Tensor
    train_targets: torch.Tensor
    teacher_train: torch.Tensor
    test_inputs: torch.Tensor
    test_targets: torch.Tensor
    teacher_test: torch.Tensor
    teacher_text: torch.Tensor | None = None

    @property
    def context(self) -> int:
        return self.train_inputs.shape[1]


def char_setting(data, teacher: nn.Module, teacher_text: str | None = None) -> CharSetting:
    """Cut the splits into windows of the teacher's context and run the teacher once over them."""
    from .text import encode

    context = teacher.context
    train_x, train_y = windows(data.train, context)
    test_x, test_y = windows(data.test, context)
    return CharSetting(
        data=data, teacher=teacher,
        train_inputs=train_x, train_targets=train_y, teacher_train=logits_on(teacher, train_x),
        test_inputs=test_x, test_targets=test_y, teacher_test=logits_on(teacher, test_x),
        teacher_text=encode(teacher_text) if teacher_text is not None else None,
    )


def _rows(setting: CharSetting, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, len(setting.train_inputs), (batch_size,), generator=generator)


def method_batch_loss(setting: CharSetting, method: str, batch_size: int = 32, *, T: float = 1.0,
                      alpha: float = 1.0, k: int | None = None, on_policy_share: float = 1.0,
                      prompt: int = 16, beta: float = 0.5, divergence: str = "forward") -> Callable:
    """The ``batch_loss`` of :func:`train_char_model` for one method.

    - ``labels``: next-character cross-entropy on the training windows;
    - ``forward`` / ``reverse`` / ``jsd``: ``alpha * token_kd_loss(...) + (1 - alpha) * CE`` against
      the cached teacher logits of the same windows;
    - ``top-k``: the same with forward KL from the teacher's top ``k`` logits only, stored as
      float16 values and integer ids (:func:`~kdcourse.losses.top_k_kd_loss`);
    - ``sequence``: cross-entropy on random windows of the text the teacher wrote (Kim & Rush
      2016, sequence-level KD: the teacher's samples replace the data);
    - ``on-policy``: with probability ``on_policy_share`` a batch is the student's own text -- the
      first ``prompt`` characters of a training window, the rest sampled from the student -- and the
      teacher scores every generated position (``divergence`` over the generated tokens only,
      through the mask); otherwise a cached-logits batch with the same divergence (GKD, Agarwal et
      al. 2024, with its on-policy fraction lambda).
    """
    from .losses import token_kd_loss, top_k_kd_loss, top_k_logits

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "sequence" and setting.teacher_text is None:
        raise ValueError("sequence-level KD needs the teacher's text: char_setting(..., teacher_text=lm_teacher_text())")
    if method == "top-k" and k is None:
        raise ValueError("method 'top-k' needs k, the number of teacher logits kept per token")

    def cross_entropy(logits, targets):
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())

    def cached(model, generator, divergence="forward"):
        rows = _rows(setting, batch_size, generator)
        x, y, teacher = setting.train_inputs[rows], setting.train_targets[rows], setting.teacher_train[rows]
        logits = model(x)
        if method == "top-k":
            values, ids = top_k_logits(teacher, k)
            soft = top_k_kd_loss(logits, values.half(), ids.to(torch.uint8) if ids.max() < 256 else ids, T=T)
        else:
            soft = token_kd_loss(logits, teacher, T=T, divergence=divergence, beta=beta)
        return soft if alpha == 1.0 else alpha * soft + (1.0 - alpha) * cross_entropy(logits, y)

    def on_policy(model, generator):
        rows = _rows(setting, batch_size, generator)
        ids = generate(model, setting.train_inputs[rows, :prompt], setting.context + 1 - prompt,
                       generator=generator)
        model.train()
        x = ids[:, :-1]
        mask = torch.zeros_like(x, dtype=torch.bool)
        mask[:, prompt - 1:] = True  # positions whose next token the student wrote
        with torch.no_grad():
            teacher = setting.teacher(x)
        return token_kd_loss(model(x), teacher, mask, T=T, divergence=divergence, beta=beta)

    def batch_loss(model, step, generator):
        if method == "labels":
            rows = _rows(setting, batch_size, generator)
            return cross_entropy(model(setting.train_inputs[rows]), setting.train_targets[rows])
        if method == "sequence":
            x, y = random_windows(setting.teacher_text, setting.context, batch_size, generator)
            return cross_entropy(model(x), y)
        if method == "on-policy" and torch.rand((), generator=generator) < on_policy_share:
            return on_policy(model, generator)
        return cached(model, generator, divergence if method in ("on-policy", "top-k") else method)

    return batch_loss


STUDENT = {"width": 32, "depth": 1, "heads": 2}
"""The students' architecture (about 21 k parameters, 17x fewer than the teacher)."""


def char_student(setting: CharSetting, seed: int, **architecture) -> nn.Module:
    """A fresh student (``STUDENT`` unless overridden), initialised from ``seed``."""
    from .models import CharTransformer

    torch.manual_seed(seed)
    return CharTransformer(setting.teacher.vocab_size, setting.context, **{**STUDENT, **architecture})


def distil_char_student(setting: CharSetting, method: str, seed: int, recipe: LMRecipe,
                        student: nn.Module | None = None, **options) -> nn.Module:
    """Train a student (a fresh one from ``seed`` unless given) with ``method``; returns it, in eval mode.

    ``options`` go to :func:`method_batch_loss` (``T``, ``alpha``, ``k``, ``on_policy_share``, ...).
    The batch draws are seeded by ``seed``: with the same seed every method sees the same windows.
    """
    student = char_student(setting, seed) if student is None else student
    train_char_model(student, method_batch_loss(setting, method, recipe.batch_size, **options), recipe, seed=seed)
    return student


@torch.no_grad()
def evaluate_char_student(setting: CharSetting, student: nn.Module, samples: int = 64,
                          new_tokens: int = 32, seed: int = 0) -> dict:
    """Held-out numbers of a student: test bits per character, agreement and KL with the teacher,
    calibration, and what its own samples look like (:func:`sample_stats`, temperature 1)."""
    from .calibration import expected_calibration_error, mean_kl_to_teacher, top1_agreement

    logits = logits_on(student, setting.test_inputs)
    bpc = float(F.cross_entropy(logits.flatten(0, 1), setting.test_targets.flatten())) / LN2
    rows = torch.linspace(0, len(setting.test_inputs) - 1, samples).long()
    stats = sample_stats(student, setting.teacher, setting.test_inputs[rows, : setting.context - new_tokens],
                         new_tokens, seed=seed)
    return {
        "bpc": bpc,
        "agreement": top1_agreement(logits, setting.teacher_test),
        "kl_to_teacher": mean_kl_to_teacher(logits, setting.teacher_test) / LN2,
        "ece": expected_calibration_error(torch.softmax(logits, -1), setting.test_targets),
        "sample_entropy": stats["entropy_bits"],
        "teacher_bpc_of_samples": stats["teacher_bpc"],
    }


def fit_bell(target: torch.Tensor, divergence: str) -> torch.Tensor:
    """The best one-bump ("bell") distribution over ``len(target)`` tokens for ``target`` (1-D probabilities).

    A bell has logits ``-(i - mu)^2 / (2 sigma^2)`` over token index ``i``: it can place one bump,
    anywhere, of any width, but not two. The best ``(mu, sigma)`` under ``"forward"``
    KL(target || bell) or ``"reverse"`` KL(bell || target) is found by exhaustive search over a
    fine grid (so no optimiser's local minimum decides). On a two-bump target, forward covers both
    bumps (mass-covering), reverse sits on one (mode-seeking). Returns the bell's probabilities.
    """
    if divergence not in ("forward", "reverse"):
        raise ValueError(f"divergence must be 'forward' or 'reverse', got {divergence!r}")
    n = len(target)
    index = torch.arange(n, dtype=torch.float64)
    mus = torch.linspace(0, n - 1, 8 * n, dtype=torch.float64)
    sigmas = torch.logspace(math.log10(0.3), math.log10(2 * n), 120, dtype=torch.float64)
    logits = -((index - mus[:, None, None]) ** 2) / (2 * sigmas[None, :, None] ** 2)
    log_q = torch.log_softmax(logits, dim=-1)
    log_p = target.double().clamp_min(1e-30).log()
    if divergence == "forward":
        cost = (target.double() * (log_p - log_q)).sum(-1)
    else:
        cost = (log_q.exp() * (log_q - log_p)).sum(-1)
    best = int(cost.argmin())
    return log_q.reshape(-1, n)[best].exp().float()


# ------------------------------------------------------------------ a study: methods x seeds

PROFILES = {
    "quick": {"scratch": LMRecipe(steps=400, batch_size=32, lr=0.05, warmup=40),
              "finetune": LMRecipe(steps=100, batch_size=32, lr=0.01, warmup=5)},
    "full": {"scratch": LMRecipe(steps=2000, batch_size=32, lr=0.05, warmup=100),
             "finetune": LMRecipe(steps=400, batch_size=32, lr=0.01, warmup=20)},
}
"""The recipes of lesson 09 per profile: students from scratch, and the continuations of section 5-7."""


@dataclass
class CharStudy:
    """What :func:`char_study` measured: per method, one metrics dict and one student per seed."""

    seeds: tuple[int, ...]
    metrics: dict[str, list[dict]] = field(default_factory=dict)
    students: dict[str, list[nn.Module]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def runs(self, method: str, metric: str = "bpc") -> list[float]:
        return [m[metric] for m in self.metrics[method]]

    def summary(self, method: str, metric: str = "bpc") -> dict:
        """``{"mean", "std", "runs"}`` over seeds (sample std, ddof = 1)."""
        from .transfer import summarize

        return summarize(self.runs(method, metric))

    def paired(self, method: str, reference: str, metric: str = "bpc") -> dict:
        """Per-seed differences ``method - reference`` of ``metric``, summarised (sample std)."""
        from .transfer import summarize

        return summarize([a - b for a, b in zip(self.runs(method, metric), self.runs(reference, metric))])

    def merge(self, other: CharStudy) -> CharStudy:
        if other.seeds != self.seeds:
            raise ValueError(f"cannot merge studies over different seeds {self.seeds} and {other.seeds}")
        for name in ("metrics", "students", "seconds"):
            getattr(self, name).update(getattr(other, name))
        return self

    def table(self, methods=None, metrics=("bpc", "agreement", "kl_to_teacher", "sample_entropy",
                                          "teacher_bpc_of_samples")) -> str:
        """A plain-text table: mean ± std over seeds of each metric, one row per method."""
        methods = list(self.metrics) if methods is None else list(methods)
        width = max(len(m) for m in methods) + 2
        head = "".join(f"{name:>24}" for name in metrics)
        lines = [f"{'method':<{width}}{head}"]
        for method in methods:
            cells = "".join(f"{self.summary(method, k)['mean']:>16.3f} ± {self.summary(method, k)['std']:.3f}"
                            for k in metrics)
            lines.append(f"{method:<{width}}{cells}")
        return "\n".join(lines)


def char_study(setting: CharSetting, methods: dict[str, dict], seeds=(0, 1, 2), recipe: LMRecipe | None = None,
               start: dict[int, nn.Module] | None = None) -> CharStudy:
    """Train and evaluate students: every ``methods`` entry (``name -> {"method": ..., options}``) on
    every seed, with :func:`distil_char_student` and :func:`evaluate_char_student`.

    ``start`` maps each seed to a trained student: each method then continues a *copy* of it (the
    same starting point for every method, e.g. the label-trained students). Batches are seeded
    by the seed, so methods are paired by seed.
    """
    import copy
    import time

    recipe = recipe or PROFILES["quick"]["scratch"]
    study = CharStudy(seeds=tuple(seeds))
    for name, spec in methods.items():
        spec = dict(spec)
        method = spec.pop("method", name)
        begin = time.perf_counter()
        study.metrics[name], study.students[name] = [], []
        for seed in seeds:
            student = copy.deepcopy(start[seed]) if start is not None else None
            student = distil_char_student(setting, method, seed, recipe, student=student, **spec)
            study.students[name].append(student)
            study.metrics[name].append(evaluate_char_student(setting, student))
        study.seconds[name] = time.perf_counter() - begin
    return study
