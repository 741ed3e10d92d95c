# ---
# jupyter:
#   jupytext:
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lesson 08 — Capstone I: distilling on a CIFAR-10 transfer set
#
# Everything so far ran on 8x8 digits. Now the real thing: **CIFAR-10** (32x32 colour photos of
# 10 classes) and a **pretrained teacher** that ships with the course (a ResNet with 0.70 M
# parameters, 88 % test accuracy). And the situation where distillation is used every day: **a few
# labelled images and many unlabelled ones**. Hinton et al. (2015) distil on a *transfer set* that
# need not be labelled at all: the teacher labels it. Here the student gets 500 labelled images
# (50 per class) and a pool of unlabelled ones, and you measure what the teacher adds.
#
# **Goals.** By the end of this lesson you can
#
# 1. build a transfer set from a few labelled images and an unlabelled pool (label `-1`), and write
#    the cross-entropy that uses only the labelled rows (the exercise);
# 2. compare, on the same seeds, three students: labels only, the teacher's **hard** pseudo-labels,
#    and its **soft** targets (KD), and read the paired per-seed differences;
# 3. explain why soft targets did not beat hard ones here, with the experiment that shows it (the
#    temperature), and how soft the teacher's targets are on images it trained on and on new ones;
# 4. know how the result grows with a longer budget (the command line's study).
#
# Lesson 08b continues on the same data with feature and relation methods, the student's size and
# speed, and the full GPU profile; lessons 08c and 08d ask how good the teacher must be and how big
# the student should be, on this lesson's transfer set.

# %%
# Set-up: on Google Colab, install the course package first (does nothing elsewhere).
import sys
if "google.colab" in sys.modules:
    import subprocess
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "kdcourse @ git+https://github.com/kdcourse/kdcourse"], check=True)

# %%
import json
import time
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from kdcourse import transfer
from kdcourse.checks import check_labeled_cross_entropy
from kdcourse.compare import format_table
from kdcourse.data import (CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD, cifar10_labels, load_cifar10_data, tensors,
                           transfer_set)
from kdcourse.distill import UNLABELED, seed_everything
from kdcourse.models import CifarCNN, count_parameters
from kdcourse.plots import paired_gains
from kdcourse.teachers import cifar10_teacher_info, load_cifar10_teacher

torch.set_num_threads(1)  # small networks: one thread is nearly as fast, and the numbers repeat on any core count
seed_everything(0)
notebook_start = time.perf_counter()

# %% [markdown]
# ## 1. The data
#
# **Where CIFAR-10 comes from.** On your machine, `load_cifar10_data()` downloads it once with
# torchvision (about 170 MB, into the course's cache folder `~/.cache/kdcourse`) and works offline
# afterwards. Without internet, point the course at a copy: `export KDCOURSE_CIFAR10=/path/to/cifar-10-python.tar.gz`
# (the official archive, an extracted folder or an image-folder archive all work). The course's CI
# does exactly that with an offline archive. If neither is possible, the next cell stops with a
# message that says what to do. The decoded images are cached, so only the very first load takes
# a few seconds.

# %%
reg = transfer.regime()  # transfer.QUICK, or transfer.FULL with KDCOURSE_PROFILE=full
print(reg.describe())
start = time.perf_counter()
y_train, y_test = cifar10_labels()  # the labels of all 60,000 images; images are loaded as needed
print(f"CIFAR-10: {len(y_train):,} training and {len(y_test):,} test images, "
      f"{len(CIFAR10_CLASSES)} classes, labels loaded in {time.perf_counter() - start:.1f} s")
examples = load_cifar10_data(train_size=10, test_size=10)  # a stratified subset: one image per class

# %%
x_train, y_train_10 = tensors(examples.train)
mean, std = torch.tensor(CIFAR10_MEAN).view(3, 1, 1), torch.tensor(CIFAR10_STD).view(3, 1, 1)
fig, axes = plt.subplots(1, 10, figsize=(13, 1.9))
for c, ax in enumerate(axes):
    i = int((y_train_10 == c).nonzero()[0])
    ax.imshow((x_train[i] * std + mean).clamp(0, 1).permute(1, 2, 0).numpy())
    ax.set_title(CIFAR10_CLASSES[c], fontsize=9)
    ax.axis("off")
fig.suptitle("One training image per class (32x32 pixels)")
plt.show()

# %% [markdown]
# ## 2. Teacher and student
#
# The teacher was trained by `scripts/train_cifar_teacher.py` on all 50,000 training images; its
# JSON sidecar records the recipe and its accuracy on the full test set, and loading checks the
# file's SHA-256, so you know you have exactly the network that was measured. The student of this
# lesson is the smallest CNN of the course, so that three students over three seeds train in about
# two minutes on one CPU thread (section 6 shows a larger one, trained longer).

# %%
# NBVAL_CHECK_OUTPUT
teacher = load_cifar10_teacher()
info = cifar10_teacher_info()
student = CifarCNN(reg.student_widths)
print(f"teacher: {type(teacher).__name__}{tuple(info['architecture']['widths'])}, "
      f"{count_parameters(teacher):,} parameters, {info['test_accuracy']:.2%} on the 10,000 test images")
print(f"student: CifarCNN{student.widths}, {count_parameters(student):,} parameters "
      f"({count_parameters(teacher) / count_parameters(student):.0f} times fewer)")

# %% [markdown]
# **The teacher's outputs are shipped too.** On a CPU the teacher's forward pass costs about
# 7 ms per image, seven times a student's training step. Its logits never change (no augmentation
# in this lesson), so they are computed once: the course ships them for every CIFAR-10 image of the
# copy it was built on (`kdcourse/assets/cifar10_teacher_logits.npz`, 2.2 MB, SHA-256-checked),
# and on another copy (the official python batches are not pixel-identical to ours) the lesson
# computes them once and caches them on disk. The next cell says which happened.

# %% [markdown]
# ## 3. A transfer set
#
# The training set is split, stratified and seeded, into the **labelled** part (500 images, 50 per
# class) and an **unlabelled pool** (`kdcourse.data.labeled_split`); `transfer_set` joins them and
# replaces the pool's labels by `-1`, the course's mark for "no label". Three students, trained
# from the same initialisation for a given seed:
#
# | student | trains on | loss |
# |---|---|---|
# | `baseline` | the 500 labelled images | cross-entropy on the labels |
# | `pseudo` | labelled + pool | cross-entropy on the label, or on the teacher's arg-max where there is none (hard targets) |
# | `kd` | labelled + pool | $(1-\alpha)\,\mathrm{CE} + \alpha\,T^2\,\mathrm{KL}(p_t^T \,\|\, p_s^T)$, CE on the labelled rows only (soft targets) |
#
# With $T = 4$ and $\alpha = 0.9$ as in lesson 04. The pool's true labels are kept aside, only to
# measure how often the teacher is right on it.

# %%
rows = transfer.transfer_rows(reg, y_train, y_test)  # stratified and seeded, via labeled_split
part = load_cifar10_data(train_rows=torch.cat([rows["labeled"], rows["pool"]]))
x_part, y_part = tensors(part.train)
lab = torch.utils.data.TensorDataset(x_part[:reg.labeled], y_part[:reg.labeled])
pool = torch.utils.data.TensorDataset(x_part[reg.labeled:], y_part[reg.labeled:])
ts = transfer_set(lab, pool)
y_ts = tensors(ts)[1]
print(f"transfer set: {len(ts):,} images, {int((y_ts != UNLABELED).sum())} labelled, "
      f"{int((y_ts == UNLABELED).sum()):,} with label {UNLABELED}")
print("first labels:", y_ts[:8].tolist(), "...", "last labels:", y_ts[-4:].tolist())


# %% [markdown]
# ### Exercise: the cross-entropy of a transfer set
#
# A batch drawn from the transfer set mixes labelled rows and rows labelled `-1`. Write
# `labeled_cross_entropy(logits, y)`:
#
# - the cross-entropy of the student's `logits` `(batch, classes)` against `y`, **averaged over the
#   labelled rows only** (those with `y != -1`): the unlabelled rows must add nothing;
# - a batch with **no** labelled row (common: 500 labels in 3,000 images, batches of 64) returns
#   `0` with a zero gradient, not `NaN`. Careful: `F.cross_entropy(logits, y, ignore_index=-1)`
#   skips the rows but returns NaN (0 / 0) when it skips all of them.
#
# The teacher terms (KD's soft term, the pseudo-labels) average over *every* row of the batch, so
# with few labels $\alpha$ mixes two means of very different sizes, not two sums.

# %%
def labeled_cross_entropy(logits, y):
    ### BEGIN SOLUTION implement the cross-entropy over the rows with y != -1 (0 when there are none)
    labeled = y != -1
    if not labeled.any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits[labeled], y[labeled])
    ### END SOLUTION


# %%
check_labeled_cross_entropy(labeled_cross_entropy)

# %% [markdown]
# ## 4. Labels only, hard pseudo-labels, soft targets
#
# The study below trains the three students for three seeds with the package's reference
# `kdcourse.distill.labeled_cross_entropy` (the function you just wrote, checked; using the
# reference keeps the numbers on your screen equal to the ones the text quotes). The baseline trains
# 20 epochs on its 500 images (10,000 image-steps); the two others 8 epochs on the 3,000 images of
# the transfer set (24,000): question 2 asks whether that is fair. All are scored on 5,000 test images the teacher never trained
# on. The progress bar counts runs.

# %%
study = transfer.cifar10_transfer_study(reg, seeds=3)
teacher_row = study.results["teacher"]
print(f"teacher logits: {teacher_row['logits_from']}; teacher right on {teacher_row['pool_accuracy']:.1%} of the "
      f"pool, {teacher_row['mean']:.1%} of the test images")
print()
print(format_table(study.results))

# %%
runs = study.accuracies()
gains = {"kd - baseline": study.gain("kd")["runs"], "pseudo - baseline": study.gain("pseudo")["runs"],
         "pseudo - kd": study.gain("pseudo", "kd")["runs"]}
for name, d in gains.items():
    print(f"{name:<18} per seed: {', '.join(f'{100 * g:+.1f}' for g in d)} points "
          f"(mean {100 * np.mean(d):+.1f} +- {100 * np.std(d, ddof=1):.1f})")
# The lesson's claims, on paired per-seed differences over 3 seeds:
assert min(gains["kd - baseline"]) > 0.02, "KD beats labels only by more than 2 points on every seed"
assert min(gains["pseudo - baseline"]) > 0.02, "so do hard pseudo-labels"
if reg == transfer.QUICK:  # a claim about this budget: the full profile's longer one closes the gap (section 6)
    assert min(gains["pseudo - kd"]) > 0, "and at this budget hard pseudo-labels beat soft targets on every seed"


# %%
fig = paired_gains(gains, title="Paired differences, 3 seeds (points of test accuracy)")
plt.show()

# %% [markdown]
# Read the table and the differences together. The label-only student reaches 38.3 % (± 1.5 over
# the seeds): 500 images are far too few for a CNN. Give it 2,500 more
# images that only the teacher has labelled and it gains on every seed: **+5.1 ± 0.6 points with
# the soft targets** (+5.8, +5.0, +4.6) and **+8.6 ± 0.6 with the hard pseudo-labels** (+8.3,
# +9.3, +8.2). One point is 50 of the 5,000 test images, and each gain is many standard deviations of its paired
# differences: the teacher's knowledge of images the student has no label for is what distillation
# delivers.
#
# The surprise is the third line: at this budget the teacher's **arg-max beats its soft targets**,
# by +3.5 ± 1.0 points, on every seed. The assertions above keep margins below the smallest
# per-seed value (2 points for the gains over the baseline, 0 for pseudo over KD).

# %% [markdown]
# ### Why did soft targets lose? The temperature
#
# Two differences separate `kd` from `pseudo`: the soft term keeps the teacher's probabilities of the
# wrong classes, and it softens them at $T = 4$. If the wrong-class probabilities were the problem, a
# sharper target would not help; if the temperature is, KD at $T = 1$ (the teacher's own
# probabilities, nearly one-hot on these images) should close most of the gap. Same seeds, same
# pool, only $T$ changes:

# %%
sharp = transfer.cifar10_transfer_study(replace(reg, T=1.0), methods=("kd",), seeds=3)
kd_t1 = sharp.accuracies()["kd"]
by_t = {"kd (T=1) - kd (T=4)": [a - b for a, b in zip(kd_t1, runs["kd"])],
        "pseudo - kd (T=1)": [a - b for a, b in zip(runs["pseudo"], kd_t1)]}
print(f"kd at T = 1: {100 * np.mean(kd_t1):.1f} +- {100 * np.std(kd_t1, ddof=1):.1f} %")
for name, d in by_t.items():
    print(f"{name:<22} per seed: {', '.join(f'{100 * g:+.1f}' for g in d)} points")
if reg == transfer.QUICK:  # claims about this budget (see section 6 for a longer one)
    assert min(by_t["kd (T=1) - kd (T=4)"]) > 0, "the sharper target trains a better student on every seed"
    assert abs(np.mean(by_t["pseudo - kd (T=1)"])) < np.mean(gains["pseudo - kd"]) / 2, \
        "and closes more than half of the gap to the pseudo-labels"


# %% [markdown]
# KD at $T = 1$ reaches 46.2 % ± 1.1: better than at $T = 4$ on every seed (+2.3, +3.3, +2.8
# points), and within +0.7 points on average of the pseudo-labels (+0.2, +1.1, +0.7), where the gap
# was 3.5. So the soft targets as such did not cost accuracy; the **temperature** did. On these
# images the teacher's probabilities are nearly one-hot (next section), so at $T = 1$ KD is close
# to training on the arg-max; $T = 4$ spreads part of the target's mass over the wrong classes
# (0.778 nats of entropy instead of 0.033, next section), and in 8 short epochs the student learns that softer, harder-to-fit target more slowly.
# Lesson 04's digits sweep found the opposite ($T \ge 4$ best): there the student trained 40 epochs
# on 300 images; section 6 suggests that a longer budget is what a high temperature needs.

# %% [markdown]
# ## 5. How soft are the teacher's targets?
#
# The teacher was trained on all 50,000 training images, the pool included, and on those it is
# almost always right and very sure. On test images it never saw, it is less sure. The entropy of
# its targets (0: one-hot; $\log 10 = 2.30$ nats: uniform) and its accuracy, on the pool and on
# as many test images *outside* this lesson's 5,000 test images (`transfer_rows(...)["held_out"]`:
# images the teacher never trained on, never used to score a student):

# %%
print(f"{'images':<36} {'teacher right':>13} {'entropy T=1':>12} {'entropy T=4':>12}")
entropies = {}
for name, logits, labels in (("the pool (the teacher trained on it)", study.pool_logits, study.pool_labels),
                             ("held-out test images (never seen)", study.held_out_logits, study.held_out_labels)):
    entropies[name] = [transfer.soft_target_entropy(logits, T).mean().item() for T in (1, 4)]
    right = (logits.argmax(1) == labels).float().mean().item()
    print(f"{name:<36} {right:>13.1%} {entropies[name][0]:>12.3f} {entropies[name][1]:>12.3f}")
seen, unseen = entropies.values()
assert unseen[0] > 2 * seen[0], "the teacher is far less certain on images it never trained on"


# %% [markdown]
# On the pool, the images it trained on, the teacher is right 99.6 % of the time and its targets
# at $T = 1$ carry 0.033 nats: practically one-hot, nothing beyond the label. On images it never saw
# it is right 88.7 % of the time and 3.5 times less certain (0.117 nats at $T = 1$); at $T = 4$ the
# two kinds of image come much closer (0.778 against 0.860 nats), since the temperature does the
# softening. This is why a transfer set of *new* images is the usual advice: there the teacher's
# targets say more than its arg-max. Whether that outweighs the teacher's 11 % of errors on them is
# question 1 below (`pool="held-out"`).

# %% [markdown]
# ## 6. A longer budget: the command line
#
# The quick profile is what fits in two minutes on one CPU thread. The course's command line runs
# the same study with the course's 26.7k-parameter student (the one of lesson 08b's full profile), 5,000 unlabelled images
# and 12 epochs (the full profile of this lesson, `KDCOURSE_PROFILE=full`; about 5 minutes on two
# CPU cores):
#
# ```bash
# python -m kdcourse compare --dataset cifar10 --labeled 500 --unlabeled 5000 \
#     --methods baseline,pseudo,kd --seeds 3 --json results/cifar10_transfer.json
# ```
#
# Its stored output (the README says where and when it ran):

# %%
stored = Path("..") / "results" / "cifar10_transfer.json"
if stored.exists():
    longer = json.loads(stored.read_text())
    print(format_table(longer))
    for method in ("pseudo", "kd"):
        d = longer[method]["vs_baseline"]["runs"]
        print(f"{method} - baseline per seed: {', '.join(f'{100 * g:+.1f}' for g in d)} points")
else:
    longer = None
    print(f"{stored} is not here (e.g. on Colab): see the course README for this table.")

# %% [markdown]
# With the larger student (26,682 parameters), twice the pool and 12 epochs, both ways of using the
# teacher add about **14 points** to the label-only 44.9 %: KD +14.5, +14.2, +13.9 on the three
# seeds, pseudo-labels +14.3, +14.9, +14.7; KD 59.1 % against pseudo-labels 59.6 %, closer than
# their spread. The gap of section 4 has nearly closed with the longer budget, as section 4's
# experiment with the temperature suggested it would.
#
# ## Recap
#
# - A transfer set is a few labelled images plus a pool the teacher labels (`-1` marks "no label");
#   the cross-entropy averages over the labelled rows only, the teacher's terms over every row.
# - With 500 labels, adding 2,500 images labelled by the teacher lifts the student by several
#   points on every seed: hard pseudo-labels and soft targets both carry the teacher's knowledge
#   of images the student has no label for. That is distillation's everyday use.
# - Soft targets are not automatically better than hard ones: at a short budget, $T = 4$ trained a
#   worse student than the teacher's arg-max, and $T = 1$ closed most of that gap. With a longer
#   budget and a larger student the two converge (section 6).
# - A teacher is most confident on the images it trained on: there its soft targets are nearly
#   one-hot, and a temperature is what brings out its dark knowledge.
#
# ## Questions to think about
#
# 1. The teacher is right on nearly all of the pool because it trained on it. In a real project
#    the pool is new images: which of `pseudo` and `kd` would you expect to suffer more from the
#    teacher's mistakes, and how would you test it? (Hint: `replace(reg, pool="held-out")`.)
# 2. The baseline trains for 20 epochs, the others for 8 epochs on six times as many images.
#    Is the comparison fair? What would you change to give the baseline the same number of steps,
#    and what do you expect?
# 3. Section 4's claim is about one budget. Sketch the experiment that finds the budget at which
#    soft targets overtake hard ones, and how many seeds it needs.

# %% [markdown] tags=["answer-key"]
# ### Answer key (solutions only)
#
# 1. The hard pseudo-labels should suffer more. Where the teacher's arg-max is wrong (on images it
#    never saw it is right 88.7 % of the time), a pseudo-label is a confident wrong label trained with
#    full weight, while the soft target usually still gives the true class a good share and says the
#    image is ambiguous; on new images the teacher is also less certain (0.117 against 0.033 nats at
#    $T = 1$), so its soft targets there carry more than its arg-max. Test: the same study with
#    `replace(reg, pool="held-out")` for `pseudo` and `kd`, on the same seeds, comparing the paired
#    differences pseudo - kd with those on the training pool (+3.5 +- 1.0 here): they should shrink or
#    turn negative; score the students also on the pool images where the teacher is wrong. Lesson 08c
#    runs the KD half of this.
# 2. Not in steps: the baseline makes $20 \times 500$ image-steps, the others $8 \times 3000$, more than
#    twice as many. Give the baseline the same number of steps, $24000 / 500 = 48$ epochs on its images
#    (`TransferRegime(..., baseline_epochs=48)`), or better, choose its epochs on a validation split.
#    Expect little change: 500 images are fitted long before the end of such a schedule, so more
#    passes over them mostly overfit (the cosine schedule may add a little), and the others' advantage is new images, not
#    steps. The hard pseudo-labels, which add images and nothing else, already beat the baseline by
#    +8.6 +- 0.6 points at this budget.
# 3. A budget sweep: the same study at several budgets (e.g. `replace(reg, epochs=...)` doubling from
#    the quick profile's), for `pseudo` and `kd` at $T = 4$ (and $T = 1$ as a control), on the same
#    seeds, recording the paired difference kd - pseudo at each budget; the crossing is the budget where
#    its mean changes sign with a spread that excludes zero. Scale the student too: section 6's larger
#    student with a longer budget nearly closed the gap (KD 59.1 % against pseudo-labels 59.6 %). Seeds:
#    the paired differences here spread by about a point, and near the crossing the difference is small
#    by definition, so three seeds can show the trend across budgets but not locate the crossing; rerun
#    the budgets around it with many more seeds (the standard error falls only like one over the square
#    root of their number).
#
