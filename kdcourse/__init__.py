"""kdcourse: the helper package of a hands-on knowledge-distillation course.

Modules (each one idea): ``config`` (profile, cache), ``data`` (digits, CIFAR-10, transfer
sets), ``models`` (teachers and students), ``losses`` (one pure function per method),
``distill`` (the Distiller and the one training loop), ``transfer`` (transfer-set studies), ``views``
(a teacher cache for augmented views), ``calibration`` (fidelity and calibration metrics),
``checks`` (exercise checkers), ``widgets`` (slider explorers), ``plots`` (shared figures).
"""

__version__ = "0.1.0"
