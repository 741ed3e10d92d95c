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
# # Lesson 06 — Relation distillation
#
# Logit distillation (lesson 04) and feature distillation (lesson 05) are **per example**: for each
# image, the student copies something the teacher computed for that image. Relation distillation
# copies something else: how the teacher arranges a batch of examples *relative to each other*. Which
# images does it put close together, which far apart, at which angles?
#
# - **RKD** (relational knowledge distillation, Park et al. 2019) matches the pairwise **distances** of
#   the teacher's embeddings and the **angles** formed by triplets of them;
# - **SP** (similarity-preserving KD, Tung & Mori 2019) matches the batch's **similarity matrix**.
#
# Both compare structures of the batch, never the vectors themselves, so the teacher and the student
# may have embeddings of different widths with no regressor in between.
#
# **Goals.** By the end of this lesson you can
#
# 1. implement the RKD distance loss, with distances normalised by their mean;
# 2. compute the RKD angles with the right vertex, and the RKD angle loss;
# 3. implement SP's row-normalised similarity matrix and its loss (with the $1/b^2$);
# 4. read teacher and student similarity and distance matrices, sorted by class, before and after distillation;
# 5. compare RKD, SP, KD and their combinations over several seeds, weights chosen on the validation set,
#    and say what relations add here and what they do not.
#
# The notebook trains about fifty small students and runs in a few minutes on a laptop CPU.

# %%
# Set-up: on Google Colab, install the course package first (does nothing elsewhere).
import sys
if "google.colab" in sys.modules:
    import subprocess
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "kdcourse @ git+https://github.com/kdcourse/kdcourse"], check=True)

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from kdcourse import losses, plots
from kdcourse.checks import (
    check_rkd_angle_loss,
    check_rkd_angles,
    check_rkd_distance_loss,
    check_similarity_matrix,
    check_similarity_preserving_loss,
)
from kdcourse.config import pick
from kdcourse.data import load_digits_data, subset, tensors
from kdcourse.distill import TrainConfig, evaluate, seed_everything, teacher_outputs, train
from kdcourse.study import RunPlan, Runs
from kdcourse.models import DigitsCNN, count_parameters, feature_extractor

# These networks are tiny: one CPU thread is as fast as several, never fights other programs for
# the cores, and gives the same numbers whatever the machine's core count.
torch.set_num_threads(1)
notebook_start = time.perf_counter()
seed_everything(0)

# %% [markdown]
# ## 1. Teacher, student, data
#
# The same setting as lessons 04 and 05: a `DigitsCNN(32)` teacher trained on the 1077 training
# digits, a `DigitsCNN(8)` student that sees 300 of them, 40 epochs of Adam at learning rate 3e-3, and
# for KD $T = 4$, $\alpha = 0.9$. Relations are computed on the **embedding**, the pooled vector just
# before the classifier: 128 numbers for the teacher, 32 for the student.

# %%
data = load_digits_data(images=True)
small = subset(data.train, 300, seed=0)  # the student's training set
x_small, y_small = tensors(small)

seed_everything(0)
teacher = DigitsCNN(32)
train(teacher, data.train, epochs=15, lr=1e-3, seed=0)
print(f"teacher DigitsCNN(32): {count_parameters(teacher):>7,} parameters, test accuracy "
      f"{evaluate(teacher, data.test):.1%}")
print(f"student DigitsCNN(8):  {count_parameters(DigitsCNN(8)):>7,} parameters")

STUDENT_WIDTH, EPOCHS, LR, T, ALPHA = 8, 40, 3e-3, 4.0, 0.9

# %%
# NBVAL_CHECK_OUTPUT
with torch.no_grad():
    t_out = feature_extractor(teacher, ["layer3", "embedding"])(x_small[:8])
    s_out = feature_extractor(DigitsCNN(STUDENT_WIDTH).eval(), ["layer3", "embedding"])(x_small[:8])
for name in ["layer3", "embedding"]:
    print(f"{name:<10} teacher {str(tuple(t_out[name].shape)):>15}   student {str(tuple(s_out[name].shape)):>15}")


# %% [markdown]
# ## 2. RKD: distances
#
# For a batch of embeddings $t_1, \dots, t_b$ (teacher) and $s_1, \dots, s_b$ (student), RKD's distance
# potential is the Euclidean distance **divided by the mean distance** over all pairs $i \ne j$:
#
# $$
# \psi_D(t_i, t_j) = \frac{1}{\mu}\,\| t_i - t_j \|_2, \qquad
# \mu = \frac{1}{b(b-1)} \sum_{i \ne j} \| t_i - t_j \|_2 ,
# $$
#
# and the loss compares teacher and student with the Huber loss $\ell_\delta$ (`F.smooth_l1_loss`),
# averaged over all $b^2$ entries of the two $b \times b$ distance matrices, the diagonal included
# (there both distances are 0 and $\ell_\delta(0, 0) = 0$), as the reference implementations do (the RKD
# authors' code, RepDistiller, mdistiller):
#
# $$
# L_{\mathrm{RKD\text{-}D}} = \frac{1}{b^2} \sum_{i, j} \ell_\delta\big(\psi_D(t_i, t_j),\, \psi_D(s_i, s_j)\big).
# $$
#
# The normalisation is the point: the teacher's embedding lives on its own scale (and in 128
# dimensions, the student's in 32); only the *relative* distances can be compared. The Huber loss keeps
# a few very different pairs from dominating.
#
# Why $1/b^2$, when only the $b(b-1)$ pairs $i \ne j$ carry information? Because RKD's weights
# ($\lambda_D = 25$ for the distances, $\lambda_A = 50$ for the angles) come with code that averages this
# way. This loss is $(b-1)/b$ times the average over the pairs alone ($4/5$ for $b = 5$, $63/64$ for
# $b = 64$): averaging over the pairs instead would quietly multiply every weight taken from the papers
# by $b/(b-1)$.
#
# **Exercise 1.** Implement `rkd_distance_loss(student_embedding, teacher_embedding)`; both are `(b, D)`
# with different `D`. `torch.cdist(e, e)` gives all pairwise distances (with zeros on the diagonal); a
# boolean mask `~torch.eye(b, dtype=torch.bool)` selects the pairs $i \ne j$ for the mean $\mu$. Then
# compare the whole normalised matrices.

# %%
def rkd_distance_loss(student_embedding, teacher_embedding):
    """RKD-D: Huber loss between the b x b pairwise distance matrices, averaged over all b^2 entries,
    each network's distances divided by its own mean over the pairs i != j."""
    ### BEGIN SOLUTION divide each distance matrix by its mean over i != j, then the Huber loss over all b^2 entries
    off_diagonal = ~torch.eye(len(student_embedding), dtype=torch.bool, device=student_embedding.device)

    def normalised(embedding):
        d = torch.cdist(embedding, embedding)  # b x b, zeros on the diagonal
        return d / d[off_diagonal].mean()  # mu: the mean over the pairs i != j

    return F.smooth_l1_loss(normalised(student_embedding), normalised(teacher_embedding))  # over all b^2 entries
    ### END SOLUTION


# %%
check_rkd_distance_loss(rkd_distance_loss)


# %% [markdown]
# ## 3. RKD: angles
#
# Distances say how far; angles say in which direction. For a triplet of examples the angle
# potential is the cosine of the angle **at the middle point** $t_j$:
#
# $$
# \psi_A(t_i, t_j, t_k) = \cos \angle t_i t_j t_k = \langle e^{ij}, e^{kj} \rangle, \qquad
# e^{ij} = \frac{t_i - t_j}{\|t_i - t_j\|_2}, \quad e^{kj} = \frac{t_k - t_j}{\|t_k - t_j\|_2} .
# $$
#
# Both vectors start at the vertex $t_j$. A cosine of unit vectors is already scale-free: no mean to divide by.
#
# **Exercise 2.** Implement `rkd_angles(embedding)`: `(b, D)` in, `(b, b, b)` out with
# `A[i, j, k]` $= \psi_A(t_i, t_j, t_k)$. Broadcasting builds all differences at once:
# `embedding[:, None, :] - embedding[None, :, :]` has `diff[i, j] = t_i - t_j`. Normalise with
# `F.normalize` (when $i = j$ the difference is the zero vector, and a plain division gives 0/0 = NaN);
# `torch.einsum` then takes the dot products over the last dimension.

# %%
def rkd_angles(embedding):
    """A[i, j, k] = cosine of the angle at t_j between t_i and t_k, shape (b, b, b)."""
    ### BEGIN SOLUTION unit vectors e[i, j] = (t_i - t_j) / ||t_i - t_j||, then A[i, j, k] = <e[i, j], e[k, j]>
    diff = embedding[:, None, :] - embedding[None, :, :]  # diff[i, j] = t_i - t_j
    e = F.normalize(diff, p=2, dim=2)
    return torch.einsum("ijd,kjd->ijk", e, e)
    ### END SOLUTION


# %%
check_rkd_angles(rkd_angles)


# %% [markdown]
# **Exercise 3.** Implement `rkd_angle_loss(student_embedding, teacher_embedding)`: the Huber loss
# between the two networks' angle tensors, averaged over the $b^3$ triplets.

# %%
def rkd_angle_loss(student_embedding, teacher_embedding):
    """RKD-A: Huber loss between the student's and the teacher's angle tensors."""
    ### BEGIN SOLUTION compare rkd_angles of both embeddings with F.smooth_l1_loss
    return F.smooth_l1_loss(rkd_angles(student_embedding), rkd_angles(teacher_embedding))
    ### END SOLUTION


# %%
check_rkd_angle_loss(rkd_angle_loss)


# %% [markdown]
# The angle tensor has $b^3$ entries: 262,144 for a batch of 64, times the embedding width while it
# is being built. That is why RKD is used with batches of at most a hundred or so examples.
#
# ## 4. SP: the batch similarity matrix
#
# SP flattens each example's feature to a row of $Q \in \mathbb{R}^{b \times D}$ and compares the
# $b \times b$ matrices of dot products, each row divided by its L2 norm:
#
# $$
# \tilde G = Q Q^\top, \qquad G_{[i,:]} = \tilde G_{[i,:]} \,/\, \|\tilde G_{[i,:]}\|_2 ,
# \qquad
# L_{\mathrm{SP}} = \frac{1}{b^2}\, \| G_T - G_S \|_F^2 .
# $$
#
# Row $i$ of $G$ says how example $i$ relates to every other example of the batch, on a common scale.
#
# **Exercise 4.** Implement `similarity_matrix(feature)`: any `(b, ...)` feature in, `(b, b)` out.

# %%
def similarity_matrix(feature):
    """SP's G: flatten to (b, D), G = Q Q^T, each row divided by its L2 norm."""
    ### BEGIN SOLUTION flatten, Gram matrix of the examples, normalise each row
    q = feature.flatten(1)
    return F.normalize(q @ q.t(), p=2, dim=1)
    ### END SOLUTION


# %%
check_similarity_matrix(similarity_matrix)


# %% [markdown]
# **Exercise 5.** Implement `similarity_preserving_loss(student_feature, teacher_feature)`: the squared
# Frobenius norm of the difference of the two matrices, divided by $b^2$.

# %%
def similarity_preserving_loss(student_feature, teacher_feature):
    """SP loss: ||G_T - G_S||_F^2 / b^2."""
    ### BEGIN SOLUTION the squared Frobenius norm of G_T - G_S, divided by b^2
    b = len(student_feature)
    return (similarity_matrix(teacher_feature) - similarity_matrix(student_feature)).pow(2).sum() / b**2
    ### END SOLUTION


# %%
check_similarity_preserving_loss(similarity_preserving_loss)

# %% [markdown]
# ## 5. Training students
#
# Your five functions passed their checkers. From here on, as in lesson 05, the students train with
# the package's **reference** implementations of the same losses (`kdcourse.losses.rkd_distance_loss`,
# `rkd_angle_loss`, `similarity_matrix` and `similarity_preserving_loss`): the functions the checkers
# compared yours against, so the numbers on your screen are the ones the text quotes. Two right answers
# can differ in the last bits of a float (`torch.cdist(e, e)` and the norms of all differences, for
# instance, round differently), and forty epochs of training can grow that into a test image more or less. Your functions would plug into the same places
# (the terms of the package's registry of methods, `kdcourse.methods`).
#
# `plan` says how one run trains (the method, its weights and layers), the study driver `Runs`
# (`kdcourse.study`, as in lesson 05) seeds it, builds a fresh student and scores it, `run` returns one
# run's accuracies (memoised), and the teacher's outputs on the 300 training images are computed once
# and shared (`teacher_cache=`). RKD keeps the
# papers' ratio of 1 : 2 between its distance and angle weights (25 and 50); one factor `rkd` scales both.

# %%
teacher_cache = teacher_outputs(teacher, x_small, ["layer3", "embedding"])
RKD_LAYER = "embedding"


settings = TrainConfig(epochs=EPOCHS, lr=LR, T=T, alpha=ALPHA)


def plan(method, seed, rkd=None, sp=None):
    """How a run of 'baseline', 'kd', 'rkd', 'sp' or a sum like 'kd+sp' trains; rkd = scale of (25, 50),
    sp = (layer, weight). The registry's terms (`kdcourse.methods`) of the package's reference losses
    (yours would replace them)."""
    weights, layers = {}, {"rkd": RKD_LAYER}
    if rkd is not None:
        weights.update(rkd_distance=25 * rkd, rkd_angle=50 * rkd)
    if sp is not None:
        layers["sp"], weights["sp"] = sp
    return RunPlan(small, settings.replace(method=method, weights=weights, layers=layers), teacher, teacher_cache,
                   val_data=data.val)


runs = Runs(lambda: DigitsCNN(STUDENT_WIDTH), plan, score=lambda student, history: evaluate(student, data.test))


def run(method, seed, rkd=None, sp=None):
    """One DigitsCNN(8) student (memoised by `runs`): its validation and test accuracy, and the model."""
    r = runs.run(method, seed, keep=True, rkd=rkd, sp=sp)
    return {"val": r.history.final_val_acc, "test": r.score, "student": r.student}


# %% [markdown]
# ### Choosing the weights on the validation set
#
# The papers' weights (RKD: 25 and 50; SP: $\gamma = 3000$) were tuned for other networks and data
# (CIFAR, ImageNet, metric learning), so we do not take them on trust: a small grid around them, three
# seeds each, scored on the **validation** set (270 images the students never train on); the test set
# is kept for the final comparison. As in lesson 05, a cell's score is counted in whole images
# (validation images right, summed over the three seeds), so no rounding decides; on an exact tie we
# take the smaller weight (then the first layer listed). For SP we also
# try two layers, the 4-D output of `layer3` (what the SP paper uses: the last convolutional block) and
# the pooled `embedding`.

# %%
SWEEP_SEEDS = [0, 1, 2]
rkd_scales = [0.01, 0.1, 1.0]
sp_layers, sp_weights = ["layer3", "embedding"], [30.0, 300.0, 3000.0]
N_VAL = len(data.val)
N_SWEEP = len(SWEEP_SEEDS) * N_VAL  # validation predictions per cell


def val_right(method, **options):
    """Validation images classified right, summed over the sweep seeds: a whole number, compared exactly."""
    return sum(round(run(method, s, **options)["val"] * N_VAL) for s in SWEEP_SEEDS)


def choose(right, weights):
    """The cell (row, column) with the most images right; on an exact tie the smaller weight, then the earlier row."""
    return min(np.ndindex(*right.shape), key=lambda ij: (-right[ij], weights[ij[1]], ij[0]))


def margin(right, ij):
    runner_up = np.delete(right.ravel(), np.ravel_multi_index(ij, right.shape)).max()
    return "an exact tie, broken by the rule" if right[ij] == runner_up else f"{right[ij] - runner_up} more than the runner-up"


right_rkd = np.array([[val_right("rkd", rkd=c) for c in rkd_scales]])
right_sp = np.array([[val_right("sp", sp=(layer, w)) for w in sp_weights] for layer in sp_layers])
baseline_right = val_right("baseline")
val_rkd, val_sp = right_rkd / N_SWEEP, right_sp / N_SWEEP  # mean validation accuracy

ij_rkd = choose(right_rkd, rkd_scales)
best_rkd = rkd_scales[ij_rkd[1]]
ij_sp = choose(right_sp, sp_weights)
best_sp = (sp_layers[ij_sp[0]], sp_weights[ij_sp[1]])
print(f"baseline: mean validation accuracy {baseline_right / N_SWEEP:.1%} ({baseline_right} of {N_SWEEP} right)")
print(f"RKD: best scale {best_rkd:g} (weights {25 * best_rkd:g} and {50 * best_rkd:g}), mean validation accuracy "
      f"{val_rkd[ij_rkd]:.1%} ({right_rkd[ij_rkd]} of {N_SWEEP}, {margin(right_rkd, ij_rkd)})")
print(f"SP:  best layer={best_sp[0]}, weight={best_sp[1]:g}, mean validation accuracy {val_sp[ij_sp]:.1%} "
      f"({right_sp[ij_sp]} of {N_SWEEP}, {margin(right_sp, ij_sp)})")
cells = np.concatenate([right_rkd.ravel(), right_sp.ravel()])
print(f"all {len(cells)} cells: {cells.min() / N_SWEEP:.1%} to {cells.max() / N_SWEEP:.1%} "
      f"({cells.max() - cells.min()} predictions of {N_SWEEP} apart, {(cells.max() - cells.min()) / len(SWEEP_SEEDS):.0f} "
      f"images per seed); {(cells > baseline_right).sum()} of {len(cells)} above the baseline")

fig, axes = plt.subplots(1, 2, figsize=(11, 3.2), gridspec_kw={"width_ratios": [1, 1.1]}, constrained_layout=True)
plots.sweep_heatmap(val_rkd, ["embedding"], [f"{c:g}" for c in rkd_scales], row_label="layer",
                    col_label="RKD scale (x 25 / x 50)", title="RKD: mean validation accuracy", ax=axes[0], fmt=".1%",
                    reference=baseline_right / N_SWEEP, halfwidth=0.03, reference_label="baseline")
plots.sweep_heatmap(val_sp, sp_layers, sp_weights, row_label="layer", col_label="SP weight",
                    title="SP: mean validation accuracy", ax=axes[1], fmt=".1%",
                    reference=baseline_right / N_SWEEP, halfwidth=0.03, reference_label="baseline")
plt.show()

# %% [markdown]
# The colours measure each cell's distance from the baseline (94.7 %): blue above, red below, saturating
# three points away (or at the farthest cell, if it is farther). RKD's best scale is 0.1 (weights 2.5 and 5, a tenth of the papers'), eight validation
# predictions of 810 ahead of the papers' own scale 1; SP's best is weight 300 on the embedding, a tenth of the paper's
# $\gamma = 3000$, two predictions ahead of the runner-up (`layer3` at weight 30). But look at the spread:
# all nine cells are above the baseline's 94.7 %, yet they span only 94.8 to 96.3 %, twelve predictions
# of 810, about four validation images per seed (one image is 0.37 points of one seed's accuracy). Over two
# orders of magnitude of weight, neither method is very sensitive here, and the choice between
# neighbouring cells is close to a coin toss. We keep the rule (most validation predictions right, ties
# to the smaller weight) because it was fixed before looking at the test set, not because its winner is
# clearly better.

# %% [markdown]
# ## 6. RKD, SP, KD and combinations, over several seeds
#
# The test set now, with more seeds. RKD and SP use the settings chosen above, also when added to KD.

# %%
SEEDS = list(range(pick(quick=5, full=10)))
configs = {
    "baseline": ("baseline", {}),
    "KD": ("kd", {}),
    "RKD": ("rkd", {"rkd": best_rkd}),
    "SP": ("sp", {"sp": best_sp}),
    "KD + RKD": ("kd+rkd", {"rkd": best_rkd}),
    "KD + SP": ("kd+sp", {"sp": best_sp}),
}
results = {label: [run(method, s, **options) for s in SEEDS] for label, (method, options) in configs.items()}
test_acc = {label: [r["test"] for r in rs] for label, rs in results.items()}

print(f"{len(SEEDS)} seeds, DigitsCNN(8) student on 300 images; mean ± sample std, in %")
print(f"{'method':<10} {'validation':>12} {'test':>12}   test - KD on the same seed")
for label in configs:
    val = np.array([r["val"] for r in results[label]]) * 100
    test = np.array(test_acc[label]) * 100
    paired = test - np.array(test_acc["KD"]) * 100
    ties = np.isclose(paired, 0).sum()
    vs_kd = "" if label == "KD" else \
        f"{paired.mean():+.1f}  ({(paired > 0).sum()} up, {ties} tied, {(paired < 0).sum()} down)"
    print(f"{label:<10} {val.mean():6.1f} ± {val.std(ddof=1):.1f} {test.mean():6.1f} ± {test.std(ddof=1):.1f}   {vs_kd}")

plots.mean_std_bars(test_acc, title=f"Relation distillation, DigitsCNN(32) -> DigitsCNN(8), {len(SEEDS)} seeds")
plt.show()


# %%
def paired(a, b):
    """Per-seed test accuracy of `a` minus that of `b` on the same seed, in points."""
    return 100 * (np.array(test_acc[a]) - np.array(test_acc[b]))


for a, b in [("KD", "baseline"), ("SP", "baseline"), ("RKD", "baseline"), ("RKD", "KD"), ("SP", "KD"),
             ("KD + RKD", "KD"), ("KD + SP", "KD")]:
    d = paired(a, b)
    print(f"{a + ' - ' + b:<18} per seed {' '.join(f'{x:+5.1f}' for x in d)}   mean {d.mean():+.2f}")

# KD and SP alone each beat training on labels alone, on every seed; RKD alone on average and on 4 of 5
for method in ["KD", "SP"]:
    assert (paired(method, "baseline") > 0).all(), method
rkd_gain = paired("RKD", "baseline")
print(f"RKD - baseline: mean {rkd_gain.mean():+.2f} points, above on {(rkd_gain > 0).sum()} of {len(rkd_gain)} seeds")
assert rkd_gain.mean() > 0 and (rkd_gain > 0).sum() >= len(rkd_gain) - 1, "RKD alone above the baseline on average and on all seeds but one"
# RKD and SP alone are on par with KD: on average within one point (4.5 test images) either way
assert abs(paired("RKD", "KD").mean()) < 1 and abs(paired("SP", "KD").mean()) < 1

# %% [markdown]
# On the test set (450 images, one image is 0.22 points), five seeds; the table's last column pairs each student
# with the KD student of the same seed (same initial weights, same batches), and the cell above prints
# every seed's difference.
#
# - KD and SP beat labels alone **on every seed**: KD by +0.7 to +1.3 points, SP alone by +0.7 to
#   +2.7. RKD alone does on average (+0.58), but not on every seed: +0.2 to +1.3 on four, −0.2 on the
#   fifth.
# - **SP** alone, 96.1 ± 0.6 %, is on par with KD (+0.2 on average: up on 2 seeds, tied on 2, down on 1).
# - **RKD** alone is a little *below* KD (−0.5; up on 2 seeds, down on 3): relations without the logits
#   do not beat the logits here.
# - **KD + SP** has the best mean, 96.3 ± 0.2 %, +0.4 over KD (up on 4 seeds of 5, down on 1).
# - **KD + RKD** is no better than KD (−0.0; up on 2 seeds, tied on 1, down on 2).
#
# All of these lie within about one point and one or two standard deviations of each other. What five
# seeds establish is that KD and SP beat labels alone (RKD on average); the order among KD, RKD, SP and their sums
# is not established. (An earlier run of this notebook, on a machine whose arithmetic differs in the last
# bits, put KD + RKD first and KD + SP level with KD.) Published results vary the same way: on CIFAR-100
# (RepDistiller, resnet32x4 → resnet8x4) SP reaches 72.94 % and RKD 71.90 %, against 73.33 % for KD and
# 72.50 % for the student trained alone: there, RKD was *worse than no distillation*.

# %% [markdown]
# ## 7. Looking at the relations
#
# Take 50 test digits, five of each class, **sorted by class**, and compute on their embeddings the
# teacher's and a student's matrices. Sorted this way, a network that groups the classes shows bright
# (similar) or dark (close) blocks on the diagonal, one per class, separated by the white lines; the
# axes name the class of each block.
#
# First SP's similarity matrix $G$: the teacher against the baseline student (trained on labels only:
# *before*), then against the SP student (*after*); both students are seed 0 of the table above.

# %%
x_test, y_test = tensors(data.test)
order = torch.cat([torch.nonzero(y_test == c)[:5, 0] for c in range(10)])
x_sorted = x_test[order]
boundaries = list(range(5, 50, 5))  # where a new class starts
digits = [str(c) for c in range(10)]  # the class of each block of five


def embedding_of(model, x, layer="embedding"):
    with torch.no_grad():
        return feature_extractor(model, [layer])(x)[layer]


t_emb = embedding_of(teacher, x_sorted)
students = {label: results[label][0]["student"] for label in ["baseline", "KD", "RKD", "SP"]}
G = losses.similarity_matrix  # the reference, as in training

plots.matrix_pair(G(t_emb), G(embedding_of(students["baseline"], x_sorted)),
                  titles=("teacher", "baseline student"), boundaries=boundaries, class_labels=digits,
                  suptitle="Before: SP similarity matrices G of 50 test digits, five per class")
plt.show()
plots.matrix_pair(G(t_emb), G(embedding_of(students["SP"], x_sorted)),
                  titles=("teacher", "SP student"), boundaries=boundaries, class_labels=digits,
                  suptitle="After: the SP student's similarity matrix")
plt.show()

# %% [markdown]
# The teacher's matrix shows ten bright blocks on the diagonal: digits of one class are similar to
# each other and much less to the others. The baseline student has the blocks too (it was trained to
# separate the classes), but several are fainter than the teacher's and its pattern off the diagonal
# differs in places. The SP student's matrix is visibly closer to the teacher's. The differences are
# easier to see directly, for four students at once (seed 0 each):

# %%
G_teacher = G(t_emb)
gap_labels = ["baseline", "KD", "RKD", "SP"]
plots.matrix_row([(G(embedding_of(students[k], x_sorted)) - G_teacher).abs() for k in gap_labels],
                 [f"{k} student" for k in gap_labels], boundaries=boundaries, class_labels=digits,
                 colorbar_label="|G_student - G_teacher|",
                 suptitle="Where each student's similarities differ from the teacher's (darker = closer)")
plt.show()


# %% [markdown]
# Darker means closer to the teacher. The baseline student's map is the brightest and the SP student's
# the darkest, as expected. The KD student, whose loss never looks at the embedding, already sits
# between the two.
#
# Then RKD's view: pairwise distances, each matrix divided by its mean distance (so that both share one
# colour scale). Dark blocks on the diagonal are classes packed tightly together.

# %%
def normalised_distances(embedding):
    d = torch.cdist(embedding, embedding)
    return d / d[~torch.eye(len(d), dtype=torch.bool)].mean()


plots.matrix_pair(normalised_distances(t_emb), normalised_distances(embedding_of(students["baseline"], x_sorted)),
                  titles=("teacher", "baseline student"), boundaries=boundaries, class_labels=digits, cmap="magma",
                  suptitle="Before: pairwise distances / mean distance, 50 test digits, five per class")
plt.show()
plots.matrix_pair(normalised_distances(t_emb), normalised_distances(embedding_of(students["RKD"], x_sorted)),
                  titles=("teacher", "RKD student"), boundaries=boundaries, class_labels=digits, cmap="magma",
                  suptitle="After: the RKD student's pairwise distances / mean distance")
plt.show()

# %% [markdown]
# The distances show the same structure from the other side; the bright bands are examples far from
# everything else. By eye, before and after are harder to tell apart here than with the similarities:
# the numbers below decide.
#
# Pictures of one batch and one seed suggest; numbers over the whole test set and every seed measure.
# For each student, the SP loss and the RKD distance loss between its embedding and the teacher's, on
# all 450 test digits at once (the angle loss would need $450^3$ triplets, so it is left out):

# %%
t_test_emb = embedding_of(teacher, x_test)
relation_gap = {}
for label in ["baseline", "KD", "RKD", "SP", "KD + RKD", "KD + SP"]:
    embs = [embedding_of(r["student"], x_test) for r in results[label]]
    relation_gap[label] = {
        "SP": np.array([float(losses.similarity_preserving_loss(e, t_test_emb)) for e in embs]),
        "RKD-D": np.array([float(losses.rkd_distance_loss(e, t_test_emb)) for e in embs]),
    }
print(f"distance to the teacher's relations, test set, {len(SEEDS)} seeds, mean ± sample std (lower = closer)")
print(f"{'student':<10} {'SP loss (x 1e-3)':>18} {'RKD-D loss':>16}")
for label, gap in relation_gap.items():
    print(f"{label:<10} {1e3 * gap['SP'].mean():10.2f} ± {1e3 * gap['SP'].std(ddof=1):.2f}"
          f" {gap['RKD-D'].mean():9.4f} ± {gap['RKD-D'].std(ddof=1):.4f}")

# %%
gap = relation_gap
# paired per seed: the baseline student's distance to the teacher's relations minus that of the student of the same seed
for loss in ["SP", "RKD-D"]:
    scale = 1e3 if loss == "SP" else 1.0
    for k in ["KD", "RKD", "SP"]:
        d = scale * (gap["baseline"][loss] - gap[k][loss])
        print(f"{loss:<5} baseline - {k:<4} per seed {' '.join(f'{x:+.4f}' for x in d)}")
# on every seed, the SP student's similarities and the RKD student's distances are closer to the
# teacher's than the baseline student's; so are the KD student's, whose loss never looks at the embedding
for k, loss in [("SP", "SP"), ("RKD", "RKD-D"), ("KD", "SP"), ("KD", "RKD-D")]:
    assert (gap[k][loss] < gap["baseline"][loss]).all(), (k, loss)

# %% [markdown]
# - Each relation loss does what it says, on every seed: the SP students' similarity matrices are the
#   closest to the teacher's (0.11 against 0.21 for the baseline), and the RKD students' distances are
#   about a third closer than the baseline's (0.0078 against 0.0116).
# - **KD, which only ever compares logits, closes a large part of both gaps on its own** (0.16 and
#   0.0084, closer than the baseline on every seed). A student that reproduces the teacher's soft targets, which say how much each digit looks
#   like each class, must arrange its embedding in a similar way. That is a likely reason why relation
#   terms add little on top of KD in a classification task like this one.
# - Distances and similarities are two views of one geometry: the SP students are as close as the RKD
#   students in RKD distance (0.0073 against 0.0078), while the RKD students are only as close as the KD
#   students in SP similarity (0.16).
#
# ## 8. What relations transfer, and when they do not help
#
# **What relations transfer that logits do not.** The logits describe each example on its own, in the
# teacher's ten classes. Relations describe the geometry of the teacher's embedding: which examples it
# puts close together, in which directions. They need no common output: teacher and student may have
# embeddings of any widths, no regressor, no labels, even different tasks. That is where RKD comes from:
# metric learning and image retrieval, where there are no fixed classes to distil and the embedding *is*
# the product. Relations also carry information within a class (which two 3s the teacher finds alike),
# which class probabilities blur.
#
# **When they do not help**, as measured above:
#
# - When the logits already carry the relations: in classification, KD alone closed a large part of the
#   relational gap, adding RKD to KD gained nothing, and KD + SP's +0.4 is within the noise of five seeds.
# - Without the logits, RKD alone was a little below KD, as in the published CIFAR-100 table where it fell
#   below the student trained alone.
# - Relations are computed inside a batch (64 examples here: about six per class), so they depend on the
#   batch size and composition; RKD's angles cost $b^3$ in time and memory.
# - The papers' weights are not ours: RKD's best scale and SP's best weight here were a tenth of the
#   papers'. In this regime the accuracy moved little across the grid, but that is a property of this
#   regime, not a rule.
#
# ## Recap
#
# - RKD distance: pairwise distances of each network, **each divided by its own mean** over the pairs
#   $i \ne j$, compared with the Huber loss (`F.smooth_l1_loss`) averaged over all $b^2$ entries of the
#   matrices, as the reference implementations do.
# - RKD angle: `A[i, j, k]` is the cosine of the angle **at the middle point** $t_j$, from unit vectors
#   (`F.normalize`, which also avoids 0/0 where two points coincide), compared with the Huber loss.
# - SP: $G = QQ^\top$ over the batch with **each row L2-normalised**; the loss is
#   $\|G_T - G_S\|_F^2 / b^2$.
# - All three compare structures, so teacher and student widths may differ.
# - Here, with weights chosen on validation: KD and SP beat labels alone on every seed, RKD
#   alone on four of five; KD + SP
#   had the best mean, SP alone was on par with KD, RKD alone a little below it and KD + RKD no better;
#   all within about one point, not ordered by five seeds. The
#   relation losses made the students' geometry measurably closer to the teacher's, and KD alone got a
#   large part of the way there.
#
# ## Questions
#
# 1. RKD divides the distances by their mean, SP normalises the rows of $G$. What would go wrong, for a
#    student whose embedding is 10 times smaller than the teacher's, if you skipped those steps?
# 2. The angle loss over all triplets does not change if you put the vertex at $t_i$ instead of $t_j$
#    (the checker still insists on $t_j$). Why not? What *would* change the loss?
# 3. Relation losses need no labels and no common classes: the teacher could have been trained on
#    another task. Where would you use that? And why do they need batches of more than one example,
#    while KD does not?

# %% [markdown] tags=["answer-key"]
# ### Answer key (solutions only)
#
# 1. Without the normalisation the losses compare absolute scales. A student embedding ten times smaller
#    than the teacher's has every distance ten times smaller, so the RKD distance loss is dominated by
#    one global mismatch of scale (every pair off by the same factor): its gradient mostly says "grow
#    the embedding" rather than "rearrange it", which the student can satisfy by inflating its norms
#    (changing the scale of its logits through the head, against the cross-entropy), and the structure
#    it should copy gets little of the loss. The embeddings' widths (128 against 32) give different
#    natural scales too. SP's $\tilde G = Q Q^\top$ scales with the square of the embedding, so the
#    teacher's entries would be a hundred times the student's, and the examples with large norms
#    would dominate their rows. Dividing by the mean distance makes RKD-D invariant to a global scale;
#    normalising the rows makes SP invariant to scale and to each example's norm. The angle loss needs
#    neither: cosines of unit vectors are already scale-free.
# 2. With the vertex at $t_i$ the entry $(i, j, k)$ would be the cosine of the angle at $t_i$ between
#    $t_j$ and $t_k$, which is the lesson's $A[j, i, k]$: the same numbers, stored at permuted indices.
#    Teacher and student tensors are permuted the same way and the loss is the mean of an elementwise
#    Huber loss over all $b^3$ entries, so it does not change. What would change it: different
#    conventions for the teacher and the student (entries no longer correspond), averaging over a
#    subset or a weighting of triplets that the permutation does not preserve (e.g. sampled triplets),
#    unnormalised difference vectors (dot products scale with the embedding), normalising over the
#    wrong dimension, comparing the angles themselves instead of their cosines, or one vector pointing
#    the wrong way for one network only (the same sign flip in both would again cancel).
# 3. Anywhere the teacher's outputs are not the student's: a student embedding for retrieval, face or
#    speaker verification, or metric learning (RKD's origin) from a large pretrained or self-supervised
#    encoder; a student for a new label set, or for unlabelled data, distilled from a model trained on
#    another task; two architectures or modalities whose outputs do not match. Batches: a relation
#    needs several examples. With a batch of one the distance matrix is a single 0 and the mean over the
#    pairs $i \ne j$ is undefined, an angle needs three distinct points, and SP's $G$ is $1 \times 1$ and
#    normalises to 1, so the loss is 0 with no gradient. The loss also depends on the batch's size and
#    composition (a few examples per class here), while KD's target is defined for each example alone.
#

# %%
print(f"This notebook ran in {time.perf_counter() - notebook_start:.0f} s.")
