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
# # Lesson 07 — Pitfalls and diagnostics: find the bug
#
# Distillation code fails quietly. A missing factor, a swapped argument or a teacher left in the
# wrong mode does not crash anything: the student still trains, its accuracy is still plausible,
# and the only trace is a number a little off. This lesson collects seven classic mistakes, each
# reproduced by a broken distiller in `kdcourse.pitfalls` with **exactly one** bug, and measures
# what each does to the same small run as the correct distiller of lesson 04:
#
# $$
# L = \alpha\, T^2\, \mathrm{KL}\!\left(p_t^T \,\|\, p_s^T\right) + (1 - \alpha)\, \mathrm{CE}\!\left(y, p_s\right).
# $$
#
# **Goals.** By the end of this lesson you can
#
# 1. name the symptoms to check on any distiller (the loss parts at the first step, how far the
#    teacher moved, the teacher's accuracy afterwards) and diagnose two mystery distillers from
#    their symptoms alone (exercise);
# 2. say what each mistake does, measured over several seeds: which ones are harmless in our regime,
#    which one is silent, which one is a disaster;
# 3. test a hypothesis about a published result in which logit KD lost to plain training;
# 4. measure the *capacity gap* (the gain of KD against the student's size), tell a capacity limit
#    from a training-budget limit, and test a teacher-assistant chain as the remedy.

# %%
# Set-up: on Google Colab, install the course package first (does nothing elsewhere).
import sys
if "google.colab" in sys.modules:
    import subprocess
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "kdcourse @ git+https://github.com/kdcourse/kdcourse"], check=True)

# %%
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from kdcourse import pitfalls, plots
from kdcourse.checks import check_diagnosis
from kdcourse.compare import DIGITS_REGIME
from kdcourse.config import pick
from kdcourse.data import load_digits_data, subset, tensors
from kdcourse.distill import evaluate, freeze, seed_everything, teacher_outputs, train
from kdcourse.losses import kd_loss
from kdcourse.models import DigitsCNN, count_parameters
from kdcourse.pitfalls import PITFALLS, first_step_parts, teacher_drift, train_with_pitfall

torch.set_num_threads(1)  # tiny networks: one thread is as fast, and the numbers repeat on any core count
notebook_start = time.perf_counter()

# %% [markdown]
# ## 1. The setting
#
# The regime of lessons 03 and 04, where distillation helps: a `DigitsCNN(8)` student trained for 40
# epochs at learning rate $3 \times 10^{-3}$ on a **transfer set of 300 images**, with $T = 4$ and
# $\alpha = 0.9$. One change: the teacher, a `DigitsCNN(32)` trained on all 1,077 training images,
# gets a dropout layer (p = 0.3) before its head. It already has BatchNorm after every convolution;
# with dropout too, a teacher left in train mode has something to get wrong.
#
# The teacher's outputs on the transfer set are computed once and cached: legitimate for every
# distiller here except the two teacher pitfalls, which need live teacher passes (a cache would hide
# their bug).

# %%
data = load_digits_data(images=True)
transfer = subset(data.train, 300, seed=0)
x_transfer, y_transfer = tensors(transfer)

seed_everything(0)
teacher = pitfalls.digits_teacher_with_dropout(width=32, p=0.3)
train(teacher, data.train, epochs=15, lr=1e-3, seed=0)
freeze(teacher)
teacher_test = evaluate(teacher, data.test)
print(f"teacher: {count_parameters(teacher):,} parameters, test accuracy {teacher_test:.1%}")

STUDENT_WIDTH, EPOCHS, LR, T, ALPHA = 8, 40, 3e-3, 4.0, 0.9
TUNED = DIGITS_REGIME  # feature-term weights and layers chosen on the validation set in lessons 05-06
print(f"feature terms as tuned in lesson 05: hint weight {TUNED.weights['hint']:g} on {TUNED.features['hint']}, "
      f"AT weight {TUNED.weights['at']:g} on {TUNED.features['at']}")
SEEDS = list(range(pick(quick=3, full=10)))
cache = teacher_outputs(teacher, x_transfer)


# %% [markdown]
# Every experiment below goes through one small function. For each seed it starts from the same
# initial student (so differences between methods are paired), trains it with a method (`baseline`
# = labels only, `correct` = the distiller of lesson 04, `at` / `hint` = feature distillation from
# lesson 05, or the name of a pitfall), and records the student's test accuracy, its history, and
# what happened to the teacher: its test accuracy after training and how far it moved
# (`teacher_drift`: the largest change of any weight, and of any BatchNorm running statistic).

# %%
def run(method, width=STUDENT_WIDTH, seeds=SEEDS, teacher=teacher, cache=cache, epochs=EPOCHS, curves=True):
    """Train one student per seed with `method`; return per-seed accuracies, histories and teacher checks."""
    out = {"acc": [], "train_acc": [], "histories": [], "teacher_acc": [], "drift": [], "students": []}
    for seed in seeds:
        seed_everything(100 + seed)  # the same initial student for every method
        student = DigitsCNN(width)
        settings = dict(epochs=epochs, lr=LR, seed=seed, progress=False, val_data=data.val if curves else None)
        if method in ("baseline", "at", "hint", "kd+at"):  # lesson 05's weights and layers for the feature terms
            history = train(student, transfer, teacher=teacher, method=method, T=T, alpha=ALPHA,
                            weights=TUNED.weights, layers=TUNED.features, **settings)
            history.teacher = teacher
        else:
            history = train_with_pitfall(method, student, transfer, teacher, T=T, alpha=ALPHA,
                                         teacher_cache=cache, **settings)
        out["acc"].append(evaluate(student, data.test))
        out["train_acc"].append(history.train_acc[-1])
        out["teacher_acc"].append(evaluate(history.teacher, data.test))
        out["drift"].append(teacher_drift(teacher, history.teacher))
        out["histories"].append(history)
        out["students"].append(student)
    return out


def pct(values):
    """'mean ± std' of accuracies, in percent."""
    return f"{100 * np.mean(values):.1f} ± {100 * np.std(values, ddof=1):.1f}"  # the sample standard deviation


start = time.perf_counter()
results = {name: run(name) for name in ("baseline", "correct")}
for name, r in results.items():
    print(f"{name:9s} test accuracy {pct(r['acc'])} %  over {len(SEEDS)} seeds")
print(f"({time.perf_counter() - start:.1f} s)")

# %% [markdown]
# The correct distiller beats the label-only baseline, as in lesson 04. This is the yardstick for
# every broken distiller below.
#
# ## 2. Seven classic mistakes
#
# Each entry of `pitfalls.PITFALLS` is one mistake. The first four live in the soft-target loss and
# are drop-in replacements for `kd_loss`; the fifth is a weighting convention; the last two are
# mistakes of the training set-up, where the teacher sits inside the module being trained (a common
# way to write a distiller: `wrapper = Wrapper(student, teacher); wrapper.train();
# Adam(wrapper.parameters())`).

# %%
# NBVAL_CHECK_OUTPUT
for name, mistake in PITFALLS.items():
    print(f"{name:20s} {mistake}")

# %% [markdown]
# ## 3. Symptoms, and two mystery distillers
#
# What would you check if a distiller looked wrong? Three cheap probes catch most bugs:
#
# 1. **The loss parts at the first step.** Before any update, on one batch and one random student,
#    the correct distiller and a broken one should give the same hard term and, if the soft-target
#    code is right, the same soft term. `first_step_parts` returns each term's value, its weight, and
#    the soft term's share of the weighted total.
# 2. **The teacher.** A frozen teacher does not move: compare its weights and its BatchNorm running
#    statistics before and after training (`teacher_drift`), and its test accuracy.
# 3. **The curves and the final accuracy**, over several seeds, against the baseline and the correct
#    distiller.
#
# Two colleagues hand you their distillers, `mystery_a` and `mystery_b`. Each has one of the seven
# mistakes above. Here are their symptoms next to the correct distiller's.

# %%
seed_everything(0)
probe_student = DigitsCNN(STUDENT_WIDTH)
probe_x, probe_y = x_transfer[:64], y_transfer[:64]


def symptoms(name):
    """One row of the symptom table: first-step loss parts, accuracy, teacher checks."""
    parts = first_step_parts(name, probe_student, teacher, probe_x, probe_y, T=T, alpha=ALPHA)
    r = results[name]
    return {
        "hard term (step 1)": parts["ce"], "soft term (step 1)": parts["kd"],
        "weights (hard, soft)": f"{parts['w_ce']:.1f}, {parts['w_kd']:.1f}",
        "soft share of loss": parts["soft_share"],
        "student test acc %": pct(r["acc"]),
        "teacher weights moved": max(d["weights"] for d in r["drift"]),
        "teacher BN stats moved": max(d["bn_statistics"] for d in r["drift"]),
        "teacher test acc % after": 100 * np.mean(r["teacher_acc"]),
    }


for name in pitfalls.MYSTERIES:
    results[name] = run(name)
ROUNDING = {"hard term (step 1)": 3, "soft term (step 1)": 3, "soft share of loss": 3, "teacher weights moved": 4,
            "teacher BN stats moved": 4, "teacher test acc % after": 1, "gain over baseline (points)": 1}
symptom_table = pd.DataFrame.from_dict({name: symptoms(name) for name in ("correct", *pitfalls.MYSTERIES)}, orient="index")
print(f"baseline (labels only): {pct(results['baseline']['acc'])} %")
symptom_table.round(ROUNDING)

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
curves = {name: results[name]["histories"] for name in ("baseline", "correct", *pitfalls.MYSTERIES)}
plots.learning_curves(curves, metric="val_acc", ax=axes[0], title="validation accuracy (mean ± std over seeds)")
plots.learning_curves({k: v for k, v in curves.items() if k != "baseline"}, metric="train_loss", ax=axes[1],
                      title="training loss (the objective each distiller minimises)")
fig.tight_layout()
plt.show()

# %% [markdown]
# **Exercise.** Diagnose both mysteries from the table and the curves above: write the name of the
# pitfall (one of the keys of `PITFALLS`) behind each. Clues to weigh: by what *exact* factor does
# each soft term differ from the correct one on the same batch? Did the teacher change, and if so,
# which of its numbers: weights (trained by gradients) or BatchNorm statistics (buffers, updated by
# any forward pass in train mode)? Then the checker tells you whether the symptoms fit.

# %%
### BEGIN SOLUTION name the pitfall behind mystery_a (a key of PITFALLS), e.g. diagnosis_a = "..."
diagnosis_a = "mean_reduction"
### END SOLUTION

# %%
check_diagnosis("mystery_a", diagnosis_a)

# %%
### BEGIN SOLUTION name the pitfall behind mystery_b (a key of PITFALLS), e.g. diagnosis_b = "..."
diagnosis_b = "teacher_train_mode"
### END SOLUTION

# %%
check_diagnosis("mystery_b", diagnosis_b)

# %% [markdown]
# ## 4. The reveal: every pitfall, measured
#
# `mystery_a` was `mean_reduction` and `mystery_b` was `teacher_train_mode`; their runs are reused
# below under those names. Now all seven, on the same seeds, with the same symptoms.

# %%
results["mean_reduction"] = results.pop("mystery_a")
results["teacher_train_mode"] = results.pop("mystery_b")
start = time.perf_counter()
for name in PITFALLS:
    if name not in results:
        results[name] = run(name)
print(f"trained {len(SEEDS)} students for each of {len(PITFALLS)} pitfalls ({time.perf_counter() - start:.1f} s)")
reveal = pd.DataFrame.from_dict({name: symptoms(name) for name in ("correct", *PITFALLS)}, orient="index")
reveal.insert(4, "gain over baseline (points)", [
    100 * (np.mean(results[n]["acc"]) - np.mean(results["baseline"]["acc"])) for n in reveal.index])
print(f"baseline (labels only): {pct(results['baseline']['acc'])} %")
reveal.round(ROUNDING)

# %%
fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
plots.mean_std_bars({name: results[name]["acc"] for name in ("baseline", "correct", *PITFALLS)},
                    title="test accuracy of each distiller (mean ± std; dots: seeds)", ax=axes[0])
axes[0].set_xticks(axes[0].get_xticks(), axes[0].get_xticklabels(), rotation=35, ha="right")
plots.learning_curves({name: results[name]["histories"] for name in ("baseline", "correct", *PITFALLS)},
                      metric="val_acc", ax=axes[1], title="validation accuracy per epoch")
axes[1].set_ylim(0.5, 1.0)
fig.tight_layout()
plt.show()

# %% [markdown]
# What each mistake did, reading the table and the figures above:
#
# - **`missing_t_squared`** and **`mean_reduction`**: the soft term at the first step is exactly
#   $1/T^2 = 1/16$ and $1/C = 1/10$ of the correct one (the assertions below check the ratios). The
#   damage is smaller than the factor suggests because Adam divides each gradient by its running
#   scale: what changes is the *balance* between the terms, the soft share of the loss, not the
#   overall step size. The students land between the baseline and the correct distiller. With
#   plain SGD, or with 100 classes (CIFAR-100: a factor of 100), the same bugs cost more.
# - **`reversed_kl`**: a different value already at the first step (KL is not symmetric) and
#   different gradients; on this data the students land between the baseline and the correct
#   distiller. Reverse KL is mode-seeking: it lets the student ignore the teacher's small
#   probabilities, the dark knowledge, which matters more when those carry more information.
# - **`softmax_student`**: the soft "divergence" is *negative*, a red flag no KL should ever raise.
#   Its minimum is a student that is certain of the teacher's top class, so the dark knowledge is
#   thrown away, and its gradients are weak: its validation curve is the slowest to rise, and the
#   students end slightly below the baseline on average. All of KD's gain is lost.
# - **`swapped_alpha`**: each term's value is right (a unit test of the loss would pass), only the
#   weights are exchanged: the soft share of the loss collapses. The result is close to training on
#   labels alone.
# - **`teacher_train_mode`**: the loss code is right, yet the first-step soft term differs (batch
#   statistics and dropout); the teacher's *weights* never move but its BatchNorm statistics drift.
#   Accuracy is unaffected here: the transfer set comes from the teacher's own training
#   distribution, so the drifted statistics stay close, and dropout noise on the targets acts like
#   mild label smoothing. A silent bug: on a transfer set that differs from the teacher's data, or
#   with small batches, the same drift changes the teacher.
# - **`teacher_not_frozen`**: the soft term pulls the teacher towards the student as hard as the
#   student towards the teacher. The teacher's weights move, its test accuracy collapses, and the
#   student, chasing a moving and worsening target, ends far below the baseline: its validation
#   curve rises with the others for about ten epochs, then sinks as the teacher degrades.

# %%
correct_soft = first_step_parts("correct", probe_student, teacher, probe_x, probe_y, T=T, alpha=ALPHA)["kd"]
ratio_t2 = correct_soft / first_step_parts("missing_t_squared", probe_student, teacher, probe_x, probe_y, T=T)["kd"]
ratio_mean = correct_soft / first_step_parts("mean_reduction", probe_student, teacher, probe_x, probe_y, T=T)["kd"]
print(f"correct soft term / missing_t_squared's: {ratio_t2:.2f} (T^2 = {T * T:.0f})")
print(f"correct soft term / mean_reduction's:    {ratio_mean:.2f} (classes = {len(data.classes)})")
assert abs(ratio_t2 - T * T) < 1e-3 * T * T and abs(ratio_mean - 10) < 1e-2

acc = {name: np.mean(r["acc"]) for name, r in results.items()}
drift = {name: r["drift"] for name, r in results.items()}
# the correct distiller beats the baseline
assert acc["correct"] > acc["baseline"] + 0.005
# softmax on the student: a negative "divergence"
assert reveal.loc["softmax_student", "soft term (step 1)"] < 0
# the swapped convention hands the labels the weight: the soft share collapses
assert reveal.loc["swapped_alpha", "soft share of loss"] < 0.5 * reveal.loc["correct", "soft share of loss"]
# the teacher in train mode: BatchNorm statistics move, weights do not
assert all(d["weights"] == 0 and d["bn_statistics"] > 1e-4 for d in drift["teacher_train_mode"])
# the unfrozen teacher: its weights move, its accuracy collapses, and the student falls below baseline
assert all(d["weights"] > 1e-3 for d in drift["teacher_not_frozen"])
assert max(results["teacher_not_frozen"]["teacher_acc"]) < teacher_test - 0.2
assert acc["teacher_not_frozen"] < acc["baseline"] - 0.03
# the correct distiller and the loss-only pitfalls never touch the teacher
assert all(d["weights"] == 0 and d["bn_statistics"] == 0 for n in ("correct", "missing_t_squared", "swapped_alpha")
           for d in drift[n])

# %% [markdown]
# PyTorch even warns about one of these bugs. `reduction="mean"` on `F.kl_div` triggers a warning
# (`kd_loss_mean_reduction` silences it inside training loops so the outputs stay tidy): reading
# warnings is a diagnostic too.

# %%
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    F.kl_div(F.log_softmax(probe_x.flatten(1)[:4, :10], 1), F.softmax(probe_x.flatten(1)[4:8, :10], 1), reduction="mean")
print(caught[0].message)

# %% [markdown]
# ## 5. When logit KD loses to plain training
#
# One published study on CIFAR-10 found logit distillation *worse* than training the student on
# labels alone (66.5 % vs 75.8 %), while feature distillation helped. A tempting explanation is the
# swapped $\alpha$ convention: code written for "$\alpha$ weights the hard loss" run with
# $\alpha = 0.9$ meant for the soft term. Does that mistake, or any other, reproduce the pattern on
# our data? Below: each distiller's accuracy minus the baseline's, paired by seed (the same initial
# student), with feature distillation for comparison: attention transfer, FitNets hints and KD + AT
# with the weights and layers lesson 05 chose on its validation set (hint weight 10 on `layer3`, AT
# weight 10 on `layer3`; the package's untuned defaults, the papers' 1 and 1000, are for other
# networks and losses of other sizes).

# %%
start = time.perf_counter()
for name in ("at", "hint", "kd+at"):
    results[name] = run(name, curves=False)
print(f"feature distillation runs: {time.perf_counter() - start:.1f} s")

base = np.array(results["baseline"]["acc"])
rows = {}
for name in ("correct", "at", "hint", "kd+at", *PITFALLS):
    diff = 100 * (np.array(results[name]["acc"]) - base)
    rows[name] = {"test acc %": pct(results[name]["acc"]), "minus baseline (points)": diff.mean(),
                  "± std": diff.std(ddof=1), "seeds below baseline": f"{int((diff < 0).sum())}/{len(diff)}"}
versus_baseline = pd.DataFrame.from_dict(rows, orient="index")
print(f"baseline (labels only): {pct(base)} %")
versus_baseline.round(1).replace(-0.0, 0.0)

# %% [markdown]
# What the table shows, measured rather than assumed:
#
# - **The swapped $\alpha$ does not reproduce it.** With the weights exchanged, $0.9$ goes to the
#   labels and $0.1$ to the soft term: the student is trained *mostly on labels*, so it lands near
#   the baseline, not far below it. A swapped convention can only make KD lose to plain training
#   where KD with most of the weight on the soft term is itself worse than the baseline (the
#   intended $\alpha$ would then have to be small). It takes the gain away; it does not by itself
#   cost ten points.
# - **An unfrozen teacher does reproduce it**, and by a margin of the study's size: the "teacher"
#   is trained towards the student and drags it down. If a code base froze the teacher correctly
#   in its feature-distillation path but not in its logit path, it would show exactly the
#   published pattern. A plausible story, not a proof: without the study's code we cannot know.
# - **`softmax_student` reproduces it weakly**: slightly below the baseline on average, not on
#   every seed, nowhere near ten points.
# - **Feature distillation, with lesson 05's weights, tells lesson 05's story.** FitNets hints
#   gain about as much as logit KD (+1.5 ± 0.6 against +1.0 ± 0.8 points, no seed below the
#   baseline); attention transfer alone gains little, within the seeds' spread (+0.2 ± 1.2, below
#   the baseline on 2 of 3 seeds; lesson 05, over 5 seeds of its own set-up, found it a little above
#   the baseline on every seed and below KD), and KD + AT less than KD (+0.6 ± 0.6). So half of the published pattern holds (a feature method helps), the other half
#   does not: on our data logit KD helps as much as the best feature method. (An earlier version of
#   this lesson used the package's untuned default weights, the papers' 1 and 1000, and found that
#   neither feature method helped: the weights matter, which is why lesson 05 chose them on a
#   validation set.)

# %%
diff = versus_baseline["minus baseline (points)"]
below = versus_baseline["seeds below baseline"]
# the swapped alpha is not worse than the baseline by more than a point...
assert diff["swapped_alpha"] > -1.0
# ...but the unfrozen teacher is, by several points, on every seed
assert diff["teacher_not_frozen"] < -3.0 and below["teacher_not_frozen"] == f"{len(SEEDS)}/{len(SEEDS)}"
# with lesson 05's weights: hints help on every seed, about as much as logit KD; attention transfer alone does not
assert below["hint"] == f"0/{len(SEEDS)}" and abs(diff["hint"] - diff["correct"]) < 1.0
assert diff["at"] < 0.5 < diff["correct"]

# %% [markdown]
# ### A barely-better teacher
#
# The study's own numbers suggest another reading: its teacher reached 82.4 %, only **6.6 points**
# above its student's 75.8 %. Our teacher is 99.6 %, and our student 94.4 %: the gap is already small
# in points, but the teacher trained on all 1,077 training images and the student on 300 of them.
# What does a teacher that knows barely more than the student give? The same `DigitsCNN(32)`, trained
# only on the student's 300 images, distils the same students on the same seeds:

# %%
seed_everything(0)
weak_teacher = pitfalls.digits_teacher_with_dropout(width=32, p=0.3)
train(weak_teacher, transfer, epochs=50, lr=1e-3, seed=0, progress=False)  # 300 images: 50 epochs ~ 15 on 1,077
freeze(weak_teacher)
weak_test = evaluate(weak_teacher, data.test)
results["weak_teacher"] = run("correct", teacher=weak_teacher, cache=teacher_outputs(weak_teacher, x_transfer),
                              curves=False)
weak_gain = 100 * (np.array(results["weak_teacher"]["acc"]) - base)
strong_gain = 100 * (np.array(results["correct"]["acc"]) - base)
print(f"teacher on 1,077 images: {teacher_test:.1%}; teacher on the student's 300 images: {weak_test:.1%}; "
      f"baseline student: {pct(base)} %")
print(f"KD from the strong teacher - baseline per seed: {', '.join(f'{g:+.1f}' for g in strong_gain)} points")
print(f"KD from the weak teacher   - baseline per seed: {', '.join(f'{g:+.1f}' for g in weak_gain)} points")

# %%
# a teacher only 2-3 points above the student still does not make KD lose to plain training
assert weak_test - np.mean(base) < 0.04 and min(weak_gain) >= 0 and np.mean(weak_gain) > 0
print(f"weak teacher {100 * (weak_test - np.mean(base)):.1f} points above the baseline student; "
      f"KD from it - baseline: {np.mean(weak_gain):+.1f} +- {np.std(weak_gain, ddof=1):.1f} points, "
      f"{int((weak_gain < 0).sum())}/{len(weak_gain)} seeds below")

# %% [markdown]
# A teacher trained on the student's own 300 images reaches 96.9 %, only **2.4 points** above the
# label-only student (94.4 %), and it still helps: +1.1, +0.9, +0.2 points (the strong teacher:
# +1.1, +1.8, +0.2). One point is between four and five of the 450 test digits, so the smallest
# gains are a single image; the claim is only that no seed falls below the baseline. A barely-better
# teacher gives a little less, not a loss: on our data it does not reproduce "logit KD worse than
# plain training" either. With 300 training images and a teacher that has seen no others, the soft
# targets still carry what the labels lack (which wrong classes look alike), and the student gets
# some of it.

# %% [markdown]
# ## 6. The capacity gap
#
# Does a student gain more from a teacher the closer it is in size? A published study distilled a
# ResNet-10 into ResNets of depth 3 to 6 and found gains of +3, +6, +2 and +0 points: the gain is not
# monotonic, and it can vanish. Here the same teacher distils students of widths 1 to 16 (174 to
# 26k parameters, against the teacher's 103k), each trained with and without KD, paired by seed.
# The width-8 runs of section 1 are reused.

# %%
WIDTHS = [1, 2, 4, 8, 16]
start = time.perf_counter()
sweep = {}
for width in WIDTHS:
    if width == STUDENT_WIDTH:
        sweep[width] = {"baseline": results["baseline"], "kd": results["correct"]}
    else:
        sweep[width] = {"baseline": run("baseline", width, curves=False), "kd": run("correct", width, curves=False)}
print(f"capacity sweep: {time.perf_counter() - start:.1f} s")

params = {w: count_parameters(DigitsCNN(w)) for w in WIDTHS}
gains = {w: 100 * (np.array(sweep[w]["kd"]["acc"]) - np.array(sweep[w]["baseline"]["acc"])) for w in WIDTHS}
capacity = pd.DataFrame.from_dict({
    w: {"parameters": params[w], "baseline test %": pct(sweep[w]["baseline"]["acc"]),
        "KD test %": pct(sweep[w]["kd"]["acc"]), "KD gain (points)": gains[w].mean(), "± std": gains[w].std(ddof=1),
        "baseline train %": 100 * np.mean(sweep[w]["baseline"]["train_acc"]),
        "KD train %": 100 * np.mean(sweep[w]["kd"]["train_acc"])}
    for w in WIDTHS}, orient="index").rename_axis("width")
capacity.round(1)

# %%
fig = plots.gain_vs_size({f"KD gain, {EPOCHS} epochs": ([params[w] for w in WIDTHS], [gains[w] for w in WIDTHS])},
                         point_labels={params[w]: f"width {w}" for w in WIDTHS},
                         title=f"capacity gap: gain of KD over the baseline ({len(SEEDS)} seeds, {EPOCHS} epochs)")
plt.show()

# %% [markdown]
# The gain is positive and roughly flat for widths 4 to 16, and turns **negative** for the two
# smallest students: there KD costs several points. A capacity gap, it seems: the teacher is too
# far above these students for them to follow.
#
# But look at the training accuracies in the table. The smallest students do not even fit their
# 300 training images after 40 epochs, and the distilled ones fit them *less* well than the
# baseline. That is the signature of a **training-budget** limit, not of capacity: the soft targets
# at $T = 4$ give the student a harder, slower objective, and 40 epochs are not enough for a tiny
# network to get there. The test: give the two smallest students three times the epochs.

# %%
LONG, LONG_SEEDS = 3 * EPOCHS, list(range(pick(quick=5, full=10)))  # more seeds: small students vary more
start = time.perf_counter()
long_runs = {w: {"baseline": run("baseline", w, seeds=LONG_SEEDS, epochs=LONG, curves=False),
                 "kd": run("correct", w, seeds=LONG_SEEDS, epochs=LONG, curves=False)} for w in (1, 2)}
print(f"{LONG}-epoch runs: {time.perf_counter() - start:.1f} s")
long_gains = {w: 100 * (np.array(r["kd"]["acc"]) - np.array(r["baseline"]["acc"])) for w, r in long_runs.items()}
pd.DataFrame.from_dict({
    w: {"baseline test %": pct(r["baseline"]["acc"]), "KD test %": pct(r["kd"]["acc"]),
        "KD gain (points)": long_gains[w].mean(), "± std": long_gains[w].std(ddof=1),
        "baseline train %": 100 * np.mean(r["baseline"]["train_acc"]),
        "KD train %": 100 * np.mean(r["kd"]["train_acc"])}
    for w, r in long_runs.items()}, orient="index").rename_axis(f"width ({LONG} epochs)").round(1)

# %%
fig = plots.gain_vs_size({f"KD gain, {EPOCHS} epochs": ([params[w] for w in WIDTHS], [gains[w] for w in WIDTHS]),
                          f"KD gain, {LONG} epochs ({len(LONG_SEEDS)} seeds)": ([params[w] for w in (1, 2)], [long_gains[w] for w in (1, 2)])},
                         point_labels={params[w]: f"width {w}" for w in WIDTHS},
                         title="capacity gap or training budget?")
plt.show()

# %% [markdown]
# Two different stories, told apart by the extra epochs (tables and figure above):
#
# - **Width 2** was under-trained: with three times the epochs both students fit their training
#   set, and the distilled one now beats the baseline on average. Its "capacity gap" at 40 epochs was a
#   training-budget effect.
# - **Width 1** (174 parameters, a 4-number embedding) still loses with KD on average, −5.0 ± 4.7
#   points over five seeds: about one standard deviation, so five seeds do not establish it. What is
#   clearer is that the distilled students still fit their training set far worse than the baseline
#   (68.6 % against 81.1 %). This network cannot fit
#   the teacher's soft targets and the labels at once, and with 90 % of the weight on the soft term
#   the labels lose. That is where the gain vanishes here: at the very bottom of the size range,
#   not (within our range) at the top, where widths 4 to 16 gain about a point on average (+1.2, +1.0
#   and +1.1, each within one or two standard deviations of zero on three seeds).

# %% [markdown]
# ### A teacher assistant
#
# The remedy proposed for a capacity gap is a **teacher-assistant chain**: distil the teacher into a
# mid-size network first, then distil that assistant into the small student, so that each step
# bridges a smaller gap. The student with a persistent gap is width 1 (174 parameters, against the
# teacher's 103k). Our assistant is a width-4 student of the sweep, distilled from the teacher
# (seed 0): about ten times the smallest student's size and 1/56 of the teacher's. It distils
# the width-1 student with the long budget, on the same seeds as the direct runs above.

# %%
assistant = freeze(sweep[4]["kd"]["students"][0])
print(f"assistant: DigitsCNN(4), {count_parameters(assistant):,} parameters, test accuracy {evaluate(assistant, data.test):.1%}")
start = time.perf_counter()
via = run("correct", 1, teacher=assistant, cache=teacher_outputs(assistant, x_transfer), seeds=LONG_SEEDS,
          epochs=LONG, curves=False)
print(f"teacher-assistant runs: {time.perf_counter() - start:.1f} s")
ta = {"baseline (labels only)": long_runs[1]["baseline"]["acc"], "direct KD from the teacher": long_runs[1]["kd"]["acc"],
      "KD via the assistant": via["acc"]}
direct = np.array(ta["direct KD from the teacher"])
pd.DataFrame({"test accuracy %": {k: pct(v) for k, v in ta.items()},
              "minus direct KD (points)": {k: 100 * np.mean(np.array(v) - direct) for k, v in ta.items()},
              "± std": {k: 100 * np.std(np.array(v) - direct, ddof=1) for k, v in ta.items()}}
             ).rename_axis(f"width-1 student, {LONG} epochs").round(1)

# %% [markdown]
# **The chain does not rescue the smallest student in our regime.** Compared with direct
# distillation from the teacher, the assistant changes the width-1 student's accuracy by +1.5 ±
# 3.1 points, inside the seed-to-seed spread (the table above), and leaves it well below the label-only
# baseline. Its problem is its own size more than the teacher's distance: a student that cannot fit
# soft targets from a 100k-parameter teacher cannot fit those of a 2k-parameter one either.

# %%
# the smallest students lose with KD at 40 epochs...
assert gains[1].mean() < -1.0 and gains[2].mean() < -1.0
# ...because they are under-trained: the distilled ones fit their training set less well
assert all(np.mean(sweep[w]["kd"]["train_acc"]) < np.mean(sweep[w]["baseline"]["train_acc"]) for w in (1, 2))
# KD helps every student of width 4 to 16 (mean gain above half a point)
assert all(gains[w].mean() > 0.5 for w in (4, 8, 16))
# with three times the epochs, the width-2 student gains from KD; the width-1 student still loses
assert long_gains[2].mean() > 1.0 and long_gains[1].mean() < -2.0
# the assistant does not bring the width-1 student back to the baseline, and changes little against direct KD
assert np.mean(ta["KD via the assistant"]) < np.mean(ta["baseline (labels only)"]) - 0.02
assert abs(np.mean(ta["KD via the assistant"]) - np.mean(direct)) < 0.03

# %% [markdown]
# ## Recap
#
# - Seven classic mistakes, each reproduced with exactly one bug and measured on the same runs. The
#   loss-scale bugs (`missing_t_squared`, `mean_reduction`) shrink the soft term by an exact factor
#   ($T^2$, the number of classes) and, under Adam, only shift the balance of the two terms;
#   `reversed_kl` changes the gradients more than the accuracy here; `softmax_student` produces a
#   negative "divergence"; `swapped_alpha` quietly turns distillation into label training;
#   `teacher_train_mode` is silent (same accuracy, drifted BatchNorm statistics); `teacher_not_frozen`
#   wrecks the teacher and the student with it.
# - The symptoms to check on any distiller: the loss parts at the first step against a reference on
#   the same batch, the teacher's weights, BatchNorm statistics and accuracy before and after, and
#   the curves over several seeds.
# - Of the mistakes, the unfrozen teacher, not the swapped $\alpha$, reproduced "logit KD worse than
#   plain training" on our data. Neither feature distillation with lesson 05's weights (hints as good
#   as KD, attention transfer within the baseline's spread) nor a barely-better teacher (2.4 points above the student:
#   a smaller gain, no loss) reproduced the rest of that pattern.
# - The capacity gap: KD helped students of width 4 to 16 by about a point on average and cost the
#   two smallest several points at 40 epochs. For width 2 that was a training-budget effect (three
#   times the epochs turned it into a gain); width 1 still lost on average (−5.0 ± 4.7 points, not
#   established on five seeds) and fitted its training set far worse when distilled, and a
#   teacher-assistant chain did not change that (+1.5 ± 3.1 points against direct KD). Check training
#   accuracy before blaming capacity.
#
# ## Questions to think about
#
# 1. `missing_t_squared` costs little with Adam here. Which would hurt more with plain SGD at a fixed
#    learning rate, missing $T^2$ or `reduction="mean"`, and at which $T$ do they cost the same?
# 2. A teacher left in train mode did no harm on this transfer set. Design a transfer set on which it
#    would (hint: what do BatchNorm's running statistics estimate?).
# 3. The width-1 student loses with KD at $\alpha = 0.9$. Would a smaller $\alpha$ or a lower $T$
#    rescue it, and what would that tell you about where its capacity goes?

# %% [markdown] tags=["answer-key"]
# ### Answer key (solutions only)
#
# 1. With plain SGD at a fixed learning rate the gradient's size *is* the step. Missing $T^2$ divides the
#    soft term's gradient by $T^2$, `reduction="mean"` by the number of classes $C$; neither touches the
#    hard term, so both shrink the step and move the balance towards the labels. At $T = 4$ missing $T^2$
#    is the worse one ($T^2 = 16$ against $C = 10$, the exact first-step ratios printed above). They cost
#    the same when $T^2 = C$, i.e. $T = \sqrt{C}$: $\sqrt{10}$ here, $10$ for the 100 classes of CIFAR-100.
#    Above $\sqrt{C}$ the missing $T^2$ hurts more, below it the mean reduction. Adam divides each
#    gradient by its running scale, which is why both cost little here: only the balance of the two
#    terms changed.
# 2. BatchNorm's running statistics estimate the mean and variance of each channel's activations over
#    the teacher's *training* distribution. In train mode the teacher normalises each batch with that
#    batch's own statistics (and updates the running ones; dropout adds noise). Harmless when the
#    transfer batches look like its training batches, as here (a subset of its own training set,
#    shuffled batches of 64). It would hurt with transfer batches whose statistics differ: images from
#    another distribution (brighter, inverted or noisy digits, another writer population, strong
#    augmentation, synthetic images), or unrepresentative batches: very small ones, or batches sorted
#    by class (a transfer set fed one class at a time). Then the teacher's targets depend on which
#    images share the batch, and the drifted running statistics also spoil the teacher for later
#    eval-mode use. Test: the teacher's accuracy and targets on the transfer batches in eval against
#    train mode, `teacher_drift`, and the students against the correct distiller over several seeds.
# 3. The width-1 student cannot fit the soft targets and the labels at once: with $\alpha = 0.9$ most of
#    its loss asks it to reproduce the teacher's whole distribution at $T = 4$, the ranking of the wrong
#    classes, and its training accuracy stays below the baseline's. A smaller $\alpha$ hands the labels
#    more weight and moves it towards the baseline ($\alpha = 0$ *is* the baseline), so it should at least
#    recover the baseline and might gain a little in between. A lower $T$ makes the teacher's targets
#    nearly one-hot on its training images, so KD approaches training on the labels: it asks for the
#    arg-max, not the tail. If either rescues it, the student's few parameters were being spent on the
#    dark knowledge (the wrong-class ranking), which a 4-number embedding cannot hold together with the
#    decision boundary; if no $\alpha$ or $T$ gives a gain over the baseline, the teacher has nothing this
#    student can use: a capacity limit. Measure it with a small $\alpha \times T$ grid for width 1 at the
#    120-epoch budget, 5 seeds, paired with the baseline, watching the training accuracy.
#

# %%
print(f"notebook run time: {time.perf_counter() - notebook_start:.0f} s")
