"""One driver for every comparison: methods x seeds, paired by seed, with a typed result.

For each method and seed the driver seeds everything, builds a fresh student (so seed ``s`` gives
every method the same initial student), trains it with :func:`kdcourse.distill.train` as the
study's ``plan`` says, and scores it. Runs are memoised within a :class:`Runs` object (a sweep
that asks for the same method, seed and options again gets the same run back), and across
processes by the training memo (``KDCOURSE_TRAIN_MEMO=1``, :mod:`kdcourse.memo`).

    >>> runs = Runs(lambda: DigitsCNN(8), plan, score=lambda student, history: evaluate(student, data.test))
    >>> result = runs.study(["baseline", "kd"], seeds=3)
    >>> result["kd"].mean, result["kd"].std, result.paired("kd", "baseline")["runs"]

Used by :func:`kdcourse.compare.compare`, :func:`kdcourse.capstone.cifar10_study`,
:func:`kdcourse.transfer.transfer_study` and the lessons' sweeps.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from torch import nn
from torch.utils.data import TensorDataset

from . import config as kd_config
from .distill import History, LossTerm, TrainConfig, seed_everything, train
from .models import count_parameters

__all__ = ["RunPlan", "Run", "MethodResult", "StudyResult", "Runs", "summarize", "paired_gain", "paired_differences"]


def summarize(values: Sequence[float]) -> dict:
    """``{"mean", "std", "runs"}`` of ``values``; ``std`` is the sample standard deviation (ddof = 1),
    0 for a single value."""
    values = [float(v) for v in values]
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "runs": values}


def paired_gain(method_runs: Sequence[float], baseline_runs: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1) of the per-seed differences ``method_runs[i] -
    baseline_runs[i]``, run ``i`` of each trained with seed ``i`` (lesson 08c's exercise)."""
    if len(method_runs) != len(baseline_runs):
        raise ValueError(f"{len(method_runs)} runs against {len(baseline_runs)}: pair the runs by seed")
    if len(method_runs) < 2:
        raise ValueError(f"{len(method_runs)} run of each: a sample standard deviation needs at least 2 seeds")
    gain = summarize([x - y for x, y in zip(method_runs, baseline_runs)])
    return gain["mean"], gain["std"]


def paired_differences(results: Mapping[str, Mapping], method: str, reference: str = "baseline") -> dict:
    """Per-seed differences ``method - reference`` of ``{method: {"runs": [...]}}`` (paired by seed), summarised."""
    a, b = results[method]["runs"], results[reference]["runs"]
    if len(a) != len(b):
        raise ValueError(f"{method} has {len(a)} runs and {reference} {len(b)}: pair runs by seed")
    return summarize([x - y for x, y in zip(a, b)])


@dataclass
class RunPlan:
    """How one run trains: its data, its :class:`~kdcourse.distill.TrainConfig` and the objects
    :func:`~kdcourse.distill.train` takes. ``terms(student)``, if given, builds the loss terms from
    the fresh student (e.g. a regressor sized to it) instead of ``config.method``'s."""

    train_data: TensorDataset
    config: TrainConfig
    teacher: nn.Module | None = None
    teacher_cache: dict | None = None
    val_data: TensorDataset | None = None
    terms: Callable[[nn.Module], Sequence[LossTerm]] | None = None


@dataclass
class Run:
    """One trained student: its score, history, training time and (if kept) the model itself."""

    method: str
    seed: int
    score: float
    history: History
    seconds: float
    params: int
    student: nn.Module | None = None
    images_per_second: float | None = None
    """Training images per second of the training epochs (``History.epoch_seconds``: the steps, not the
    evaluations; recorded with the history, so a memoised run reports its original speed)."""


@dataclass
class MethodResult:
    """One method's runs over the seeds."""

    method: str
    runs: list[Run] = field(default_factory=list)

    @property
    def scores(self) -> list[float]:
        return [r.score for r in self.runs]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.scores)

    @property
    def std(self) -> float:
        """The sample standard deviation over the seeds (ddof = 1); 0 for one seed."""
        return summarize(self.scores)["std"]

    @property
    def histories(self) -> list[History]:
        return [r.history for r in self.runs]

    def summary(self) -> dict:
        """``{"mean", "std", "runs", "params", "seconds", "images_per_second"}`` (``seconds``: the mean
        time of one run; ``images_per_second``: the runs' mean training throughput, :attr:`Run.images_per_second`)."""
        rates = [r.images_per_second for r in self.runs]
        return {**summarize(self.scores), "params": self.runs[-1].params,
                "seconds": statistics.fmean(r.seconds for r in self.runs),
                "images_per_second": statistics.fmean(rates) if None not in rates else None}


@dataclass
class StudyResult:
    """Every method's :class:`MethodResult`, in the order they ran."""

    methods: dict[str, MethodResult]

    def __getitem__(self, method: str) -> MethodResult:
        return self.methods[method]

    def paired(self, method: str, reference: str = "baseline") -> dict:
        """``{"mean", "std", "runs"}`` of the per-seed differences ``method - reference``."""
        a, b = self.methods[method], self.methods[reference]
        if [r.seed for r in a.runs] != [r.seed for r in b.runs]:
            raise ValueError(f"{method} and {reference} ran different seeds: pair runs by seed")
        return summarize([x - y for x, y in zip(a.scores, b.scores)])

    def summaries(self) -> dict[str, dict]:
        """``{method: MethodResult.summary()}``: the table :func:`kdcourse.compare.format_table` prints."""
        return {m: r.summary() for m, r in self.methods.items()}


class Runs:
    """The study driver: ``plan(method, seed, **options)`` says how a run trains (a :class:`RunPlan`),
    ``score(student, history)`` what it scored; :meth:`run` trains one (memoised on the method,
    seed and options), :meth:`study` methods x seeds.

    ``keep_students``: ``"first"`` keeps the trained student of the first seed of each method,
    ``"all"`` every one, ``None`` none (their weights are dropped from the histories either way).
    """

    def __init__(self, make_student: Callable[[], nn.Module], plan: Callable[..., RunPlan],
                 score: Callable[[nn.Module, History], float], keep_students: str | None = None):
        if keep_students not in (None, "first", "all"):
            raise ValueError(f"keep_students must be None, 'first' or 'all', got {keep_students!r}")
        self.make_student, self.plan, self.score, self.keep_students = make_student, plan, score, keep_students
        self._done: dict[tuple, Run] = {}

    def run(self, method: str, seed: int, keep: bool = False, **options) -> Run:
        """Train (or recall) the run of ``method`` and ``seed`` with ``options`` for the plan."""
        key = (method, seed, tuple(sorted(options.items(), key=lambda kv: kv[0])))
        done = self._done.get(key)
        if done is not None and (done.student is not None or not keep):
            return done
        plan = self.plan(method, seed, **options)
        seed_everything(seed)
        student = self.make_student()
        start = time.perf_counter()
        history = train(student, plan.train_data, plan.config.replace(seed=seed, progress=False),
                        teacher=plan.teacher, terms=plan.terms(student) if plan.terms is not None else None,
                        val_data=plan.val_data, teacher_cache=plan.teacher_cache)
        seconds = time.perf_counter() - start
        score = float(self.score(student, history))
        history.student = None
        images, busy = len(plan.train_data) * len(history.epoch_seconds), sum(history.epoch_seconds)
        run = Run(method, seed, score, history, seconds, count_parameters(student),
                  student.eval() if keep else None, images / busy if busy > 0 else None)
        self._done[key] = run
        return run

    def study(self, methods: Sequence[str], seeds: int | Sequence[int] = 3, progress: bool = True,
              desc: str = "study", **options) -> StudyResult:
        """Every method over ``seeds`` (a count, i.e. ``range(seeds)``, or the seeds themselves)."""
        seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
        if not seed_list:
            raise ValueError(f"seeds must be >= 1, got {seeds}")
        from tqdm.auto import tqdm

        bar = tqdm(total=len(methods) * len(seed_list), desc=desc, disable=not kd_config.progress_enabled(progress))
        result: dict[str, MethodResult] = {}
        for method in methods:
            entry = result.setdefault(method, MethodResult(method))
            for i, seed in enumerate(seed_list):
                bar.set_postfix(method=method, seed=seed)
                keep = self.keep_students == "all" or (self.keep_students == "first" and i == 0)
                entry.runs.append(self.run(method, seed, keep=keep, **options))
                bar.update()
        bar.close()
        return StudyResult(result)
