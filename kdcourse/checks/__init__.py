"""Exercise checkers. Each ``check_*`` runs a learner's function on fixed inputs against the
reference in the package (:mod:`kdcourse.losses`, :mod:`kdcourse.methods`, :func:`kdcourse.distill.accuracy`,
:func:`kdcourse.models.count_parameters`); when right it prints one
success line, when wrong it raises ``AssertionError`` whose message names the likely mistake.
"""
from .logits import *  # lessons 01-02: softmax, entropy, kd_loss, distillation_loss
from .features import *  # lesson 05: FitNets regressor and hint loss, attention transfer
from .relations import *  # lesson 06: RKD distance and angle, similarity-preserving
from .training import *  # lessons 03-04: count_parameters, accuracy, the KD training step
from .capstone import *  # lesson 08: attention transfer between layers of different names
from .statistics import check_paired_gain  # lesson 08c: the paired per-seed gain
from .lm import check_masked_token_kd, check_renormalize_top_k, check_reverse_kl  # lesson 09
from .pitfalls import *  # lesson 07: diagnose a mystery distiller from its symptoms

from . import capstone, engine, features, lm, logits, relations, statistics, training  # noqa: E402

EXERCISES = {e.name: e for module in (logits, training, features, relations, capstone, statistics, lm)
             for e in vars(module).values() if isinstance(e, engine.Exercise)}
"""Every exercise written as a table (:class:`kdcourse.checks.engine.Exercise`), by name; the KD training
step, the regressor, the hint term and lesson 07's diagnosis are written by hand."""

# A skipped exercise does not stop its lesson: each checker, given the untouched stub, puts the
# package's reference in its place and says so (kdcourse/checks/fallback.py). Lesson 07's
# diagnoses are answers, not functions, and its lesson runs past them without a fallback.
from .. import distill as _distill  # noqa: E402
from .. import methods as _methods  # noqa: E402
from . import fallback as _fallback  # noqa: E402

_REFERENCES = {  # the checkers written by hand -> (the reference a skipped exercise is replaced by, its name as printed)
    "check_kd_training_step": (_distill.kd_training_step, "kdcourse.distill.kd_training_step"),
    "check_make_regressor": (_methods.make_regressor, "kdcourse.methods.make_regressor"),
    "check_hint_term": (_methods.hint_term, "kdcourse.methods.hint_term"),
    **{f"check_{name}": (e.reference, e.shown_reference) for name, e in EXERCISES.items()},  # the tables
}
for _name, (_reference, _shown) in _REFERENCES.items():
    globals()[_name] = _fallback.with_fallback(globals()[_name], _reference, _shown)
del _name, _reference, _shown
