"""Exercise checkers. Each ``check_*`` runs a learner's function on fixed inputs against the
reference in :mod:`kdcourse.losses` (or :mod:`kdcourse.methods`); when right it prints one
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

from . import capstone as _capstone  # noqa: E402
from . import features as _features  # noqa: E402
from . import lm as _lm_tables  # noqa: E402
from . import logits as _logit_tables  # noqa: E402
from . import relations as _relation_tables  # noqa: E402
from . import statistics as _statistics_tables  # noqa: E402

EXERCISES = {e.name: e for e in (
    _logit_tables.SOFTMAX_WITH_TEMPERATURE, _logit_tables.ENTROPY, _logit_tables.KD_LOSS,
    _logit_tables.DISTILLATION_LOSS, _features.HINT_LOSS, _features.ATTENTION_MAP, _features.ATTENTION_TRANSFER_LOSS,
    _relation_tables.RKD_DISTANCE_LOSS, _relation_tables.RKD_ANGLES, _relation_tables.RKD_ANGLE_LOSS,
    _relation_tables.SIMILARITY_MATRIX, _relation_tables.SIMILARITY_PRESERVING_LOSS,
    _capstone.PAIRED_ATTENTION_LOSS, _capstone.LABELED_CROSS_ENTROPY, _statistics_tables.PAIRED_GAIN,
    *_lm_tables.EXERCISES.values())}
"""Every exercise written as a table (:class:`kdcourse.checks.engine.Exercise`), by name; the training
step, the regressor, the hint term and lesson 07's diagnosis are written by hand."""

# A skipped exercise does not stop its lesson: each checker, given the untouched stub, puts the
# package's reference in its place and says so (kdcourse/checks/fallback.py). Lesson 07's
# diagnoses are answers, not functions, and its lesson runs past them without a fallback.
from .. import losses as _losses  # noqa: E402
from .. import methods as _methods  # noqa: E402
from .. import models as _models  # noqa: E402
from . import fallback as _fallback  # noqa: E402
from . import lm as _lm  # noqa: E402
from . import logits as _logits  # noqa: E402
from . import relations as _relations  # noqa: E402
from . import statistics as _statistics  # noqa: E402

_REFERENCES = {  # checker -> (the reference a skipped exercise is replaced by, its name as printed)
    "check_softmax_with_temperature": (_losses.softmax_with_temperature, "kdcourse.losses.softmax_with_temperature"),
    "check_entropy": (_logits._reference_entropy, "the entropy -sum p log p of kdcourse.checks"),
    "check_kd_loss": (_losses.kd_loss, "kdcourse.losses.kd_loss"),
    "check_distillation_loss": (_losses.distillation_loss, "kdcourse.losses.distillation_loss"),
    "check_count_parameters": (_models.count_parameters, "kdcourse.models.count_parameters"),
    "check_accuracy": (_fallback.reference_accuracy, "kdcourse.checks.fallback.reference_accuracy"),
    "check_kd_training_step": (_fallback.reference_kd_training_step,
                               "kdcourse.checks.fallback.reference_kd_training_step"),
    "check_make_regressor": (_methods.make_regressor, "kdcourse.methods.make_regressor"),
    "check_hint_loss": (_losses.hint_loss, "kdcourse.losses.hint_loss"),
    "check_hint_term": (_methods.hint_term, "kdcourse.methods.hint_term"),
    "check_attention_map": (_losses.attention_map, "kdcourse.losses.attention_map"),
    "check_attention_transfer_loss": (_losses.attention_transfer_loss, "kdcourse.losses.attention_transfer_loss"),
    "check_rkd_distance_loss": (_losses.rkd_distance_loss, "kdcourse.losses.rkd_distance_loss"),
    "check_rkd_angles": (_relations._reference_angles, "the RKD angles of kdcourse.checks"),
    "check_rkd_angle_loss": (_losses.rkd_angle_loss, "kdcourse.losses.rkd_angle_loss"),
    "check_similarity_matrix": (_losses.similarity_matrix, "kdcourse.losses.similarity_matrix"),
    "check_similarity_preserving_loss": (_losses.similarity_preserving_loss,
                                         "kdcourse.losses.similarity_preserving_loss"),
    "check_labeled_cross_entropy": (_methods.labeled_cross_entropy, "kdcourse.methods.labeled_cross_entropy"),
    "check_paired_attention_loss": (_methods.paired_attention_loss, "kdcourse.methods.paired_attention_loss"),
    "check_paired_gain": (_statistics._reference, "the paired gain of kdcourse.checks.statistics"),
    "check_masked_token_kd": (_lm.MASKED_TOKEN_KD.reference, "kdcourse.losses.token_kd_loss"),
    "check_reverse_kl": (_lm.REVERSE_KL.reference, "kdcourse.losses.token_kd_loss(divergence='reverse')"),
    "check_renormalize_top_k": (_lm.RENORMALIZE_TOP_K.reference, "a softmax over the top-k log-probabilities"),
}
for _name, (_reference, _shown) in _REFERENCES.items():
    globals()[_name] = _fallback.with_fallback(globals()[_name], _reference, _shown)
del _name, _reference, _shown
