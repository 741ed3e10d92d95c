"""Exercise checkers. Each ``check_*`` runs a learner's function on fixed inputs against the
reference in :mod:`kdcourse.losses` (or :mod:`kdcourse.distill`); when right it prints one
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
