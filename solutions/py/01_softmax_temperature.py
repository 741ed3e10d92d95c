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
# # Lesson 01 — Softmax temperature and dark knowledge
#
# A trained network says more than its top answer. Asked about an image of a 3, it also ranks the
# wrong classes: this 3 looks a bit like a 9, hardly like a 1. Hinton, Vinyals and Dean (2015) call
# this ranking *dark knowledge*, and the **temperature** $T$ of the softmax is the knob that makes it
# visible. Distillation (lesson 02 onwards) trains a small student on these softened outputs.
#
# **Goals.** By the end of this lesson you can
#
# 1. implement the softmax with temperature and say what $T \to 0$, $T = 1$ and $T \to \infty$ do;
# 2. measure how "soft" a distribution is with its entropy, and watch it grow with $T$;
# 3. read a real teacher's softened outputs on real digit images (with a slider);
# 4. find which wrong classes a teacher finds similar to each digit, and explain why a hard label cannot carry that.
#
# Time: about 20 minutes. Exercises are marked **Exercise**; run the checker cell right after each one.

# %%
# Set-up: on Google Colab, install the course package first (does nothing elsewhere).
import sys
if "google.colab" in sys.modules:
    import subprocess
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "kdcourse @ git+https://github.com/kdcourse/kdcourse"], check=True)

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from kdcourse.checks import check_entropy, check_softmax_with_temperature
from kdcourse.config import pick
from kdcourse.data import load_digits_data, tensors
from kdcourse.distill import evaluate, predict_logits, seed_everything, train
from kdcourse.models import DigitsCNN, count_parameters
from kdcourse.plots import soft_target_grid, sweep_heatmap
from kdcourse.widgets import temperature_explorer

torch.set_num_threads(1)  # tiny networks: one thread is as fast, and the numbers repeat on any core count

seed_everything(0)
torch.set_printoptions(precision=4, sci_mode=False)


# %% [markdown]
# ## 1. The softmax with temperature
#
# A classifier outputs one real number per class, the **logits** $z_1, \dots, z_C$. The softmax turns
# them into probabilities. With a temperature $T > 0$ the logits are divided by $T$ first
# (Hinton et al. 2015, eq. 1):
#
# $$
# q_i = \frac{\exp(z_i / T)}{\sum_{j=1}^{C} \exp(z_j / T)} .
# $$
#
# - $T = 1$ is the ordinary softmax.
# - $T > 1$ shrinks the gaps between the logits: the distribution gets **softer** and the wrong
#   classes get visible probability. As $T \to \infty$ every class tends to $1/C$.
# - $T < 1$ sharpens it: as $T \to 0$ all the mass goes to the largest logit (the arg max).
# - Dividing all logits by the same $T$ never changes their **order**: the predicted class is the same
#   at every temperature, only the confidence changes.
#
# **Exercise 1.** Implement `softmax_with_temperature(logits, T)`. `logits` is a tensor whose last
# dimension is the classes: one example of shape `(C,)` or a batch of shape `(N, C)`.
# Hint: `torch.softmax(x, dim=-1)` computes the ordinary softmax along the last dimension. If you write
# it yourself with `torch.exp`, subtract each row's maximum first so that large logits do not overflow
# (the result does not change, because the softmax is unchanged when a constant is added to every logit).

# %%
def softmax_with_temperature(logits, T):
    """Class probabilities softmax(logits / T) along the last dimension."""
    ### BEGIN SOLUTION implement softmax_with_temperature (divide by T, then softmax over dim=-1)
    return torch.softmax(logits / T, dim=-1)
    ### END SOLUTION


# %%
check_softmax_with_temperature(softmax_with_temperature)

# %% [markdown]
# Here are made-up logits a digit classifier might give an image of a **3** that also looks a bit
# like a 5 and an 8. Each row is the softmax at one temperature (rounded to 3 decimals).

# %%
# NBVAL_CHECK_OUTPUT
z3 = torch.tensor([-2.0, -1.0, 0.5, 8.0, -1.5, 4.0, -2.0, 1.0, 3.0, 2.0])  # logits for classes 0..9
print("T      " + "".join(f"{c:>7d}" for c in range(10)))
for T in [0.5, 1, 2, 4, 10, 100]:
    q = softmax_with_temperature(z3, T)
    print(f"{T:<7g}" + "".join(f"{p:7.3f}" for p in q.tolist()))


# %% [markdown]
# Read the table column by column. At $T = 1$ class 3 takes 0.972, the runner-ups 5 and 8 get 0.018
# and 0.007, and the other seven classes look like zeros. At $T = 4$ the 5 and the 8 are
# clearly ahead of the 0, 4 and 6, and at $T = 100$ everything is close to uniform ($1/10$). The order
# of the classes is the same in every row.
#
# ## 2. How soft? The entropy
#
# One number summarises how spread out a distribution is, its **entropy** (in nats, with the natural log):
#
# $$
# H(q) = -\sum_{i=1}^{C} q_i \log q_i , \qquad 0 \le H(q) \le \log C .
# $$
#
# $H = 0$ for a one-hot distribution (all mass on one class), $H = \log C$ for the uniform one
# ($\log 10 \approx 2.303$ for ten digits). By convention $0 \log 0 = 0$: a class with probability
# exactly 0 contributes nothing.
#
# **Exercise 2.** Implement `entropy(probs)`: one entropy per row of `probs` (sum over the last
# dimension). Hint: `torch.special.xlogy(p, p)` computes $p \log p$ and gives 0 where $p = 0$
# (a plain `p * torch.log(p)` gives `nan` there).

# %%
def entropy(probs):
    """Entropy in nats of each distribution along the last dimension of probs."""
    ### BEGIN SOLUTION implement entropy: -sum_i p_i log p_i over the last dimension
    return -torch.special.xlogy(probs, probs).sum(dim=-1)
    ### END SOLUTION


# %%
check_entropy(entropy)

# %%
# NBVAL_CHECK_OUTPUT
for T in [0.5, 1, 2, 4, 10, 100]:
    print(f"T = {T:<5g} entropy = {entropy(softmax_with_temperature(z3, T)):.3f} nats")
print(f"uniform over 10 classes: log(10) = {math.log(10):.3f} nats")

# %% [markdown]
# The entropy grows with $T$ and approaches $\log 10$ from below, never passing it.
#
# ## 3. A real teacher
#
# Made-up logits only go so far. We now train a **teacher**: a small convolutional network
# (`DigitsCNN(32)`, about 100k parameters) on the 8×8 handwritten digits that ship with scikit-learn
# (1,077 training images, 450 test images). It takes a few seconds on a laptop CPU.

# %%
data = load_digits_data(seed=0, images=True)  # inputs of shape (N, 1, 8, 8), pixels in [0, 1]
teacher_epochs = pick(quick=15, full=30)

seed_everything(0)
teacher = DigitsCNN(32)
history = train(teacher, data.train, val_data=data.val, epochs=teacher_epochs, lr=1e-3, seed=0)
teacher_acc = evaluate(teacher, data.test)
print(f"teacher: {count_parameters(teacher):,} parameters, test accuracy {teacher_acc:.1%}")

# %%
assert teacher_acc > 0.97, "the teacher should be accurate; rerun the training cell"

# %% [markdown]
# We compute the teacher's logits for every test image once, and soften them with **your**
# `softmax_with_temperature`. Below, four test images, two of the same digit per pair. Each row
# shows the teacher's probabilities at $T = 1$ (what the teacher "says") and at $T = 4$ (what a
# distillation loss with $T = 4$ would show the student); the true class is orange. The pairs were
# picked automatically: for a digit, two test images the teacher classifies correctly with at least
# 90 % confidence, whose runner-up classes differ.

# %%
x_test, y_test = tensors(data.test)
z_test = predict_logits(teacher, x_test)            # (450, 10) logits, computed once
correct = z_test.argmax(1) == y_test


def runner_up(z):
    return z.topk(2, dim=-1).indices[..., 1]


def pick_pair(digit):
    """Two test images of `digit` the teacher gets right with >= 90 % confidence, whose runner-up
    classes differ: the ones with the strongest runner-up at T = 4 first."""
    q1, q4 = softmax_with_temperature(z_test, 1.0), softmax_with_temperature(z_test, 4.0)
    idx = torch.where((y_test == digit) & correct & (q1.max(1).values >= 0.9))[0]
    second = runner_up(z_test[idx])
    strength = q4[idx].gather(1, second[:, None])[:, 0]
    order = idx[strength.argsort(descending=True)]
    first = order[0]
    other = next(i for i in order[1:] if runner_up(z_test[i]) != runner_up(z_test[first]))
    return [int(first), int(other)]


examples = pick_pair(3) + pick_pair(8)
fig = soft_target_grid(
    x_test[examples],
    {T: softmax_with_temperature(z_test[examples], T).numpy() for T in (1, 4)},
    labels=y_test[examples].tolist(),
    suptitle="Teacher outputs on test images: ordinary softmax (T = 1) and softened (T = 4)",
)
plt.show()
for i in examples:
    print(f"test image {i}: true {int(y_test[i])}, teacher's runner-up {int(runner_up(z_test[i]))}")

# %% [markdown]
# At $T = 1$ the teacher is at least 90 % sure in every row, and most bars of the wrong classes are
# too small to see. At $T = 4$ the runner-ups stand out, and they differ between two images with the
# **same label**. The hard label of both images in a pair is the same one-hot vector; the softened
# outputs tell the two apart (the printout above lists each image's runner-up).
#
# Move the slider to see one image's probabilities change with $T$ (the black ticks are $T = 1$).
# On the right, the entropy of this image's softened outputs as $T$ varies.

# %%
i = examples[0]
temperature_explorer(z_test[i], class_names=data.classes, true_class=int(y_test[i]), T=4.0,
                     title=f"test image {i} (a {int(y_test[i])}): teacher's softmax(z / T)")

# %% [markdown]
# ## 4. Entropy against temperature, over the whole test set
#
# How soft are the teacher's outputs on average? Below, the mean entropy over the 450 test images at
# each temperature, with the band between the 10th and the 90th percentile.

# %%
T_grid = np.geomspace(0.5, 50, 40)
H = torch.stack([entropy(softmax_with_temperature(z_test, float(T))) for T in T_grid])  # (len(T_grid), 450)
mean_H = H.mean(1).numpy()
lo_H, hi_H = np.quantile(H.numpy(), [0.1, 0.9], axis=1)

fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(T_grid, mean_H, color="tab:blue", label="mean over the test set")
ax.fill_between(T_grid, lo_H, hi_H, color="tab:blue", alpha=0.2, label="10th to 90th percentile")
ax.axhline(math.log(10), color="gray", ls="--", label="uniform: log 10")
ax.set_xscale("log")
ax.set_xlabel("temperature T (log scale)")
ax.set_ylabel("entropy of softmax(z / T) (nats)")
ax.set_title("The teacher's outputs get softer as T grows")
ax.legend()
ax.grid(alpha=0.3)
plt.show()

mean_entropy = {T: float(entropy(softmax_with_temperature(z_test, T)).mean()) for T in (1, 2, 4, 8, 20)}
for T, h in mean_entropy.items():
    print(f"T = {T:<3g} mean entropy {h:.2f} nats ({h / math.log(10):.1%} of log 10)")

# %%
values = list(mean_entropy.values())
assert all(a < b for a, b in zip(values, values[1:])), "entropy should grow with T"
assert values[0] < 0.25 * math.log(10) and values[-1] > 0.95 * math.log(10)

# %% [markdown]
# At $T = 1$ this teacher is very confident: its mean entropy is a small fraction of $\log 10$ (the
# printout above gives the numbers). That is what a 99 %-accurate network trained with cross-entropy
# does. At $T = 4$ the mean entropy is 84 % of the maximum, yet the bars in section 3 are still clearly
# uneven; by $T = 20$ (99.6 %) the outputs are almost uniform: there, the differences between the wrong classes are tiny again, now because everything
# is squeezed towards $1/10$. Distillation usually picks $T$ between 2 and 10 for this reason.
#
# ## 5. Which digits look alike? The teacher's similarity structure
#
# Average the teacher's softened probabilities over all test images of each true digit. Row $c$ of the
# matrix below is the mean of $\mathrm{softmax}(z / T)$ over the test images of digit $c$, for the
# wrong classes only (the diagonal, the true class, is left out). A bright cell $(c, k)$ means: the
# teacher often finds digit $c$ a bit like digit $k$.

# %%
T_sim = 2.0


def similarity_matrix(z, y, T):
    """Row c: the mean softened probability of each class over the examples of class c (diagonal = nan)."""
    q = softmax_with_temperature(z, T)
    m = torch.stack([q[y == c].mean(0) for c in range(10)]).numpy()
    np.fill_diagonal(m, np.nan)
    return m


S = similarity_matrix(z_test, y_test, T_sim)
fig = sweep_heatmap(S, data.classes, data.classes, row_label="true digit", col_label="wrong class",
                    fmt=".3f", title=f"Mean softened probability of each wrong class (T = {T_sim:g}, test set)")
fig.set_size_inches(9, 6.5)
plt.show()

for c in range(10):
    row = np.nan_to_num(S[c], nan=-1.0)
    top = np.argsort(-row)[:2]
    print(f"digit {c}: most similar wrong classes {top[0]} ({row[top[0]]:.3f}) and {top[1]} ({row[top[1]]:.3f})")

# %% [markdown]
# Read the printout row by row. For this teacher a 7 looks most like a 3 (0.040) and a 3 most like a 7
# (0.035); a 2 looks most like a 1 (0.042); 8 and 9 rank each other among their top two (0.036 and 0.037). Not every
# pair is mutual: a 2 looks most like a 1, but a 1 looks most like an 8 and a 9. The numbers are small
# because at $T = 2$ the true class still holds most of the probability; what matters is their
# contrast: across the matrix, the wrong classes range from about 0.01 to 0.04, so the most similar
# wrong class gets about four times the probability of the least similar one.
#
# ### Is this the digits or the teacher's random seed?
#
# One teacher's matrix could be partly chance. We train two more teachers with other seeds (a few
# seconds each) and compare their matrices with the first one's: the correlation between the 90
# off-diagonal entries of two teachers' matrices, at three temperatures. A correlation near 1 means the structure is a
# property of the data; near 0, of the seed.

# %%
off_diagonal = ~np.eye(10, dtype=bool)
T_compare = [1.0, 2.0, 4.0]
correlations = {T: [] for T in T_compare}
for seed in (1, 2):
    seed_everything(seed)
    other = DigitsCNN(32)
    train(other, data.train, epochs=teacher_epochs, lr=1e-3, seed=seed, progress=False)
    z_other = predict_logits(other, x_test)
    for T in T_compare:
        a, b = similarity_matrix(z_test, y_test, T), similarity_matrix(z_other, y_test, T)
        correlations[T].append(np.corrcoef(a[off_diagonal], b[off_diagonal])[0, 1])
    print(f"teacher seed {seed}: test accuracy {evaluate(other, data.test):.1%}")
print("correlation of the similarity matrices with seed 0's teacher:")
for T in T_compare:
    print(f"  T = {T:g}: " + ", ".join(f"seed {seed} {r:.2f}" for seed, r in zip((1, 2), correlations[T])))

# %%
assert min(correlations[T_sim]) > 0.5, "the similarity structure should mostly come from the data"

# %% [markdown]
# At $T = 2$, the temperature of the matrix above, the correlations are 0.77 and 0.78: most of the
# structure comes from the digits, not from the seed. The agreement is highest at $T = 1$ (0.86 and
# 0.88) and lower at $T = 4$ (0.60 and 0.66). A likely reason: at $T = 1$ the matrix is dominated by
# the few strong confusions, which all three teachers share, while a higher $T$ brings out the far
# tail of small logits, which depends more on the seed. A teacher's dark knowledge is partly the data
# and partly its own quirks, and the temperature decides how much of the tail the student sees.
#
# ### Why a hard label cannot carry this
#
# A hard label is a one-hot vector: "this is a 3", with probability 0 for each of the nine other
# classes. Every 3 in the training set gets the same target, so a network trained on labels alone
# is told nothing about *which* wrong classes are close: only that all of them are wrong. The
# teacher's softened outputs give each image its own target: "a 3, a bit like this 9, much less like
# a 1". This is the extra information a student gets from a teacher, about 9 numbers per image
# instead of one class index. Hinton et al. (2015) use it to train a student on a transfer set that never
# contains a digit, and still have it recognise that digit (lesson 04 repeats that experiment).
#
# The temperature matters because the loss only "hears" what has visible probability. At $T = 1$ the
# wrong classes of this teacher have tiny probabilities (section 4), so a student matching them
# would learn almost nothing beyond the label; at $T$ around 2 to 4 the differences between the wrong
# classes are large enough to drive learning.
#
# ## Recap
#
# - $\mathrm{softmax}(z / T)$: $T > 1$ softens, $T < 1$ sharpens, the class order never changes.
# - The entropy measures softness: from nearly 0 for this confident teacher at $T = 1$ up to $\log C$ as
#   $T \to \infty$.
# - A trained teacher's softened outputs rank the wrong classes; averaged over a digit they show which
#   digits look alike. Teachers trained with other seeds largely agree on this structure (correlation
#   about 0.8 at $T = 2$), less so in the far tail that a high $T$ brings out.
# - A hard label carries none of this; a soft target does. That is what distillation transfers.
#
# ## Questions
#
# 1. Why does dividing the logits by $T$ never change the predicted class? What would break this (think of
#    adding a different constant to each logit, or a negative $T$)?
# 2. At very high $T$ the entropy is almost $\log 10$ for every image. Why is a huge $T$ then a poor choice
#    for distillation, even though the wrong classes all get "visible" probability?
# 3. The similarity matrix is not symmetric: in this teacher's matrix a 2 looks most like a 1 (0.042), but a 1
#    looks much less like a 2 (0.024). Can you think of a reason, in terms of how the digits are written?

# %% [markdown] tags=["answer-key"]
# ### Answer key (solutions only)
#
# 1. For $T > 0$, dividing every logit by the same $T$ keeps their order ($z_i > z_j$ exactly when
#    $z_i / T > z_j / T$), and the softmax gives the largest logit the largest probability, so the
#    arg-max is the same at every temperature (section 1's table: class 3 leads every row); only the
#    gaps, hence the confidence, change. Adding the *same* constant to every logit changes nothing
#    either (the softmax is shift-invariant, which is why subtracting the row maximum is safe). What
#    breaks it: a *different* constant per logit changes the differences and can reorder the classes
#    (lesson 04's bias correction does this on purpose to the 3 logit); a negative $T$ reverses the
#    order, so the smallest logit gets the most mass (the arg-max becomes the arg-min); $T = 0$ is
#    undefined (the limit $T \to 0^+$ is the one-hot arg-max). That is why the course's losses reject
#    $T \le 0$.
# 2. As $T$ grows every softened distribution tends to the uniform $1/C$, so the differences between
#    the wrong classes, which are the information, shrink like $1/T$ (by $T = 20$ the mean entropy is
#    99.6 % of $\log 10$). Without the $T^2$ of lesson 02 the signal vanishes; with it, very high $T$
#    turns the loss into matching *all* the logits with a squared error (lesson 02, section 4),
#    including the very negative logits of classes the teacher rules out. Those carry little, and they
#    are the part that depends most on the teacher's seed: the similarity matrices of teachers trained
#    with other seeds agree less at $T = 4$ (0.60 and 0.66) than at $T = 1$ (0.86 and 0.88). A small
#    student also spends capacity copying that noise. A moderate $T$ (2 to 10 in practice) makes the
#    plausible wrong classes visible while the order of the tail still matters little.
# 3. Row $c$ is an average over images *of digit $c$*: it estimates how much a 2 looks like a 1, which
#    need not equal how much a 1 looks like a 2 (two different conditional quantities, each row
#    normalised on its own). Plausible reasons in the handwriting: many 2s contain a 1-like stroke
#    (the diagonal from the top right down to the base), while a typical 1 is a single stroke without
#    the curved top and flat base of a 2; and a row's leftover mass is shared among all the classes
#    that compete for it (for a 1, the 8 and the 9 take most of it). How varied a digit's writing is
#    also matters: a digit written in many styles spreads its mass over more wrong classes.
#
