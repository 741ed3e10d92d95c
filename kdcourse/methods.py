"""The method registry: a method is one entry, a name and the loss terms it adds.

A :class:`LossTerm` is ``weight * fn(student_out, teacher_out, y)``; it names the features it reads
from the student and from the teacher separately (as torchdistill does), so a term can pair a
student layer with a teacher layer of another name, e.g. attention transfer from the teacher's
``layer3`` into the student's ``layer2``.

    >>> parse_method("KD + at")
    ('kd', 'at')
    >>> [t.name for t in method_terms("kd+at", student=s, teacher=t, layers={"at": {"layer1": "layer2"}})]
    ['ce', 'kd', 'at']

Every method is one :class:`Method` in :data:`REGISTRY`; ``python -m kdcourse methods`` prints
the table. A sum such as ``kd+at`` is parsed here only (:func:`parse_method`): the label loss
(CE, weighted ``1 - alpha`` when ``kd`` is in the sum), then each method's own terms.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import losses
from .models import feature_extractor

__all__ = [
    "LossTerm",
    "Method",
    "REGISTRY",
    "METHODS",
    "DEFAULT_WEIGHTS",
    "parse_method",
    "layer_pairs",
    "method_terms",
    "method_table",
    "UNLABELED",
    "labeled_cross_entropy",
    "cross_entropy_term",
    "pseudo_label_targets",
    "pseudo_label_term",
    "kd_term",
    "make_regressor",
    "hint_term",
    "paired_attention_loss",
    "attention_term",
]

Outputs = dict[str, torch.Tensor]
Pairs = tuple[tuple[str, str], ...]


@dataclass
class LossTerm:
    """One weighted part of the training objective: ``weight * fn(student_out, teacher_out, y)``.

    ``student_features`` and ``teacher_features`` name the intermediate features ``fn`` reads from
    each model's outputs (besides ``"logits"``); ``features`` is the shorthand for a term that reads
    the same names on both sides. ``module`` holds trainable parameters the term owns (e.g. the
    FitNets regressor), which the optimizer then trains along with the student. ``warmup_epochs``
    ramps the weight in linearly: ``weight * min(epoch / warmup_epochs, 1)`` in epoch 1, 2, ...
    (mdistiller's DKD warm-up); 0 means the full weight from the start.
    """

    name: str
    weight: float
    fn: Callable[[Outputs, Outputs | None, torch.Tensor], torch.Tensor]
    features: tuple[str, ...] = ()
    module: nn.Module | None = None
    needs_teacher: bool = True
    warmup_epochs: int = 0
    student_features: tuple[str, ...] | None = None  # None: ``features``
    teacher_features: tuple[str, ...] | None = None  # None: ``features``

    def __post_init__(self):
        self.features = tuple(self.features)
        self.student_features = tuple(self.features if self.student_features is None else self.student_features)
        self.teacher_features = tuple(self.features if self.teacher_features is None else self.teacher_features)

    def weight_at(self, epoch: int) -> float:
        """The weight in (1-based) ``epoch``, after the warm-up ramp."""
        if self.warmup_epochs <= 0:
            return self.weight
        return self.weight * min(max(epoch, 1) / self.warmup_epochs, 1.0)


# ------------------------------------------------------------------ the terms


UNLABELED = -1
"""The label of an example without one (a transfer-set image only the teacher labels)."""


def labeled_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""``CE(y, softmax(z_s))`` averaged over the labelled rows of the batch only.

    .. math:: \mathrm{CE} = \frac{1}{|L|} \sum_{i \in L} -\log \operatorname{softmax}(z_i)_{y_i},
              \quad L = \{i : y_i \neq -1\}

    Rows labelled :data:`UNLABELED` (``-1``) add nothing. A batch with no labelled row gives 0
    (with a zero gradient), not the NaN of ``F.cross_entropy(..., ignore_index=-1)``'s 0 / 0. So
    in a transfer set with few labels the CE term is a mean over a handful of rows while the
    teacher terms (``batchmean``) average over every row of the batch: ``alpha`` mixes two means,
    not two sums.
    """
    labeled = y != UNLABELED
    if bool(labeled.all()):
        return F.cross_entropy(logits, y)
    if not bool(labeled.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[labeled], y[labeled])


def cross_entropy_term(weight: float = 1.0) -> LossTerm:
    """The hard-label loss ``CE(y, softmax(z_s))`` on the labelled rows (:func:`labeled_cross_entropy`)."""
    return LossTerm("ce", weight, lambda s, t, y: labeled_cross_entropy(s["logits"], y), needs_teacher=False)


def pseudo_label_targets(teacher_logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The label where there is one, the teacher's arg-max (a hard pseudo-label) where there is not."""
    return torch.where(y == UNLABELED, teacher_logits.argmax(1), y)


def pseudo_label_term(weight: float = 1.0) -> LossTerm:
    """Hard pseudo-labels: ``CE`` against :func:`pseudo_label_targets`, averaged over every row.

    The teacher's soft targets are collapsed to their arg-max, so what the student learns from the
    teacher is only *which* class, never how similar the others are (the comparator of soft KD).
    """
    return LossTerm("pseudo", weight,
                    lambda s, t, y: F.cross_entropy(s["logits"], pseudo_label_targets(t["logits"], y)))


def kd_term(weight: float, T: float, loss_fn: Callable = losses.kd_loss) -> LossTerm:
    """The soft-target term ``T^2 KL(p_t^T || p_s^T)`` (:func:`kdcourse.losses.kd_loss`)."""
    return LossTerm("kd", weight, lambda s, t, y: loss_fn(s["logits"], t["logits"], T))


def _probe_shapes(model: nn.Module, feature: str, sample_input: torch.Tensor) -> torch.Size:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        shape = feature_extractor(model, [feature])(sample_input[:2])[feature].shape
    model.train(was_training)
    return shape


def make_regressor(student_shape: Sequence[int], teacher_shape: Sequence[int]) -> nn.Module:
    """The FitNets regressor: a 1x1 convolution (feature maps) or a linear layer (vectors).

    Spatial sizes must already agree; only the channel / width count is mapped.
    """
    if len(student_shape) == 4 and len(teacher_shape) == 4:
        if tuple(student_shape[2:]) != tuple(teacher_shape[2:]):
            raise ValueError(
                f"hint layers must share their spatial size, got student {tuple(student_shape[2:])} "
                f"and teacher {tuple(teacher_shape[2:])}: choose another feature"
            )
        return nn.Conv2d(student_shape[1], teacher_shape[1], kernel_size=1, bias=False)
    if len(student_shape) == 2 and len(teacher_shape) == 2:
        return nn.Linear(student_shape[1], teacher_shape[1])
    raise ValueError(f"cannot map a student feature of shape {tuple(student_shape)} onto {tuple(teacher_shape)}")


def hint_term(weight: float, student: nn.Module, teacher: nn.Module, feature: str,
              sample_input: torch.Tensor, teacher_feature: str | None = None) -> LossTerm:
    """FitNets: match the teacher's ``teacher_feature`` (default: the same name as the student's
    ``feature``) through a trained regressor."""
    t_name = teacher_feature or feature
    regressor = make_regressor(_probe_shapes(student, feature, sample_input),
                               _probe_shapes(teacher, t_name, sample_input))
    return LossTerm(
        "hint", weight,
        lambda s, t, y: losses.hint_loss(s[feature], t[t_name], regressor),
        module=regressor, student_features=(feature,), teacher_features=(t_name,),
    )


def paired_attention_loss(student_out: Mapping[str, torch.Tensor], teacher_out: Mapping[str, torch.Tensor],
                          pairs: Mapping[str, str] | Sequence[tuple[str, str]]) -> torch.Tensor:
    r"""Attention transfer over pairs of layers, ``{student layer: teacher layer}``, summed over the pairs.

    .. math:: L = \sum_{(s, t) \in P} \operatorname{mean}\big(Q_S^{(s)} - Q_T^{(t)}\big)^2

    with :math:`Q` the unit-norm attention maps of :func:`kdcourse.losses.attention_map`: the
    authors' code, RepDistiller's and mdistiller's ``Attention`` add the stages' losses
    (:func:`kdcourse.losses.multi_stage_attention_loss`) and put the scale in the weight. With one
    pair of the same name it is :func:`kdcourse.losses.attention_transfer_loss`.
    """
    pairs = layer_pairs(pairs)
    return losses.multi_stage_attention_loss([student_out[s] for s, _ in pairs],
                                             [teacher_out[t] for _, t in pairs])


def attention_term(weight: float, pairs) -> LossTerm:
    """Attention transfer (Zagoruyko & Komodakis 2017) over ``pairs`` (:func:`layer_pairs`):
    ``weight *`` :func:`paired_attention_loss`."""
    pairs = layer_pairs(pairs)
    return LossTerm("at", weight, lambda s, t, y: paired_attention_loss(s, t, pairs),
                    student_features=tuple(dict.fromkeys(s for s, _ in pairs)),
                    teacher_features=tuple(dict.fromkeys(t for _, t in pairs)))


def _pair_term(name: str, weight: float, pair: tuple[str, str], loss_fn: Callable) -> LossTerm:
    s_name, t_name = pair
    return LossTerm(name, weight, lambda s, t, y: loss_fn(s[s_name], t[t_name]),
                    student_features=(s_name,), teacher_features=(t_name,))


def _dkd_labeled(student_logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor, T: float):
    if bool((y == UNLABELED).any()):
        raise ValueError("dkd splits the loss at the true class, so every example needs a label; "
                         "use kd or pseudo on a transfer set with unlabelled images")
    return losses.dkd_loss(student_logits, teacher_logits, y, T=T)


# ------------------------------------------------------------------ layers and sums


def layer_pairs(spec) -> Pairs:
    """A layer choice as ``((student layer, teacher layer), ...)``.

    ``spec`` is a layer name (the same on both sides), a mapping ``{student layer: teacher layer}``
    or a sequence whose items are names or ``(student layer, teacher layer)`` pairs.
    """
    if isinstance(spec, str):
        items = [(spec, spec)]
    elif isinstance(spec, Mapping):
        items = list(spec.items())
    elif isinstance(spec, Sequence):
        items = [(p, p) if isinstance(p, str) else tuple(p) for p in spec]
    else:
        raise TypeError(f"layers must be a name, a {{student: teacher}} dict or a sequence of pairs, got {spec!r}")
    if not items or not all(len(p) == 2 and all(isinstance(n, str) for n in p) for p in items):
        raise ValueError(f"layers must name at least one (student layer, teacher layer) pair, got {spec!r}")
    return tuple((s, t) for s, t in items)


def parse_method(method: str) -> tuple[str, ...]:
    """``"kd+at"`` -> ``("kd", "at")``: the one place where sums of methods are split and checked."""
    if not isinstance(method, str):
        raise TypeError(f"method must be a name such as 'kd' or a sum such as 'kd+at', got {method!r}")
    parts = tuple(dict.fromkeys(p.strip().lower() for p in method.split("+") if p.strip()))
    unknown = [p for p in parts if p not in REGISTRY]
    if not parts or unknown:
        raise ValueError(f"unknown method {method!r}; use one of {METHODS} or a sum like 'kd+at'")
    alone = [p for p in parts if REGISTRY[p].alone]
    if alone and len(parts) > 1:
        raise ValueError(f"{alone[0]!r} replaces the label loss and cannot be summed with others, got {method!r}")
    return parts


# ------------------------------------------------------------------ the registry


@dataclass(frozen=True)
class Context:
    """What a method's terms are built from (:func:`method_terms` fills it in)."""

    student: nn.Module | None
    teacher: nn.Module | None
    sample_input: torch.Tensor | None
    T: float
    alpha: float
    weights: Mapping[str, float]
    pairs: Pairs | None  # the layers this method reads; None for logit methods
    dkd_warmup: int = 0

    def one_pair(self, method: str) -> tuple[str, str]:
        if len(self.pairs) != 1:
            raise ValueError(f"{method} reads one (student layer, teacher layer) pair, got {list(self.pairs)}")
        return self.pairs[0]


def _hint(ctx: Context) -> list[LossTerm]:
    if ctx.sample_input is None:
        raise ValueError("the hint method needs sample_input to size its regressor")
    s_name, t_name = ctx.one_pair("hint")
    return [hint_term(ctx.weights["hint"], ctx.student, ctx.teacher, s_name, ctx.sample_input, t_name)]


def _rkd(ctx: Context) -> list[LossTerm]:
    pair = ctx.one_pair("rkd")
    return [_pair_term("rkd_distance", ctx.weights["rkd_distance"], pair, losses.rkd_distance_loss),
            _pair_term("rkd_angle", ctx.weights["rkd_angle"], pair, losses.rkd_angle_loss)]


def _maps_layer(model: nn.Module | None) -> str:
    if hasattr(model, "layer2"):
        return "layer2"
    raise ValueError(
        f"attention transfer needs convolutional feature maps; {type(model).__name__} has none. "
        "Use a CNN (DigitsCNN, CifarCNN, CifarResNet)."
    )


@dataclass(frozen=True)
class Method:
    """One entry of the registry.

    ``terms(ctx)`` builds the method's own loss terms; the label loss is added by
    :func:`method_terms` (``alone`` methods replace it). ``softens_labels``: the label loss is
    weighted ``1 - alpha`` (KD's convention). ``default_layer(student)`` picks the layer a
    feature or relation method reads when none is given (``None``: a logit method). ``loss``,
    ``weights`` (keys of :data:`DEFAULT_WEIGHTS`), ``function`` and ``paper`` are what
    ``python -m kdcourse methods`` prints; ``term_names`` is what :func:`method_terms` builds.
    """

    name: str
    loss: str
    term_names: tuple[str, ...]
    function: str
    paper: str
    terms: Callable[[Context], list[LossTerm]] = lambda ctx: []
    weights: tuple[str, ...] = ()
    default_layer: Callable[[nn.Module | None], str] | None = None
    softens_labels: bool = False
    alone: bool = False
    needs_teacher: bool = True


#: Default term weights, as the reference implementations (CIFAR) set them.
DEFAULT_WEIGHTS = {
    "hint": 100.0,  # x the MSE: mdistiller FITNET.LOSS.FEAT_WEIGHT = 100, RepDistiller "--distill hint -b 100"
    "at": 1000.0,  # x the sum over stages: mdistiller AT.LOSS.FEAT_WEIGHT = 1000, RepDistiller -b 1000
    "rkd_distance": 25.0,  # Park et al.
    "rkd_angle": 50.0,
    "sp": 3000.0,  # Tung & Mori: gamma = 3000
    "dkd": 1.0,  # the DKD term's own alpha / beta set its parts (alpha=1, beta=8)
}

_ENTRIES = [
    Method("baseline", "CE(y, p_s)", ("ce",), "methods.labeled_cross_entropy", "labels only",
           needs_teacher=False),
    Method("kd", "(1 - alpha) CE + alpha T^2 KL(p_t^T || p_s^T)", ("ce", "kd"), "losses.kd_loss",
           "Hinton, Vinyals & Dean 2015", terms=lambda c: [kd_term(c.alpha, c.T)], softens_labels=True),
    Method("hint", "CE + w MSE(r(student feature), teacher feature)", ("ce", "hint"), "losses.hint_loss",
           "FitNets, Romero et al. 2015", terms=_hint, weights=("hint",),
           default_layer=lambda m: "layer2" if hasattr(m, "layer2") else "embedding"),
    Method("at", "CE + w sum over layer pairs of mean (Q_s - Q_t)^2, Q = unit-norm attention map", ("ce", "at"),
           "losses.multi_stage_attention_loss", "Zagoruyko & Komodakis 2017",
           terms=lambda c: [attention_term(c.weights["at"], c.pairs)], weights=("at",), default_layer=_maps_layer),
    Method("rkd", "CE + w_d Huber(psi_D) + w_a Huber(psi_A)", ("ce", "rkd_distance", "rkd_angle"),
           "losses.rkd_distance_loss, losses.rkd_angle_loss", "RKD, Park et al. 2019", terms=_rkd,
           weights=("rkd_distance", "rkd_angle"), default_layer=lambda m: "embedding"),
    Method("sp", "CE + w ||G_t - G_s||_F^2 / b^2", ("ce", "sp"), "losses.similarity_preserving_loss",
           "SP, Tung & Mori 2019", weights=("sp",), default_layer=lambda m: "embedding",
           terms=lambda c: [_pair_term("sp", c.weights["sp"], c.one_pair("sp"), losses.similarity_preserving_loss)]),
    Method("dkd", "CE + alpha TCKD + beta NCKD (alpha 1, beta 8)", ("ce", "dkd"), "losses.dkd_loss",
           "DKD, Zhao et al. 2022", weights=("dkd",),
           terms=lambda c: [LossTerm("dkd", c.weights["dkd"], lambda s, t, y: _dkd_labeled(s["logits"], t["logits"],
                                                                                            y, c.T),
                                     warmup_epochs=int(c.dkd_warmup))]),
    Method("pseudo", "CE(teacher's arg-max on unlabelled rows, the label elsewhere)", ("pseudo",),
           "methods.pseudo_label_targets", "hard pseudo-labels", terms=lambda c: [pseudo_label_term(1.0)],
           alone=True),
]

REGISTRY: dict[str, Method] = {m.name: m for m in _ENTRIES}
"""Every method by name; one new method is one new entry here."""

METHODS = tuple(REGISTRY)


def method_terms(
    method: str,
    *,
    student: nn.Module | None = None,
    teacher: nn.Module | None = None,
    sample_input: torch.Tensor | None = None,
    T: float = 4.0,
    alpha: float = 0.9,
    feature=None,
    layers: Mapping[str, object] | None = None,
    weights: Mapping[str, float] | None = None,
    dkd_warmup: int = 0,
) -> list[LossTerm]:
    """The loss terms of a named method or a sum of methods (``kd+at``).

    - ``baseline``: ``CE``;
    - ``kd``: ``(1 - alpha) CE + alpha T^2 KL`` (Hinton et al. 2015);
    - ``hint`` / ``at`` / ``rkd`` / ``sp``: ``CE + weight * feature-or-relation term``;
    - ``dkd``: ``CE + DKD`` (Zhao et al. 2022, alpha=1, beta=8);
    - ``pseudo``: ``CE`` against the teacher's arg-max on unlabelled rows (label ``-1``), the
      label elsewhere (:func:`pseudo_label_term`; hard targets, no soft ones);
    - ``kd+at`` etc.: the KD terms plus the other method's terms.

    The layers a feature or relation method reads: ``layers[method]`` if given, else ``feature``
    (for every such method of the sum), else the method's default (``layer2`` for hint and AT,
    ``embedding`` for relations). Each is a :func:`layer_pairs` spec: a name, or
    ``{student layer: teacher layer}`` for networks whose layers differ (AT sums over several
    pairs; hint, RKD and SP read one). ``weights`` overrides :data:`DEFAULT_WEIGHTS`.
    ``dkd_warmup`` ramps the DKD term in over that many epochs, as mdistiller does
    (``DKD.WARMUP = 20`` of its 240 CIFAR-100 epochs); pass the terms to ``train`` with ``terms=``.
    """
    parts = parse_method(method)
    losses._check_alpha(alpha)
    losses._check_temperature(T)
    entries = [REGISTRY[p] for p in parts]
    if any(e.needs_teacher for e in entries) and teacher is None:
        raise ValueError(f"method {method!r} needs a teacher: pass teacher=...")
    w = {**DEFAULT_WEIGHTS, **(weights or {})}
    layers = dict(layers or {})
    terms = [] if any(e.alone for e in entries) else [
        cross_entropy_term(1 - alpha if any(e.softens_labels for e in entries) else 1.0)]
    for entry in entries:
        pairs = None
        if entry.default_layer is not None:
            spec = layers.get(entry.name, feature)
            pairs = layer_pairs(spec if spec is not None else entry.default_layer(student))
        terms += entry.terms(Context(student, teacher, sample_input, T, alpha, w, pairs, dkd_warmup))
    return terms


def method_table() -> str:
    """Every method, its loss, default weights, function and paper (``python -m kdcourse methods``)."""
    rows = [("method", "loss", "default weights", "function", "paper")]
    for entry in REGISTRY.values():
        weights = ", ".join(f"{k} {DEFAULT_WEIGHTS[k]:g}" for k in entry.weights) or "-"
        rows.append((entry.name, entry.loss, weights, entry.function, entry.paper))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.append("")
    lines.append("Sums such as kd+at add the second method's terms to KD's. Weights: kdcourse.methods."
                 "DEFAULT_WEIGHTS (as the reference implementations); the lessons pass tuned ones explicitly.")
    return "\n".join(lines)
