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
# # Lesson 03 — Teacher and student
#
# Distillation exists because the network we would like to *deploy* is not the network that learns
# best. A large **teacher** reaches high accuracy; a small **student** is what fits on a phone, a
# microcontroller or a tight latency budget. This lesson builds both, measures what separates them,
# and fixes the setting in which lesson 04 will try to close the gap by distillation.
#
# **Goals.** By the end of this lesson you can
#
# 1. count a network's parameters yourself and see where they sit (exercise 1);
# 2. write the accuracy metric every later lesson uses (exercise 2);
# 3. train a teacher and a 15x smaller student with the course's trainer, and read their learning curves;
# 4. build a size / accuracy / latency table and say what the small student buys you;
# 5. fix the regime of lesson 04 (a student that sees only **300** labelled images) and measure its
#    label-only baseline over 5 seeds: the number distillation has to beat.
#
# The whole notebook trains for well under a minute on a laptop CPU.

# %%
# Set-up: on Google Colab, install the course package first (does nothing elsewhere).
import sys
if "google.colab" in sys.modules:
    import subprocess
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "kdcourse @ git+https://github.com/kdcourse/kdcourse"], check=True)

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

from kdcourse import models, plots
from kdcourse.checks import check_accuracy, check_count_parameters
from kdcourse.config import pick
from kdcourse.data import load_digits_data, subset, tensors
from kdcourse.distill import evaluate, predict_logits, seed_everything, train
from kdcourse.models import DigitsCNN, measure_latency

# These networks are tiny: one CPU thread is as fast as several, never fights other programs for
# the cores, and gives the same numbers whatever the machine's core count.
torch.set_num_threads(1)
seed_everything(0)

# %% [markdown]
# ## 1. The data
#
# scikit-learn's handwritten digits: 1,797 greyscale images of 8x8 pixels, ten classes, shipped with
# scikit-learn (no download). `load_digits_data` splits them once, stratified and seeded: a **training**
# set to learn from, a **validation** set to make choices on (epochs, temperatures, thresholds), and a
# **test** set that is only used to report results. Pixels are scaled to $[0, 1]$;
# `images=True` shapes every example as a 1-channel 8x8 image for the CNNs.

# %%
# NBVAL_CHECK_OUTPUT
data = load_digits_data(images=True)
x_train, y_train = tensors(data.train)
x_test, y_test = tensors(data.test)
print(data)
print("training images per class:", torch.bincount(y_train).tolist())
print(f"pixel values from {x_train.min().item():g} to {x_train.max().item():g}")

# %%
fig, axes = plt.subplots(1, 10, figsize=(10, 1.4))
for digit, ax in enumerate(axes):
    ax.imshow(x_train[y_train == digit][0, 0], cmap="gray_r")
    ax.set_title(str(digit))
    ax.axis("off")
fig.suptitle("One training image per class (8 x 8 pixels)", y=1.08)
plt.show()


# %% [markdown]
# ## 2. Two networks of one family
#
# Teacher and student are both a `DigitsCNN(width)`: a small convolutional network whose blocks are
#
# | block | layers | output for an 8x8 input |
# |---|---|---|
# | `stem` | 3x3 conv, BatchNorm, ReLU | `width` x 8 x 8 |
# | `layer1` | 3x3 conv, BatchNorm, ReLU | `width` x 8 x 8 |
# | `layer2` | 3x3 conv with stride 2, BatchNorm, ReLU | `2 width` x 4 x 4 |
# | `layer3` | 3x3 conv with stride 2, BatchNorm, ReLU | `4 width` x 2 x 2 |
# | `embedding` | global average pooling | `4 width` |
# | `head` | linear layer | 10 logits |
#
# The teacher has `width=32`, the student `width=8`. Keeping one architecture family and changing
# only the width makes the comparison clean: the student is not worse because it is *different*,
# only because it is *smaller*.
#
# How much smaller? A 3x3 convolution from $c_\text{in}$ to $c_\text{out}$ channels has
# $9\,c_\text{in}\,c_\text{out}$ weights (no bias here: the BatchNorm that follows has its own shift); a BatchNorm layer has a scale
# and a shift per channel, $2\,c_\text{out}$; a linear layer from $n$ to $m$ features has $nm + m$.
# Both $c_\text{in}$ and $c_\text{out}$ grow with the width, so the count grows like $\text{width}^2$:
# a network 4 times narrower should have about 16 times fewer parameters.
#
# **Exercise 1.** Write `count_parameters(model)`: the total number of *scalars* in the model's
# parameters (every weight, bias and BatchNorm scale and shift). `model.parameters()` yields the
# parameter tensors; a tensor's `numel()` is its number of elements. BatchNorm's running mean and
# variance are *buffers*, not parameters: they are not learned by gradient descent and do not count.

# %%
def count_parameters(model):
    """The number of scalars in the model's parameters (an int)."""
    ### BEGIN SOLUTION add up p.numel() over model.parameters()
    return sum(p.numel() for p in model.parameters())
    ### END SOLUTION


# %%
check_count_parameters(count_parameters)

# %% [markdown]
# Where do the parameters sit? Your function, applied to each block of both networks:

# %%
# NBVAL_CHECK_OUTPUT
teacher_width, student_width = 32, 8
seed_everything(0)
teacher = DigitsCNN(teacher_width)
student = DigitsCNN(student_width)

n_teacher, n_student = count_parameters(teacher), count_parameters(student)
print(f"{'block':<10}{'teacher':>10}{'student':>10}")
for block in ["stem", "layer1", "layer2", "layer3", "head"]:
    print(f"{block:<10}{count_parameters(getattr(teacher, block)):>10,}"
          f"{count_parameters(getattr(student, block)):>10,}")
print(f"{'total':<10}{n_teacher:>10,}{n_student:>10,}")
print(f"the student has {n_teacher / n_student:.1f}x fewer parameters "
      f"({4 * n_teacher / 1024:.0f} KiB vs {4 * n_student / 1024:.0f} KiB as float32)")
assert n_teacher == models.count_parameters(teacher)  # the package's version agrees

# %% [markdown]
# As predicted, about $4^2 = 16$ times fewer: 15.1x, slightly less because the first convolution
# (one input channel) and the 10-way head do not grow with the square of the width. Most of the
# teacher's parameters sit in the deep, wide blocks `layer2` and `layer3`.
#
# ## 3. Training the teacher
#
# `kdcourse.distill.train` is the one training loop of the course (every method of lessons 04-08
# runs through it). With no teacher it is plain supervised training: mini-batches of 64, Adam,
# the cross-entropy with the labels. It is seeded: the `seed` fixes the batch order, and
# `seed_everything` before building a model fixes its initial weights, so the same cell gives the
# same numbers on the same machine. It returns a `History` of per-epoch losses and accuracies.
#
# The teacher gets all 1,077 training images, 15 epochs (the validation curve below has flattened
# by then) at learning rate $10^{-3}$.

# %%
teacher_epochs = pick(quick=15, full=15)
seed_everything(0)
teacher = DigitsCNN(teacher_width)
teacher_history = train(teacher, data.train, val_data=data.val, epochs=teacher_epochs, lr=1e-3, seed=0)
print(f"teacher: {teacher_epochs} epochs in {teacher_history.seconds:.1f} s, "
      f"final validation accuracy {teacher_history.final_val_acc:.1%}")


# %% [markdown]
# **Exercise 2.** Write `accuracy(logits, labels)`: the share of examples whose highest logit is at
# the true label, as a Python `float` in $[0, 1]$. `logits` has shape (examples, classes) and
# `labels` holds class indices, shape (examples,).

# %%
def accuracy(logits, labels):
    """Share of rows of `logits` whose arg-max equals the label (a float in [0, 1])."""
    ### BEGIN SOLUTION compare each row's arg-max with its label and average
    return (logits.argmax(dim=1) == labels).float().mean().item()
    ### END SOLUTION


# %%
check_accuracy(accuracy)

# %%
teacher_test = accuracy(predict_logits(teacher, x_test), y_test)
print(f"teacher test accuracy: {teacher_test:.1%} "
      f"({round(teacher_test * len(y_test))} of {len(y_test)} test images right)")
assert abs(teacher_test - evaluate(teacher, data.test)) < 1e-6  # kdcourse.distill.evaluate agrees

# %% [markdown]
# ## 4. The student, on the same data
#
# The student trains with the same loop on the same 1,077 images. A small network takes a larger
# learning rate ($3 \times 10^{-3}$) without diverging and needs it to converge in 15 epochs.
# Single runs of small networks vary from seed to seed, so we train three (seeds 0, 1, 2: the seed
# sets both the initial weights and the batch order) and report the mean and the sample standard deviation
# (`np.std(..., ddof=1)`: with three seeds, dividing by $n - 1$ instead of $n$ matters).
# `progress=False` keeps the output of loops short.

# %%
student_lr = 3e-3
full_seeds = [0, 1, 2]
full_histories, full_test = [], []
for seed in full_seeds:
    seed_everything(seed)
    s = DigitsCNN(student_width)
    full_histories.append(train(s, data.train, val_data=data.val, epochs=teacher_epochs, lr=student_lr,
                                seed=seed, progress=False))
    full_test.append(accuracy(predict_logits(s, x_test), y_test))
    print(f"seed {seed}: student test accuracy {full_test[-1]:.1%}")
print(f"student on all {len(y_train)} images: {np.mean(full_test):.1%} ± {np.std(full_test, ddof=1):.1%} "
      f"(mean ± sample std over {len(full_seeds)} seeds); teacher {teacher_test:.1%}")

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
curves = {f"teacher (width {teacher_width})": teacher_history,
          f"student (width {student_width}), {len(full_seeds)} seeds": full_histories}
plots.learning_curves(curves, metric="val_acc", ax=ax1, title="Validation accuracy per epoch")
plots.learning_curves(curves, metric="train_loss", ax=ax2, title="Training loss per epoch")
ax1.set_ylim(0.5, 1.0)
ax2.set_yscale("log")
plt.show()

# %% [markdown]
# Both networks learn the digits within a few epochs; the band around the student's curve is
# $\pm$ one sample standard deviation over its seeds. On the full training set the small student
# ends close to the teacher (98.4 % against 99.1 % on the test set above, 0.7 to 0.9 points below
# it on each seed): for this easy task a
# network of 6,866 parameters is almost enough, *if it gets enough labelled data*.
#
# ## 5. Size, accuracy and latency
#
# What does the student buy? Below, the size, the test accuracy and the time of one forward pass
# (`measure_latency`: the median of 30 timed runs after 5 warm-up runs, in eval mode) on this
# machine's **CPU, one thread**, for one image at a time (an app classifying what the user just drew)
# and for a batch of 256 images (offline processing), reported per image. Timings depend on the
# machine and on what else runs on it: compare the two rows, not the numbers with another computer.

# %%
rows = []
for name, model, acc in [("teacher", teacher, f"{teacher_test:.1%}"),
                         ("student", full_histories[0].student,
                          f"{np.mean(full_test):.1%} ± {np.std(full_test, ddof=1):.1%}")]:
    batch_1 = measure_latency(model, (1, 8, 8), batch_size=1)
    batch_256 = measure_latency(model, (1, 8, 8), batch_size=256)
    rows.append((name, count_parameters(model), acc, batch_1, batch_256))

print(f"{'model':<9}{'parameters':>11}{'size':>9}{'test accuracy':>16}"
      f"{'batch 1':>11}{'batch 256, per image':>23}")
for name, n, acc, b1, b256 in rows:
    print(f"{name:<9}{n:>11,}{4 * n / 1024:>6.0f} KiB{acc:>16}{1e3 * b1:>8.3f} ms{1e6 * b256 / 256:>20.1f} µs")
speedup_1 = rows[0][3] / rows[1][3]
speedup_256 = rows[0][4] / rows[1][4]
print(f"student speed-up: {speedup_1:.1f}x at batch 1, {speedup_256:.1f}x at batch 256 (CPU, 1 thread)")

# %% [markdown]
# Two lessons in this table (the exact times vary from run to run and machine to machine):
#
# - **Size** shrinks by the full factor 15: the student's 27 KiB of weights fit where the teacher's
#   404 KiB do not (a microcontroller, a web page, a cache line budget).
# - **Speed** improves much more with a batch of images than for a single one: for one tiny image
#   most of the time goes into Python and PyTorch's per-layer overhead, which does not shrink with
#   the width. Parameter counts are not latencies: measure on the target device, at the batch size
#   you will use.

# %%
teacher_gap = teacher_test - np.array(full_test)  # the one teacher against each student seed
print("teacher - student on the test set, per student seed (points):", [f"{100 * d:+.1f}" for d in teacher_gap])
assert teacher_test >= 0.97, "the teacher should be a good one"
assert (teacher_gap > 0).all(), "the smaller network is (a little) less accurate, on every seed"
assert speedup_256 > 2, "at batch 256 the student is clearly faster than the teacher"

# %% [markdown]
# ## 6. The regime for lesson 04: few labels
#
# On the full training set the student is already within a point of the teacher: distillation would
# have little to add. Knowledge distillation pays off when the student is **short of information**.
# Its training signal from a label is one class per image; from the teacher it is a whole
# probability vector per image, saying which *wrong* classes the image resembles (lesson 01's dark
# knowledge). That extra information matters most when labelled images are scarce: with 300 images
# the soft targets tell the student far more than the labels alone, with all of them the labels
# already say most of it (lesson 04 measures this).
#
# So lesson 04 works in this regime: the student sees a **transfer set of 300 training images**
# (`subset(..., 300, seed=0)`: stratified, 29 to 31 per class), while the teacher was trained on all of
# them. With 5 mini-batches per epoch the student gets 40 epochs (about as many updates as the
# 15 epochs on all images). Here is its label-only **baseline**, over 5 seeds.

# %%
# NBVAL_CHECK_OUTPUT
transfer = subset(data.train, 300, seed=0)
print(f"transfer set: {len(transfer)} images; per class:", torch.bincount(tensors(transfer)[1]).tolist())

# %%
transfer_epochs = pick(quick=40, full=40)
seeds = list(range(pick(quick=5, full=10)))
baseline_histories, baseline_test = [], []
for seed in seeds:
    seed_everything(seed)
    s = DigitsCNN(student_width)
    baseline_histories.append(train(s, transfer, val_data=data.val, epochs=transfer_epochs, lr=student_lr,
                                    seed=seed, progress=False))
    baseline_test.append(accuracy(predict_logits(s, x_test), y_test))
print("test accuracy per seed:", [f"{a:.1%}" for a in baseline_test])
print(f"baseline student, {len(transfer)} images: {np.mean(baseline_test):.1%} ± {np.std(baseline_test, ddof=1):.1%} "
      f"(mean ± sample std over {len(seeds)} seeds)")

# %%
curves = {f"student, all {len(y_train)} images ({len(full_seeds)} seeds)": full_histories,
          f"student, {len(transfer)} images ({len(seeds)} seeds)": baseline_histories}
fig = plots.learning_curves(curves, metric="val_acc", title="Student validation accuracy: all images vs 300")
fig.axes[0].set_ylim(0.5, 1.0)
plt.show()

# %%
# paired by seed: seeds 0-2 give the same initial student in both settings
assert seeds[:len(full_seeds)] == full_seeds
label_cost = np.array(full_test) - np.array(baseline_test[:len(full_seeds)])
print(f"all {len(y_train)} images - {len(transfer)} images, same seed (points):",
      [f"{100 * d:+.1f}" for d in label_cost])
assert (label_cost > 0.02).all(), "every seed: 300 labelled images cost the student more than 2 points"

# %% [markdown]
# With 300 labelled images the student drops from 98.4 % to **94.8 % ± 0.4 %** (mean ± sample std,
# 5 seeds), 3.1 to 4.2 points below the same seed trained on all images, and its validation curve
# plateaus lower. This is the baseline lesson 04 must beat with the same student,
# the same 300 images, the same 40 epochs and the same seeds, adding only the teacher's soft targets.
#
# ## Recap
#
# - Teacher and student are one architecture family at two widths; parameters grow like the width
#   squared, so the 4x narrower student is 15x smaller (6,866 against 103,466 parameters).
# - `kdcourse.distill.train` trains any model, seeded, and returns a `History` for learning curves.
# - Size shrinks by the full factor; latency only where there is enough work per call (batches):
#   always measure, on the target device and batch size.
# - On all 1,077 images the small student is almost as good as the teacher; with 300 it loses several
#   points. That gap, measured over 5 seeds, is the room distillation has in lesson 04.
#
# ## Questions
#
# 1. The teacher's `stem` has only 4x more parameters than the student's (352 against 88), its `layer1`
#    almost 16x more (9,280 against 592). Why? (Count the weights of each convolution.)
# 2. Batch 1 barely speeds up with a 15x smaller network. What would you change to measure the latency
#    that matters for an app on a phone?
# 3. Why do we report the mean and standard deviation over seeds rather than the best seed? How many
#    test images is one standard deviation of the 300-image baseline?

# %% [markdown] tags=["answer-key"]
# ### Answer key (solutions only)
#
# 1. A 3x3 convolution from $c_\text{in}$ to $c_\text{out}$ channels has $9\,c_\text{in}\,c_\text{out}$ weights,
#    its BatchNorm $2\,c_\text{out}$. The `stem` reads the single grey channel, so $c_\text{in} = 1$ and it
#    holds $9 \cdot 1 \cdot w + 2w = 11 w$ parameters, linear in the width $w$: $11 \cdot 32 = 352$ against
#    $11 \cdot 8 = 88$, a factor of 4. `layer1` maps $w$ channels to $w$: $9 w^2 + 2 w$, that is
#    $9 \cdot 32^2 + 64 = 9280$ against $9 \cdot 8^2 + 16 = 592$, almost quadratic in the width, hence
#    almost the factor $4^2 = 16$. The same holds for `layer2` and `layer3`, which is why the whole
#    network is 15.1x smaller and not exactly $4^2 = 16$ times smaller.
# 2. Measure where and how the app runs: on the phone's own processor (or its NPU / GPU), with the
#    runtime the app will ship (the model exported, e.g. with `torch.export` / ExecuTorch, TorchScript or
#    ONNX, possibly quantised), at batch 1, including the pre-processing and the runtime's per-call
#    overhead, after warm-up, reporting the median and the slow tail over many calls, at the thread
#    count and thermal state of real use (and ideally the energy per call). On this machine a single
#    8x8 image spends most of its time in Python's and PyTorch's per-layer overhead (0.480 ms against
#    0.272 ms, only 1.8x), which says little about a phone.
# 3. The best of several seeds is the maximum of noisy draws: an optimistic number that a new run will
#    not reproduce, chosen by looking at the test set, and comparing the best seeds of two methods
#    compares their luck. The mean with the sample standard deviation says what to expect from a run
#    and how much runs vary, so a difference can be judged against that spread (and pairing by seed,
#    lesson 04, removes the part the seeds share). One standard deviation of the 300-image baseline is
#    0.4 % of the 450 test images: about two images.
#
