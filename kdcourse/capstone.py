"""The CIFAR-10 capstone: distil the shipped teacher into a small CNN student (lesson 08b).

One study, shared by lesson 08b and ``python -m kdcourse compare --dataset cifar10`` (without --labeled):

- teacher: the pretrained :func:`kdcourse.teachers.load_cifar10_teacher` (a ``CifarResNet``,
  0.70 M parameters), frozen;
- student: :class:`kdcourse.models.CifarCNN` (``widths=(8, 16, 32)``, 7,010 parameters, in the quick
  profile; ``(16, 32, 64)``, 26,682 parameters, in the full one);
- methods: ``baseline`` (labels only), ``kd`` (Hinton et al. 2015), ``at`` (attention transfer,
  Zagoruyko & Komodakis 2017, between layers of *different names* that share a resolution, see
  :data:`AT_PAIRS`) and a relation method on the embeddings, ``sp`` (Tung & Mori 2019) or
  ``rkd`` (Park et al. 2019);
- two profiles (:func:`kdcourse.config.pick`, ``KDCOURSE_PROFILE``): :data:`QUICK` (a CPU, a few
  minutes: 500 labelled images, a stratified subset, the 7k-parameter student, 20 short epochs, no
  augmentation, so the
  teacher's outputs are computed once and cached on disk) and :data:`FULL` (a GPU: all 50,000
  images, 30 epochs, random crop + flip on the GPU, the teacher run live on every batch).
  The two regimes answer differently: see the README's results.

    >>> study = cifar10_study(methods=("baseline", "kd", "at", "sp"), seeds=2)
    >>> print(format_table(study.results))
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import nn
from torch.utils.data import TensorDataset

from . import config
from .compare import format_table, to_json
from .data import DataSplits, load_cifar10_data, subset, tensors
from .distill import METHODS, History, LossTerm, TrainConfig, evaluate, method_terms
from .models import CifarCNN, count_parameters, measure_latency
from .study import RunPlan, Runs
from .teacher_cache import cached_teacher_outputs
from .teachers import CIFAR10_TEACHERS, cifar10_teacher_info, load_cifar10_teacher

__all__ = [
    "CifarRegime",
    "QUICK",
    "FULL",
    "AT_PAIRS",
    "CAPSTONE_METHODS",
    "TEACHER_FEATURES",
    "regime",
    "capstone_terms",
    "random_crop_flip",
    "Study",
    "cifar10_study",
    "compare_cifar10",
    "count_multiply_adds",
    "size_latency_table",
    "format_size_latency",
    "format_table",
    "to_json",
]

AT_PAIRS: dict[str, str] = {"layer1": "layer2", "layer2": "layer3"}
"""Attention transfer pairs, ``{student layer: teacher layer}``, matched by spatial size.

The student ``CifarCNN`` halves the resolution in every layer (layer1 16x16, layer2 8x8,
layer3 4x4), the teacher ``CifarResNet`` only from layer2 on (layer1 32x32, layer2 16x16,
layer3 8x8): the same *name* is a different resolution, so the pairs name each side.
"""

TEACHER_FEATURES = ("embedding", *AT_PAIRS.values())
"""What the teacher cache holds besides the logits: the embedding and the feature maps of the
teacher's layers in :data:`AT_PAIRS`, enough for every method of the study."""

CAPSTONE_METHODS = METHODS
"""Methods :func:`cifar10_study` runs, all from :func:`kdcourse.methods.method_terms`: ``at`` over
:data:`AT_PAIRS`, the others on the ``embedding`` (``hint``: FitNets through a linear regressor
from the student's 32 to the teacher's 128 values; ``rkd``, ``sp``: relations); sums such as
``kd+at`` work too."""


@dataclass(frozen=True)
class CifarRegime:
    """Everything that defines the CIFAR-10 study, besides the method and the seed."""

    name: str = "quick"
    train_size: int | None = 500  # None: all 50,000 training images
    test_size: int | None = 5000  # None: all 10,000 test images
    curve_size: int | None = 500  # test images scored after every epoch, seed 0 (None: all)
    data_seed: int = 0  # which stratified subsets
    student_widths: tuple[int, int, int] = (8, 16, 32)
    teacher: str = "strong"  # which shipped teacher (kdcourse.teachers.CIFAR10_TEACHERS): "strong" 88 %, "weak" 77 %
    epochs: int = 20
    batch_size: int = 64
    lr: float = 3e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    cosine: bool = True
    augment: bool = False  # random crop + flip; then the teacher runs live on every batch
    precision: str = "float32"  # or "bfloat16": autocast (a GPU's, TrainConfig.precision)
    channels_last: bool = False  # networks and batches channels-last (a GPU's)
    T: float = 4.0
    alpha: float = 0.9
    at_pairs: tuple[tuple[str, str], ...] = tuple(AT_PAIRS.items())
    weights: Mapping[str, float] = field(default_factory=lambda: {
        "at": 500.0,  # the paper's beta / 2 (beta = 1e3, eq. 2) times the sum over the pairs; its code uses beta
        "sp": 3000.0,  # Tung & Mori: gamma = 3000
        "rkd_distance": 25.0,  # Park et al.
        "rkd_angle": 50.0,
    })

    def train_config(self) -> TrainConfig:
        """The students' :class:`~kdcourse.distill.TrainConfig` in this regime (method and seed set
        per run; the loss terms come from :func:`capstone_terms`, with ``T``, ``alpha`` and ``weights``)."""
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                           optimizer=self.optimizer, cosine=self.cosine, T=self.T, alpha=self.alpha,
                           weights=dict(self.weights), layers={"at": self.at_pairs},
                           augment=random_crop_flip if self.augment else None, precision=self.precision,
                           channels_last=self.channels_last)

    def describe(self) -> str:
        images = f"{self.train_size:,}" if self.train_size else "all 50,000"
        tests = f"{self.test_size:,}" if self.test_size else "all 10,000"
        aug = ", random crop + flip" if self.augment else ""
        sched = " + cosine" if self.cosine else ""
        fast = ", ".join(([f"{self.precision} autocast"] if self.precision != "float32" else [])
                         + (["channels-last"] if self.channels_last else []))
        teacher = f", the {self.teacher} teacher" if self.teacher != "strong" else ""
        return (f"{self.name} profile: {images} training / {tests} test images{teacher}, {self.epochs} epochs{aug}, "
                f"{self.optimizer} lr {self.lr:g}{sched}, batch {self.batch_size}, T={self.T:g}, alpha={self.alpha:g}"
                + (f", {fast}" if fast else ""))


QUICK = CifarRegime()
"""CPU, CI and laptops: 500 labelled images (50 per class), the 7k-parameter ``CifarCNN((8, 16, 32))``,
20 short epochs, no augmentation,
teacher outputs cached on disk; 5,000 test images (500 of them scored after every epoch)."""

FULL = CifarRegime(
    name="full", train_size=None, test_size=None, curve_size=None, student_widths=(16, 32, 64), epochs=30,
    batch_size=512, lr=3e-3,
    cosine=True, augment=True,
)
"""A GPU: all 50,000 images, 30 epochs with random crop + flip (the teacher runs live)."""


def regime() -> CifarRegime:
    """:data:`QUICK` or :data:`FULL`, following ``KDCOURSE_PROFILE``."""
    return config.pick(quick=QUICK, full=FULL)


def capstone_terms(method: str, reg: CifarRegime, student: nn.Module, teacher: nn.Module | None) -> list[LossTerm]:
    """The loss terms of ``method`` in this study: :func:`kdcourse.methods.method_terms` with
    ``at`` over ``reg.at_pairs``, every other feature or relation term on the ``embedding``, and
    ``reg``'s weights, ``T`` and ``alpha`` (sums such as ``kd+at`` allowed)."""
    return method_terms(method, student=student, teacher=teacher, T=reg.T, alpha=reg.alpha,
                        feature="embedding", layers={"at": reg.at_pairs}, weights=dict(reg.weights),
                        sample_input=torch.zeros(2, 3, 32, 32, device=next(student.parameters()).device))


# ------------------------------------------------------------------ augmentation (on the data's device)


def random_crop_flip(x: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Random ``pad``-pixel padded 32x32 crops and horizontal flips (p = 1/2) of a batch.

    Works on whole ``(B, C, H, W)`` batches on their own device (GPU included) with the global,
    seeded random generator; zero padding is the mean colour after normalisation.
    """
    b, _, h, w = x.shape
    dev = x.device
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), device=dev)
    dx = torch.randint(0, 2 * pad + 1, (b,), device=dev)
    rows = (dy[:, None] + torch.arange(h, device=dev))[:, :, None]  # (B, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, :]  # (B, 1, W)
    batch = torch.arange(b, device=dev)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)
    flip = torch.rand(b, device=dev) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


# ------------------------------------------------------------------ the study


@dataclass
class Study:
    """The results of :func:`cifar10_study`."""

    regime: CifarRegime
    results: dict[str, dict]  # {"teacher": {...}, method: {"mean", "std", "runs", "params", "seconds"}}
    histories: dict[str, list[History]]  # per method, one per seed (seed 0: test accuracy per epoch)
    students: dict[str, nn.Module]  # per method, the seed-0 student (on the CPU, eval mode)
    teacher: nn.Module
    timings: dict[str, float | bool]  # data_seconds, teacher_seconds, teacher_from_cache, total_seconds
    device: str = "cpu"
    teacher_train: dict[str, torch.Tensor] | None = None  # cached teacher outputs on the transfer set
    teacher_test_logits: torch.Tensor | None = None  # the teacher's logits on the test images

    def accuracies(self) -> dict[str, list[float]]:
        """``{method: [test accuracy per seed]}`` (for :func:`kdcourse.plots.mean_std_bars`)."""
        return {m: r["runs"] for m, r in self.results.items() if m != "teacher"}


def _to(ds: TensorDataset, dev: torch.device) -> TensorDataset:
    x, y = tensors(ds)
    return TensorDataset(x.to(dev), y.to(dev))


def _contiguous(data: DataSplits) -> DataSplits:
    """The splits with contiguous image tensors.

    Freshly decoded images can arrive in a channels-last memory layout and cached ones do not;
    convolutions round differently in the two layouts, so without this the first run (empty
    cache) and later runs would give slightly different numbers for the same seed.
    """
    def fix(ds):
        if ds is None:
            return None
        x, y = tensors(ds)
        return ds if x.is_contiguous() else TensorDataset(x.contiguous(), y)

    return replace(data, train=fix(data.train), val=fix(data.val), test=fix(data.test))


def cifar10_study(
    methods: Sequence[str] = ("baseline", "kd", "at", "sp"),
    seeds: int = 2,
    reg: CifarRegime | None = None,
    progress: bool = True,
    cache: bool = True,
    device: str | None = None,
    data: DataSplits | None = None,
) -> Study:
    """Train one student per method and seed on CIFAR-10 and collect accuracy, size and time.

    - ``reg``: the regime (default :func:`regime`, i.e. the active profile);
    - every method sees the same data, the same frozen teacher and, for a given seed, the same
      initial student; the result is the test accuracy after the last epoch. For learning curves
      the seed-0 runs also record the accuracy on ``reg.curve_size`` of the test images after
      every epoch (``History.val_acc``, empty for the other seeds; nothing is selected on it);
    - without augmentation the teacher's outputs on the transfer set (logits, embedding,
      the feature maps of the paired layers) are computed once and cached on disk
      (:func:`kdcourse.teacher_cache.cached_teacher_outputs`); with augmentation the teacher runs
      live on every augmented batch.
    - ``data``: the splits, if already loaded with ``reg``'s sizes (else they are loaded here).

    Raises the data loader's error (with instructions) when CIFAR-10 is not available.
    """
    reg = reg or regime()
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    methods = list(methods)
    if reg.teacher not in CIFAR10_TEACHERS:
        raise ValueError(f"the regime's teacher must be one of {CIFAR10_TEACHERS} (the shipped ones), got {reg.teacher!r}")
    for m in methods:  # fail before any expensive step
        capstone_terms(m, reg, CifarCNN(reg.student_widths), CifarCNN(reg.student_widths))
    dev = torch.device(device or config.device())
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    total_start = time.perf_counter()

    start = time.perf_counter()
    if data is None:
        data = load_cifar10_data(train_size=reg.train_size, test_size=reg.test_size, seed=reg.data_seed)
    data = _contiguous(data)
    timings: dict[str, float | bool] = {"data_seconds": time.perf_counter() - start}
    teacher = load_cifar10_teacher(which=reg.teacher).to(dev)
    teacher_sha256 = cifar10_teacher_info(which=reg.teacher)["sha256"]
    x_train, _ = tensors(data.train)
    x_test, y_test = tensors(data.test)

    # one cache entry serves every method: the features any of them may read, whatever was asked
    # what each method reads from the teacher (None: nothing, it trains on the labels alone)
    reads: dict[str, set[str] | None] = {}
    for m in methods:
        terms = capstone_terms(m, reg, CifarCNN(reg.student_widths).to(dev), teacher)
        reads[m] = {"logits", *{f for t in terms for f in t.teacher_features}} \
            if any(t.needs_teacher for t in terms) else None
    features = sorted(set(TEACHER_FEATURES) | {f for names in reads.values() if names for f in names} - {"logits"})
    start = time.perf_counter()
    subset_params = {"train_size": reg.train_size, "test_size": reg.test_size, "seed": reg.data_seed}
    train_cache = None
    if not reg.augment:
        train_cache, hit_train = cached_teacher_outputs(teacher, x_train, features, cache=cache,
                                                        teacher_sha256=teacher_sha256,
                                                        split="train", **subset_params)
    else:
        hit_train = False
    from .transfer import cifar10_teacher_logits

    test_logits, test_source = cifar10_teacher_logits(data, "test", teacher=teacher, cache=cache, which=reg.teacher)
    hit_test = test_source != "computed"
    timings["teacher_seconds"] = time.perf_counter() - start
    timings["teacher_from_cache"] = hit_train and hit_test if not reg.augment else hit_test
    teacher_acc = float((test_logits.argmax(1).to(y_test.device) == y_test).float().mean())
    results: dict[str, dict] = {"teacher": {
        "mean": teacher_acc, "std": 0.0, "runs": [teacher_acc],
        "params": count_parameters(teacher), "seconds": None,
    }}

    train_data = _to(data.train, dev)  # the whole set on the training device: no per-batch copies
    curve_data = data.test
    if reg.curve_size is not None and reg.curve_size < len(y_test):
        curve_data = subset(data.test, reg.curve_size, seed=reg.data_seed)
    config_ = reg.train_config().replace(cache_teacher=False, device=str(dev))

    on_device: dict[str, dict] = {}  # each method's part of the teacher cache, moved to the device once

    def plan(method: str, seed: int) -> RunPlan:
        names = reads[method]
        run_cache = None
        if train_cache is not None and names is not None:
            if method not in on_device:
                on_device[method] = {k: v.to(dev) for k, v in train_cache.items() if k in names}
            run_cache = on_device[method]
        return RunPlan(train_data, config_.replace(method=method), teacher if names is not None else None, run_cache,
                       val_data=curve_data if seed == 0 else None,
                       terms=lambda student: capstone_terms(method, reg, student, teacher))

    def score(student: nn.Module, history: History) -> float:
        # seed 0 scored the whole test set after its last epoch already when the curve is the test set
        if history.val_acc and curve_data is data.test:
            return history.val_acc[-1]
        return evaluate(student, data.test)

    runs = Runs(lambda: CifarCNN(reg.student_widths).to(dev), plan, score, keep_students="first")
    study = runs.study(methods, seeds, progress=progress, desc="CIFAR-10 study")
    results.update(study.summaries())
    histories = {m: r.histories for m, r in study.methods.items()}
    students = {m: r.runs[0].student.cpu().eval() for m, r in study.methods.items()}
    teacher.cpu()
    timings["total_seconds"] = time.perf_counter() - total_start
    return Study(reg, results, histories, students, teacher, timings, device=str(dev),
                 teacher_train=train_cache, teacher_test_logits=test_logits.cpu())


def compare_cifar10(methods: Sequence[str] = ("baseline", "kd", "at", "sp"), seeds: int = 2,
                    progress: bool = True) -> dict[str, dict]:
    """The CIFAR-10 comparison in the shape of :func:`kdcourse.compare.compare`, for the command
    line: ``{"teacher": {...}, method: {"mean", "std", "runs", "params", "seconds"}}`` (test
    accuracies in [0, 1]; ``seconds``: one run's training time), in the active profile."""
    return cifar10_study(methods, seeds=seeds, progress=progress).results


# ------------------------------------------------------------------ size and latency


@torch.no_grad()
def count_multiply_adds(model: nn.Module, input_shape: Sequence[int] = (3, 32, 32)) -> int:
    """Multiply-adds of one forward pass for one input, counted in the convolutions and linear
    layers (``k_h * k_w * C_in / groups`` per output value; BatchNorm, ReLU, pooling ignored)."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            per_output = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total += output[0].numel() * per_output
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    was_training = model.training
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        model.eval()
        model(torch.zeros(1, *input_shape, device=next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total


def size_latency_table(models: Mapping[str, nn.Module], accuracies: Mapping[str, float] | None = None,
                       batch_sizes: Sequence[int] = (1, 256), repeats: int = 10) -> list[dict]:
    """One row per model: parameters, float32 size (MB), millions of multiply-adds per image
    (:func:`count_multiply_adds`), median CPU latency (ms) per batch size
    (:func:`kdcourse.models.measure_latency`) and, when given, accuracy.

    Big batches are timed fewer times (``repeats`` for batch 1, at least 3 for the others).
    """
    rows = []
    for name, model in models.items():
        model = model.cpu().eval()
        row = {"model": name, "params": count_parameters(model),
               "size_mb": sum(p.numel() * p.element_size() for p in model.parameters()) / 1e6,
               "mult_adds_m": count_multiply_adds(model) / 1e6}
        for b in batch_sizes:
            reps = repeats if b == 1 else max(3, repeats // 3)
            row[f"latency_ms_b{b}"] = 1000 * measure_latency(model, (3, 32, 32), batch_size=b, repeats=reps,
                                                             warmup=2 if b == 1 else 1)
        if accuracies is not None and name in accuracies:
            row["accuracy"] = accuracies[name]
        rows.append(row)
    return rows


def format_size_latency(rows: Sequence[Mapping]) -> str:
    """The rows of :func:`size_latency_table` as a plain-text table."""
    lat_keys = [k for k in rows[0] if k.startswith("latency_ms_b")]
    head = f"{'model':<12} {'params':>9} {'MB':>6} {'M mult-adds':>11}" + "".join(
        f" {'ms @ batch ' + k.removeprefix('latency_ms_b'):>15}" for k in lat_keys) + f" {'accuracy':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        acc = f"{100 * r['accuracy']:.1f} %" if r.get("accuracy") is not None else "-"
        lines.append(f"{r['model']:<12} {r['params']:>9,} {r['size_mb']:>6.2f} {r['mult_adds_m']:>11.1f}"
                     + "".join(f" {r[k]:>15.2f}" for k in lat_keys) + f" {acc:>9}")
    return "\n".join(lines)
