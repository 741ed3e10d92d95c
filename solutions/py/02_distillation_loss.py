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
# # Lesson 02 — The distillation loss
#
# Lesson 01 softened a teacher's outputs with a temperature $T$. Now we turn them into a training
# signal: a loss that pulls the student's softened outputs towards the teacher's, mixed with the
# usual cross-entropy on the true labels (Hinton, Vinyals and Dean 2015).
#
# **Goals.** By the end of this lesson you can
#
# 1. implement the soft-target loss $T^2\,\mathrm{KL}(p_t^T \,\|\, p_s^T)$ with PyTorch's `F.kl_div`, the
#    right way round and with the right reduction;
# 2. implement the full distillation loss, where $\alpha$ weights the soft term;
# 3. show numerically why the $T^2$ factor is there: without it, the soft term's gradient shrinks like $1/T^2$;
# 4. check numerically that at high $T$ the soft term's gradient becomes that of **logit matching**
#    (Hinton et al. 2015, section 2.1), and under which condition;
# 5. see with two sliders how $\alpha$ and $T$ share the loss between the teacher and the labels.
#
# No training here: every number comes from fixed logits and runs in seconds.

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
import torch.nn.functional as F

from kdcourse.checks import check_distillation_loss, check_kd_loss
from kdcourse.distill import seed_everything
from kdcourse.losses import softmax_with_temperature
from kdcourse.widgets import loss_explorer, loss_parts

seed_everything(0)


# %% [markdown]
# ## 1. The soft-target loss
#
# Write $p_t^T = \mathrm{softmax}(z_t / T)$ for the teacher's softened probabilities and
# $p_s^T = \mathrm{softmax}(z_s / T)$ for the student's, at the **same** temperature. The student should
# make $p_s^T$ close to $p_t^T$; the usual measure is the Kullback–Leibler divergence, with the teacher
# as the target distribution:
#
# $$
# \mathrm{KL}(p_t^T \,\|\, p_s^T) = \sum_{i=1}^{C} p^T_{t,i} \left(\log p^T_{t,i} - \log p^T_{s,i}\right).
# $$
#
# Over a batch of $B$ examples we sum over the classes and **average over the examples**, then
# multiply by $T^2$ (section 3 shows why):
#
# $$
# L_{\mathrm{KD}} = \frac{T^2}{B} \sum_{b=1}^{B} \mathrm{KL}\left(p_t^T(x_b) \,\|\, p_s^T(x_b)\right).
# $$
#
# PyTorch's `F.kl_div(input, target)` has three traps:
#
# - `input` must be the student's **log**-probabilities, `F.log_softmax(z_s / T, dim=1)`; `target` is the
#   teacher's probabilities `F.softmax(z_t / T, dim=1)` (or log-probabilities with `log_target=True`).
#   So `F.kl_div(student, teacher)` computes $\mathrm{KL}(\text{teacher} \,\|\, \text{student})$: the
#   argument order is the reverse of the math notation.
# - `reduction="batchmean"` is the sum over classes divided by $B$, the formula above. The default
#   `reduction="mean"` also divides by the number of classes $C$.
# - The $T^2$ factor is yours to add.
#
# **Exercise 1.** Implement `kd_loss(student_logits, teacher_logits, T)`; both logits have shape `(B, C)`.

# %%
def kd_loss(student_logits, teacher_logits, T):
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)), summed over classes, averaged over the batch."""
    ### BEGIN SOLUTION implement kd_loss with F.kl_div (log-probabilities of the student, probabilities of the teacher)
    log_p_student = F.log_softmax(student_logits / T, dim=1)
    p_teacher = F.softmax(teacher_logits / T, dim=1)
    return F.kl_div(log_p_student, p_teacher, reduction="batchmean") * T**2
    ### END SOLUTION


# %%
check_kd_loss(kd_loss)


# %% [markdown]
# ## 2. Mixing soft and hard targets
#
# The student also sees the true labels $y$, through the ordinary cross-entropy at $T = 1$. The two are
# mixed with a weight $\alpha \in [0, 1]$. **In this course $\alpha$ weights the soft (teacher) term**:
#
# $$
# L = \alpha \, T^2 \, \mathrm{KL}(p_t^T \,\|\, p_s^T) + (1 - \alpha)\, \mathrm{CE}\left(y, \mathrm{softmax}(z_s)\right).
# $$
#
# $\alpha = 0$ is plain training on labels; $\alpha = 1$ learns from the teacher alone. (Some code bases
# use the opposite convention, with $\alpha$ on the hard term; lesson 07 shows what mixing up the two does.)
#
# **Exercise 2.** Implement `distillation_loss(student_logits, teacher_logits, targets, T, alpha)`, where
# `targets` holds the class indices, shape `(B,)`. You may call your `kd_loss`.

# %%
def distillation_loss(student_logits, teacher_logits, targets, T, alpha):
    """alpha * kd_loss (soft, at temperature T) + (1 - alpha) * cross-entropy (hard, at T = 1)."""
    ### BEGIN SOLUTION implement the alpha mix: alpha on the soft term, (1 - alpha) on the cross-entropy
    soft = kd_loss(student_logits, teacher_logits, T)
    hard = F.cross_entropy(student_logits, targets)
    return alpha * soft + (1 - alpha) * hard
    ### END SOLUTION


# %%
check_distillation_loss(distillation_loss)

# %% [markdown]
# Your two functions on fixed logits: a batch of three examples over four classes. The teacher is
# right on the first two examples and wrong on the third (it prefers class 2, the label is 3).

# %%
# NBVAL_CHECK_OUTPUT
student = torch.tensor([[2.0, 0.5, -1.0, 0.0],
                        [0.0, 1.0, 0.5, -0.5],
                        [-1.0, 0.0, 1.5, 1.0]])
teacher = torch.tensor([[5.0, 2.0, -2.0, 0.0],
                        [-1.0, 4.0, 2.5, -1.0],
                        [-2.0, 0.0, 3.0, 2.5]])
labels = torch.tensor([0, 1, 3])

print("kd_loss (soft term, T^2 * KL):")
for T in [1, 2, 4, 8]:
    print(f"  T = {T}: {kd_loss(student, teacher, T):.4f}")
print("distillation_loss at T = 4:")
for alpha in [0.0, 0.5, 0.9, 1.0]:
    print(f"  alpha = {alpha}: {distillation_loss(student, teacher, labels, 4, alpha):.4f}")
print(f"cross-entropy alone: {F.cross_entropy(student, labels):.4f}")

# %% [markdown]
# At $\alpha = 0$ the loss is the cross-entropy alone, at $\alpha = 1$ it is `kd_loss` at $T = 4$, and
# in between it is the weighted sum of the two (compare the rows above). Note that the soft term
# stays of the same order as $T$ grows, thanks to the $T^2$: the next section shows why that matters.
#
# ## 3. Why multiply by $T^2$?
#
# Differentiate the KL for one example with respect to the student's logits (this is eq. 2 of Hinton et
# al., where the cross-entropy with soft targets has the same gradient as the KL):
#
# $$
# \frac{\partial\, \mathrm{KL}(p_t^T \,\|\, p_s^T)}{\partial z_{s,i}} = \frac{1}{T}\left(p^T_{s,i} - p^T_{t,i}\right).
# $$
#
# Two things shrink as $T$ grows: the explicit $1/T$, and the difference $p_s^T - p_t^T$ itself, since
# both distributions approach uniform (section 4 shows it shrinks like $1/T$). Together: the gradient
# of the KL shrinks like $1/T^2$. Without a correction, raising $T$ would silently turn down the
# teacher's voice against the hard-label term, whose gradient does not depend on $T$. Multiplying the
# soft term by $T^2$ cancels this, so that changing $T$ changes *what* the student learns from the
# teacher, not *how loudly*.
#
# Let us measure it: the norm of the gradient of the soft term with respect to the student's logits,
# for a fixed batch of 8 examples over 10 classes, with and without the $T^2$ factor.

# %%
# NBVAL_CHECK_OUTPUT
g = torch.Generator().manual_seed(0)
zs = torch.randn(8, 10, generator=g, dtype=torch.float64) * 2   # student logits
zt = torch.randn(8, 10, generator=g, dtype=torch.float64) * 3   # teacher logits


def soft_gradient_norm(T, with_T2):
    s = zs.clone().requires_grad_(True)
    loss = kd_loss(s, zt, T) if with_T2 else kd_loss(s, zt, T) / T**2  # kd_loss / T^2 = the plain KL
    (grad,) = torch.autograd.grad(loss, s)
    return grad.norm().item()


temperatures = [1, 2, 4, 8, 16, 32, 64]
without_T2 = np.array([soft_gradient_norm(T, False) for T in temperatures])
with_T2 = np.array([soft_gradient_norm(T, True) for T in temperatures])
print(f"{'T':>4} {'grad norm, KL alone':>20} {'grad norm, T^2 * KL':>20} {'ratio to T = 1 (KL alone)':>26}")
for T, a, b in zip(temperatures, without_T2, with_T2):
    print(f"{T:>4} {a:>20.4g} {b:>20.4g} {a / without_T2[0]:>26.4g}")

# %%
large = np.array(temperatures) >= 4
slope_without = np.polyfit(np.log(temperatures)[large], np.log(without_T2[large]), 1)[0]
slope_with = np.polyfit(np.log(temperatures)[large], np.log(with_T2[large]), 1)[0]
print(f"log-log slope for T >= 4: KL alone {slope_without:.3f}, T^2 * KL {slope_with:.3f}")

fig, ax = plt.subplots(figsize=(7, 4.2))
ax.loglog(temperatures, without_T2, "o-", label=f"KL alone (slope {slope_without:.2f})")
ax.loglog(temperatures, with_T2, "s-", label=f"$T^2$ · KL (slope {slope_with:.2f})")
ax.loglog(temperatures, without_T2[0] * np.array(temperatures, float) ** -2.0, "k:", label="$1/T^2$ reference")
ax.set_xlabel("temperature T")
ax.set_ylabel("gradient norm w.r.t. student logits")
ax.set_title("The soft term's gradient shrinks like $1/T^2$ unless rescaled by $T^2$")
ax.legend()
ax.grid(alpha=0.3, which="both")
plt.show()

# %%
assert abs(slope_without + 2) < 0.1, "without T^2 the gradient should shrink like 1/T^2"
assert abs(slope_with) < 0.1, "with T^2 the gradient should not depend on T at large T"

# %% [markdown]
# The two columns differ by exactly $T^2$ by construction; what the measurement shows is how each
# behaves. Without $T^2$ the gradient norm falls from 0.3189 at $T = 1$ to 0.02482 at $T = 4$ and
# 9.058e-05 at $T = 64$, and for $T \ge 4$ the log-log slope is $-2.02$: the $1/T^2$ law (below
# $T = 4$ the law is only approximate; the table's ratio column shows it). With $T^2$ the norm stays
# between 0.3189 and 0.3971 at every temperature (slope $-0.02$).
#
# In practice: with $\alpha = 0.9$ and $T = 8$, forgetting the $T^2$ divides the teacher's gradient by 64,
# so the 10 % hard-label term, whose gradient does not depend on $T$, would dominate training. Lesson 07
# measures what that does to a student's accuracy.
#
# ## 4. At high temperature, distillation becomes logit matching
#
# Hinton et al. (2015, section 2.1) go one step further. For large $T$, $e^{x/T} \approx 1 + x/T$, so with
# $N$ classes (here $N = C = 10$)
#
# $$
# \frac{\partial\, \mathrm{KL}}{\partial z_i} = \frac{1}{T}\left(q_i - p_i\right)
# \approx \frac{1}{T}\left(\frac{1 + z_i/T}{N + \sum_j z_j/T} - \frac{1 + v_i/T}{N + \sum_j v_j/T}\right),
# $$
#
# where $z$ are the student's logits, $v$ the teacher's, $q$ and $p$ their softened probabilities. If
# both sets of logits have **zero mean** ($\sum_j z_j = \sum_j v_j = 0$) this simplifies to
#
# $$
# \frac{\partial\, \mathrm{KL}}{\partial z_i} \approx \frac{1}{N T^2}\left(z_i - v_i\right),
# $$
#
# the gradient of $\frac{1}{2 N T^2}\sum_i (z_i - v_i)^2$: at high temperature, distillation is the same
# as matching the logits with a squared error (the method of Caruana and collaborators that Hinton et al. discuss), up to the factor
# $1/(N T^2)$, which the $T^2$ of the previous section cancels.
#
# Precisely which $N$ and which sum: the formula is for **one example's** KL, summed over its $N$
# classes (what `F.kl_div(..., reduction="sum")` computes on one row). With `reduction="batchmean"`
# over a batch of $B$ examples each example's gradient is further divided by $B$; with
# `reduction="mean"` by $B \cdot N$.
#
# We check it on one example with $N = 10$ classes, in double precision: the relative error
# $\lVert g - \hat g \rVert / \lVert \hat g \rVert$ between the exact gradient $g$ (autograd) and the
# approximation $\hat g = (z - v) / (N T^2)$. We do it twice: with zero-mean logits, and with the
# teacher's logits shifted by $+3$ (the softmax ignores the shift, the approximation does not).

# %%
# NBVAL_CHECK_OUTPUT
N = 10
z = torch.tensor([2.0, -1.0, 0.5, 3.0, -2.0, 0.0, 1.0, -0.5, -1.5, -1.5], dtype=torch.float64)
v = torch.tensor([5.0, -2.0, 1.0, 0.0, -3.0, 1.5, -1.0, 0.5, -1.0, -1.0], dtype=torch.float64)
z, v = z - z.mean(), v - v.mean()                    # zero-mean logits, as in the derivation


def relative_error(z, v, T):
    zz = z.clone().requires_grad_(True)
    kl = F.kl_div(F.log_softmax(zz / T, dim=0), F.softmax(v / T, dim=0), reduction="sum")  # one example
    (exact,) = torch.autograd.grad(kl, zz)
    approx = (z - v) / (N * T**2)
    return ((exact - approx).norm() / approx.norm()).item()


T_values = [1, 2, 5, 10, 20, 50, 100, 200]
err_centred = [relative_error(z, v, T) for T in T_values]
err_shifted = [relative_error(z, v + 3.0, T) for T in T_values]
print(f"{'T':>5} {'zero-mean logits':>18} {'teacher logits + 3':>20}")
for T, a, b in zip(T_values, err_centred, err_shifted):
    print(f"{T:>5} {a:>18.4f} {b:>20.4f}")

# %%
fig, ax = plt.subplots(figsize=(7, 4.2))
ax.loglog(T_values, err_centred, "o-", label="zero-mean logits")
ax.loglog(T_values, err_shifted, "s-", label="teacher logits shifted by +3")
ax.set_xlabel("temperature T")
ax.set_ylabel("relative error of (z - v) / (N T²)")
ax.set_title("At high T the KD gradient approaches logit matching")
ax.legend()
ax.grid(alpha=0.3, which="both")
plt.show()

slope_err = np.polyfit(np.log(T_values[3:]), np.log(err_centred[3:]), 1)[0]
print(f"log-log slope of the relative error (zero-mean, T >= 10): {slope_err:.2f}")

# %%
assert all(a > b for a, b in zip(err_centred[1:], err_centred[2:])), "from T = 2 on, the error should shrink as T grows"
assert err_centred[-1] < 0.02, "at T = 200 the approximation should be within 2 %"
assert min(err_shifted) > 0.5, "without zero-mean logits the approximation should not converge"

# %% [markdown]
# With zero-mean logits the relative error falls from 0.4852 at $T = 5$ to 0.0108 at $T = 200$,
# like $1/T$ (fitted slope $-1.02$): the next term of the expansion is one power of $1/T$ smaller. At
# $T = 1$ and $T = 2$ the error is above 1, so the approximation means nothing at the temperatures of
# lesson 01's sharp teacher. With the teacher's logits shifted by $+3$ the exact gradient is the same as
# before (the softmax ignores a shift) but the approximation $(z - v)/(N T^2)$ is not, and its error
# never falls: 1.02 at $T = 1$ and $T = 2$, 0.90 at $T = 5$, 0.88 at $T = 10$, and from $T = 50$ on
# it settles at 0.87, however high $T$ goes. That is why Hinton et al. require the logits to be zero-meaned
# for each example: at high $T$, distillation is squared-error matching of **centred** logits.
#
# ## 5. Explore: how $\alpha$ and $T$ share the loss
#
# One example: the teacher's logits for an image of a 3 (from lesson 01's table), and a student
# that is unsure between 3, 5 and 8. Left: the two softened distributions the soft term compares.
# Right: the soft term $\alpha T^2 \mathrm{KL}$, the hard term $(1-\alpha)\,\mathrm{CE}$ and their total.
# Move $\alpha$ to shift weight between the teacher and the label; move $T$ to soften both distributions.

# %%
teacher_3 = torch.tensor([-2.0, -1.0, 0.5, 8.0, -1.5, 4.0, -2.0, 1.0, 3.0, 2.0])
student_3 = torch.tensor([0.0, -0.5, 0.5, 2.0, 0.0, 1.8, -0.5, 0.5, 1.5, 0.5])
loss_explorer(student_3, teacher_3, target=3, T=4.0, alpha=0.9)

# %% [markdown]
# The same example without sliders: the unweighted soft term $T^2\,\mathrm{KL}$, the plain KL and the
# cross-entropy as $T$ varies (the cross-entropy uses $T = 1$, so it does not change).

# %%
T_curve = np.geomspace(1, 30, 40)
curve = [loss_parts(student_3, teacher_3, 3, T, 1.0) for T in T_curve]
kd_values = np.array([p["kd"] for p in curve])
ce_value = curve[0]["ce"]

fig, ax = plt.subplots(figsize=(7, 4.2))
ax.plot(T_curve, kd_values, color="tab:green", label="soft term $T^2$·KL")
ax.plot(T_curve, kd_values / T_curve**2, color="tab:green", ls="--", label="KL alone")
ax.axhline(ce_value, color="tab:orange", label="cross-entropy (T = 1)")
ax.set_xscale("log")
ax.set_xlabel("temperature T (log scale)")
ax.set_ylabel("loss for this example")
ax.set_title("One example: $T^2$·KL stays comparable to the CE, KL alone fades")
ax.legend()
ax.grid(alpha=0.3, which="both")
plt.show()

for T in [1, 4, 10]:
    p = loss_parts(student_3, teacher_3, 3, T, 0.5)
    print(f"T = {T:>2}: T^2 * KL = {p['kd']:.3f}, KL = {p['kd'] / T**2:.4f}, CE = {p['ce']:.3f}")

# %% [markdown]
# For this example the soft term $T^2\,\mathrm{KL}$ is 1.114 at $T = 1$ and 3.643 at $T = 4$, against a
# cross-entropy of 1.261 (printout above), while the KL alone at $T = 10$ is only 0.0309. So with
# $\alpha = 0.9$ and $T = 4$ the teacher's term dominates the total (the explorer starts there: 3.278
# against 0.126). Loss values are not gradients, but section 3 showed that with the $T^2$ the soft
# term's gradient keeps the same scale across temperatures, so this balance is what $\alpha$ controls.
#
# ## Recap
#
# - The soft-target loss is $T^2\,\mathrm{KL}(p_t^T \| p_s^T)$: `F.kl_div(F.log_softmax(z_s / T), F.softmax(z_t / T),
#   reduction="batchmean") * T**2`. Teacher as the target, log-probabilities for the student, batchmean.
# - The full loss mixes it with the cross-entropy at $T = 1$: $\alpha$ on the soft term, $1 - \alpha$ on the hard one.
# - Without $T^2$ the soft term's gradient shrinks like $1/T^2$ (measured slope about $-2$); with it the gradient
#   keeps its scale, so $T$ and $\alpha$ can be tuned separately.
# - At high $T$, with zero-mean logits, the gradient tends to $(z - v)/(N T^2)$ for one example's KL summed over
#   its $N$ classes: distillation becomes logit matching; the relative error falls like $1/T$.
#
# ## Questions
#
# 1. If you forgot the $T^2$ and trained with $T = 8$ and $\alpha = 0.9$, roughly how much weight would the teacher
#    really get compared with the labels? Which value of $\alpha$ would give the same balance with $T^2$ included?
# 2. The logit-matching limit needs zero-mean logits. The softmax does not care about a shift of all logits; why
#    does the approximation $(z - v)/(N T^2)$ care? What does that say about matching logits with a plain squared error?
# 3. `F.kl_div(log_softmax(teacher), softmax(student))` also returns a non-negative number that is 0 when the
#    two agree. Why is it still the wrong loss for distillation? (Hint: where does each direction of the KL
#    put its penalty when the student gives almost no probability to a class the teacher finds plausible?)

# %% [markdown] tags=["answer-key"]
# ### Answer key (solutions only)
#
# 1. Without $T^2$ the soft term's gradient is about $1/T^2 = 1/64$ of what it should be at $T = 8$
#    (section 3's ratio column gives 0.01868 at $T = 8$: the $1/T^2$ law is close there). The teacher
#    then gets an effective weight of about $\alpha / T^2$ against $1 - \alpha$ for the labels: with
#    $\alpha = 0.9$, a ratio of $9/64$, about a seventh of the labels' weight instead of nine times
#    it. The same balance with $T^2$ included needs $\alpha' / (1 - \alpha') = 9/64$, i.e.
#    $\alpha' = 9/73$, a little over a tenth: the buggy run is in effect a run with most of the weight
#    on the labels. (Under Adam the overall scale is normalised away but this balance remains; lesson
#    07 measures what it costs.)
# 2. The exact gradient $(q - p)/T$ depends only on the two softmaxes, which ignore a shift, and its
#    components always sum to zero. The approximation $(z - v)/(N T^2)$ is linear in the raw logits: a
#    shift of $v$ by $c$ adds the same constant $-c/(N T^2)$ to every component, a direction the exact
#    gradient never has. So for shifted logits the error never falls (it settles at 0.87 however high
#    $T$ goes), and the correct limit is $\big((z - \bar z) - (v - \bar v)\big)/(N T^2)$ with per-example means. For
#    a plain squared error on raw logits this means it penalises a per-example offset that no
#    prediction depends on, and the student spends effort matching it: centre both logit vectors per
#    example first (or use the KL at a high $T$, which does so implicitly). It also weighs every logit
#    equally, the hopeless classes' very negative ones included, which the KL at a moderate $T$ hardly
#    hears.
# 3. `F.kl_div(input, target)` computes $\mathrm{KL}(\text{target} \,\|\, \text{input})$, so this call is
#    $\mathrm{KL}(p_s \,\|\, p_t) = \sum_i p_{s,i} \log(p_{s,i} / p_{t,i})$, the reverse KL: an average
#    under the **student**. Where the student gives a class almost no probability, the term
#    $p_{s,i} \log(p_{s,i}/p_{t,i})$ goes to 0 however plausible the teacher finds that class: the
#    student may ignore the teacher's secondary classes (mode-seeking), which is exactly the dark
#    knowledge distillation is for. The forward KL is an average under the **teacher**:
#    $p_{t,i} \log(p_{t,i} / p_{s,i})$ grows without bound as $p_{s,i} \to 0$ where $p_{t,i}$ is
#    appreciable, so the student must cover everything the teacher finds plausible (mass-covering),
#    and its gradient is Hinton's $(q - p)/T$, the soft-target cross-entropy's. Lessons 07 and 09
#    measure the reversed loss.
#
