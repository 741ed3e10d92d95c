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
# # Lesson 09 — Distilling a language model
#
# Most distillation done today is of **language models**: a large model's next-token
# distributions train a small one. Everything this course taught about logits carries over — the
# KL divergence, its direction, the temperature, $T^2$ — with two changes: there is a distribution
# at **every position** of every sequence, and the student can **write text** of its own, which
# gives new ways to distil (on its own text) and new ways to judge it (does the teacher find the
# student's text plausible?).
#
# We work with characters, so that everything trains on a laptop CPU in minutes: a teacher
# transformer of 0.36 M parameters and students 17 times smaller, on the text of Python's own
# help pages.
#
# **Goals.** By the end of this lesson you can
#
# 1. write the token-level distillation loss with a padding mask, averaged **per token** (the
#    first exercise), and recognise the classic bugs by their numbers;
# 2. measure what token-level KD buys over next-character cross-entropy on held-out text;
# 3. explain forward against reverse KL — mass-covering against mode-seeking — and see it in the
#    student's own text (the second exercise writes the reverse KL);
# 4. compare sequence-level KD and on-policy distillation with token-level KD, honestly;
# 5. distil from a **top-k cache** of the teacher's outputs and choose `k` from a storage/quality
#    table (the third exercise renormalises the cache);
# 6. judge a student by its **fidelity** to the teacher and its calibration, not only its loss.

# %%
# Set-up: on Google Colab, install the course package first (does nothing elsewhere).
import sys
if "google.colab" in sys.modules:
    import subprocess
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "kdcourse @ git+https://github.com/kdcourse/kdcourse"], check=True)

# %%
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from kdcourse import lm
from kdcourse.calibration import reliability_bins, expected_calibration_error
from kdcourse.checks import check_masked_token_kd, check_renormalize_top_k, check_reverse_kl
from kdcourse.config import profile
from kdcourse.losses import token_kd_loss, top_k_logits
from kdcourse.models import count_parameters
from kdcourse.plots import reliability_diagram
from kdcourse.teachers import lm_teacher_info, lm_teacher_text, load_lm_teacher
from kdcourse.text import UNKNOWN, VOCAB, decode, load_text_data
from kdcourse.widgets import sampling_browser

torch.set_num_threads(1)  # small networks: one thread is nearly as fast, and the numbers repeat on any core count
SEEDS = (0, 1, 2)
notebook_start = time.perf_counter()

# %% [markdown]
# ## 1. The text
#
# The corpus is the text that `help("if")`, `help("with")` and the other keyword and topic pages
# of Python print: the module `pydoc_data.topics`, which ships with every Python, so nothing is
# downloaded. Tokens are **characters**: the newline, the 95 printable ASCII characters, and one
# symbol `¤` for anything else (a few typographic quotes and dashes). The text is cut into blocks
# of 2,000 characters; of every ten blocks the ninth is validation and the tenth test, so every
# part of the corpus appears in every split.
#
# The exact text changes a little between Python versions; the numbers stored in this notebook
# come from the version printed below. On another version they move slightly.

# %%
data = load_text_data()
print(data)
print(f"corpus SHA-256 {data.sha256[:16]}..., vocabulary of {len(VOCAB)} characters")
print("\nthe first 400 characters of the training split:\n")
print(decode(data.train[:400]))

# %% [markdown]
# ## 2. Teacher and students
#
# A character model reads up to 64 characters and predicts, **at every position**, a distribution
# over the next character: its output is a `(batch, length, vocab)` tensor of logits, and position
# `i` predicts character `i + 1`. Ours is a small causal transformer (`kdcourse.models.CharTransformer`:
# token and position embeddings, self-attention that cannot look ahead, an MLP). The teacher was
# trained by `scripts/train_lm_teacher.py` on a CPU; its sidecar records the recipe, and loading
# checks the checkpoint's SHA-256.
#
# We measure models in **bits per character** (bpc) on held-out text: the cross-entropy of the
# next character in base 2. A uniform guess over 97 characters costs $\log_2 97 = 6.6$ bits;
# lower is better.
#
# Running the teacher once over the training windows gives the **cache** every token-level method
# reads: its logits at every position.

# %%
teacher = load_lm_teacher()
info = lm_teacher_info()
start = time.perf_counter()
setting = lm.char_setting(data, teacher, teacher_text=lm_teacher_text())
cache_seconds = time.perf_counter() - start
student = lm.char_student(setting, seed=0)
print(f"teacher: {count_parameters(teacher):,} parameters, {info['recipe']['steps']:,} training steps "
      f"({info['train_seconds'] / 60:.0f} min on a CPU); test {lm.bits_per_char(teacher, data.test):.3f} bpc")
print(f"student: {count_parameters(student):,} parameters ({count_parameters(teacher) / count_parameters(student):.0f}x fewer), "
      f"width {student.width}, {student.depth} attention block")
print(f"the cache: teacher logits on {setting.teacher_train.shape[0]:,} windows x {setting.context} positions "
      f"x {setting.teacher_train.shape[2]} characters = {setting.teacher_train.numel() * 4 / 1e6:.0f} MB (float32), "
      f"computed in {cache_seconds:.0f} s")


# %% [markdown]
# ## 3. The loss, token by token
#
# At every position the teacher gives a distribution $p$ and the student $q$ (both at temperature
# $T$). Token-level KD applies lesson 02's loss at every position:
#
# $$L = \frac{T^2}{N_{\text{real}}} \sum_{(b, i)\ \text{real}} \mathrm{KL}\big(p_{b,i} \,\|\, q_{b,i}\big),
# \qquad \mathrm{KL}(p \,\|\, q) = \sum_v p_v (\log p_v - \log q_v)$$
#
# Two details decide whether it is right:
#
# - **the mask.** Real batches hold sequences of different lengths, padded to one length. Padded
#   positions are not text: they must add nothing to the loss and receive no gradient.
# - **per token.** The sum runs over every real token of the whole batch and is divided by
#   $N_{\text{real}}$, their number. Every real token weighs the same, whether its sequence is long
#   or short.
#
# ### Exercise 1: the masked token-level KD loss
#
# Write `masked_token_kd(student_logits, teacher_logits, mask, T)`: logits `(batch, length, vocab)`,
# `mask` a boolean `(batch, length)` tensor, true for real tokens. Return the loss above, $T^2$
# included, as a scalar tensor (not `.item()`: the gradient must flow back to the student).
# `F.log_softmax(..., dim=-1)` gives log-probabilities over the vocabulary. The experiments below
# use the package's version, `kdcourse.losses.token_kd_loss`, so the lesson's numbers are the same
# however you write yours.

# %%
def masked_token_kd(student_logits, teacher_logits, mask, T):
    ### BEGIN SOLUTION compute the per-token KL, mask it, and average over the real tokens
    log_q = F.log_softmax(student_logits / T, dim=-1)
    log_p = F.log_softmax(teacher_logits / T, dim=-1)
    per_token = (log_p.exp() * (log_p - log_q)).sum(dim=-1)  # (batch, length)
    mask = mask.float()
    return (per_token * mask).sum() / mask.sum() * T**2
    ### END SOLUTION


# %%
check_masked_token_kd(masked_token_kd)

# %% [markdown]
# ## 4. Token-level KD against labels only
#
# Two students of the same size, on the same seeds and the same batches (the next cell prints the
# recipe):
#
# - **labels only**: next-character cross-entropy on the real text, the usual language-model loss;
# - **token-level KD**: forward KL to the teacher's cached distribution at every position
#   ($T = 1$, no label term).
#
# The numbers are bits per character on the **test** text, which neither model saw, and the
# **agreement**: the share of test characters where the student's most likely next character is the
# teacher's. This is the quick profile (the default); `KDCOURSE_PROFILE=full` trains five times longer.

# %%
recipes = lm.PROFILES[profile()]
r = recipes["scratch"]
passes = r.steps * r.batch_size * setting.context / len(data.train)
print(f"profile {profile()!r}: students train {r.steps} steps of {r.batch_size} windows of {setting.context} "
      f"characters from scratch ({passes:.1f} passes over the training text); continuations "
      f"{recipes['finetune'].steps} steps")
scratch = lm.char_study(setting, {"labels only": {"method": "labels"}, "token KD": {"method": "forward"}},
                        seeds=SEEDS, recipe=recipes["scratch"])
print(scratch.table(metrics=("bpc", "agreement")))
print(f"\n({sum(scratch.seconds.values()):.0f} s for {2 * len(SEEDS)} students)")

# %%
gain = scratch.paired("token KD", "labels only")
print("token KD - labels only, bits per character, per seed:", ", ".join(f"{d:+.3f}" for d in gain["runs"]))
print(f"mean {gain['mean']:+.3f} ± {gain['std']:.3f} (sample std), {abs(gain['mean']) / gain['std']:.1f} std from zero")
assert max(gain["runs"]) < -0.04, "token-level KD lowers held-out bits per character by more than 0.04 on every seed"
print("asserted: token-level KD is better (lower bpc) than labels only by more than 0.04 bits on every seed")

# %% [markdown]
# Token-level KD lowers the held-out cost from 2.744 ± 0.012 to **2.636 ± 0.029 bits per
# character**: −0.135, −0.123 and −0.067 on the three seeds (−0.109 ± 0.036, three standard
# deviations from zero). At every position the teacher tells the student not only which character
# came next but how likely every other one was — lesson 01's dark knowledge, 64 times per window.
# The KD students also pick the teacher's top choice more often (57.4 % of test characters
# against 54.5 %). They remain far from the teacher itself (1.611 bpc).

# %% [markdown]
# ## 5. The classic bugs, measured
#
# Here is a padded batch: eight test windows cut to lengths 64, 50, 40, 30, 20, 12, 8 and 4 and
# padded with `¤` to 64. We compute the loss of the KD student (seed 0) against the teacher in
# the right way and with each classic bug, and look at the gradient that reaches the padded
# positions.

# %%
lengths = torch.tensor([64, 50, 40, 30, 20, 12, 8, 4])
mask = torch.arange(setting.context)[None, :] < lengths[:, None]
tokens = setting.test_inputs[:8].clone()
tokens[~mask] = UNKNOWN  # the padding
kd_student = scratch.students["token KD"][0]
with torch.no_grad():
    teacher_logits = teacher(tokens)


def loss_and_padding_gradient(loss_fn):
    logits = kd_student(tokens).detach().requires_grad_(True)
    loss = loss_fn(logits)
    loss.backward()
    return float(loss.detach()), float(logits.grad[~mask].norm())


def per_token_kl(logits):
    log_q, log_p = F.log_softmax(logits, -1), F.log_softmax(teacher_logits, -1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


bugs = {
    "right: per token over real tokens": lambda z: token_kd_loss(z, teacher_logits, mask),
    "no mask: mean over every position": lambda z: per_token_kl(z).mean(),
    "per sequence, then over sequences": lambda z: ((per_token_kl(z) * mask).sum(1) / mask.sum(1)).mean(),
    "reversed arguments: KL(student || teacher)": lambda z: token_kd_loss(z, teacher_logits, mask, divergence="reverse"),
}
measured = {name: loss_and_padding_gradient(fn) for name, fn in bugs.items()}
print(f"{'':<44}{'loss':>8}{'gradient on padding':>22}")
for name, (value, padding_grad) in measured.items():
    print(f"{name:<44}{value:>8.3f}{padding_grad:>22.4f}")
print(f"\n{int(mask.sum())} real tokens of {mask.numel()}; under per-sequence averaging one token of the "
      f"4-character sequence weighs {int(lengths.max()) // int(lengths.min())}x one of the 64-character sequence")

# %%
print("gradient norm reaching the student's logits, on the real tokens:")
norms = {}
for T in (1.0, 2.0, 4.0):
    for scaled in (True, False):
        logits = kd_student(tokens).detach().requires_grad_(True)
        loss = token_kd_loss(logits, teacher_logits, mask, T=T)
        (loss if scaled else loss / T**2).backward()
        norms[T, scaled] = float(logits.grad.norm())
    print(f"  T = {T:g}:  with T^2 {norms[T, True]:.4f}   without T^2 {norms[T, False]:.4f}")
right, no_mask = measured["right: per token over real tokens"], measured["no mask: mean over every position"]
assert right[1] == 0 and no_mask[1] > 0, "only the masked loss keeps gradients out of the padding"
assert norms[4.0, False] < norms[1.0, False] / 4, "without T^2 the soft gradient shrinks by more than 4x from T=1 to T=4"
assert norms[1.0, True] / 2.5 < norms[4.0, True] < norms[1.0, True] * 2.5, "with T^2 it stays within 2.5x"
print("asserted: padding gets no gradient only with the mask; without T^2 the gradient falls more than 4x from "
      "T = 1 to T = 4, with T^2 it stays within a factor 2.5")

# %% [markdown]
# Forgetting the mask changes the number (1.603 instead of 1.050: the 284 padded positions add
# a KL computed on `¤` characters that are not text) and sends gradient into the padding (0.0251
# against exactly 0). Averaging per sequence gives 0.881 from the same tokens weighted differently:
# a token of the 4-character sequence counts 16 times as much as one of the 64-character sequence,
# so short sequences dominate. Reversing the KL's arguments gives a different loss altogether
# (2.426), the reverse KL of section 6. Without $T^2$ the gradient shrinks from 0.0378 at $T = 1$
# to 0.0028 at $T = 4$ (13.5 times smaller), while with $T^2$ it stays between 0.0378 and 0.0582:
# the reason lesson 02 multiplies by $T^2$. None of these bugs raises an error; the numbers are the
# only sign.

# %% [markdown]
# ## 6. Forward or reverse KL
#
# The forward KL, $\mathrm{KL}(p_{\text{teacher}} \,\|\, q_{\text{student}})$, is an average
# under the **teacher**: wherever the teacher puts probability, a student that puts little there
# pays a lot. It is **mass-covering**: the student spreads out to cover every continuation the
# teacher considers. The reverse KL, $\mathrm{KL}(q \,\|\, p)$ (MiniLLM, Gu et al. 2024), averages
# under the **student**: it pays for putting mass where the teacher puts little, and pays nothing
# for ignoring what the teacher likes. It is **mode-seeking**: the student may concentrate on a
# few continuations the teacher finds likely.
#
# First in one picture. The teacher below has two bumps; the student can only make **one** bump
# (a "bell" of any position and width). The best bell under each divergence:

# %%
index = torch.arange(40.0)
two_bumps = torch.exp(-(index - 10) ** 2 / 8) + 0.7 * torch.exp(-(index - 28) ** 2 / 8)
two_bumps /= two_bumps.sum()
one_bump = torch.exp(-(index - 18) ** 2 / 18)
one_bump /= one_bump.sum()
fig, axes = plt.subplots(1, 2, figsize=(12, 3.4), sharey=True)
for ax, target, title in [(axes[0], two_bumps, "a teacher the student cannot represent"),
                          (axes[1], one_bump, "a teacher the student can represent")]:
    ax.bar(index, target, color="lightgray", label="teacher")
    for divergence, color in [("forward", "tab:blue"), ("reverse", "tab:red")]:
        bell = lm.fit_bell(target, divergence)
        ax.plot(index, bell, color=color, lw=2, label=f"best bell under {divergence} KL")
    ax.set_title(title)
    ax.set_xlabel("token")
    ax.legend(fontsize=8)
axes[0].set_ylabel("probability")
plt.show()
gap = float((lm.fit_bell(one_bump, "forward") - lm.fit_bell(one_bump, "reverse")).abs().max())
print(f"one-bump teacher: largest difference between the two fits {gap:.4f}")


# %% [markdown]
# On the left, forward KL stretches one wide bell over both bumps (and puts mass in the valley
# between them, where the teacher has almost none); reverse KL sits on the larger bump and ignores
# the other. On the right the student *can* match the teacher, and both divergences find the same
# answer: with enough capacity the direction stops mattering, because both are zero only when
# $q = p$. A small student is in the left picture.
#
# ### Exercise 2: the reverse KL
#
# Write `reverse_kl(student_logits, teacher_logits, mask)` at $T = 1$: the per-token
# $\sum_v q_v (\log q_v - \log p_v)$, averaged over the real tokens as in exercise 1.

# %%
def reverse_kl(student_logits, teacher_logits, mask):
    ### BEGIN SOLUTION the student's probabilities weight the log-ratio
    log_q = F.log_softmax(student_logits, dim=-1)
    log_p = F.log_softmax(teacher_logits, dim=-1)
    per_token = (log_q.exp() * (log_q - log_p)).sum(dim=-1)
    mask = mask.float()
    return (per_token * mask).sum() / mask.sum()
    ### END SOLUTION


# %%
check_reverse_kl(reverse_kl)

# %% [markdown]
# ### On the language model
#
# The reverse KL is an average under the student, so a random student, which spreads its mass
# everywhere, learns little from it about where the teacher's mass is; MiniLLM therefore starts from
# a student already trained on the data. We do the same for every comparison from here on: each
# method **continues** the three label-only students of section 4 for 100 more steps, and the
# control continues them with labels.
#
# Next to held-out bits per character we measure the student's **own text**: from 64 test
# prompts of 32 characters it writes 32 more (sampling at temperature 1), and we record
#
# - the **entropy** of its choices along its text (bits per character: how many options it keeps open);
# - the **teacher's bits per character** on that text: how plausible the teacher finds it (lower = more
#   plausible; above the 6.6 bits of a uniform guess means the teacher finds it less likely than
#   random characters would be, which text it considers wrong can be);
# - **agreement** (as in section 4) and the **KL to the teacher** on test text, in bits per character.

# %%
start = dict(zip(SEEDS, scratch.students["labels only"]))
divergences = lm.char_study(setting, {"labels, 100 more steps": {"method": "labels"},
                                      "forward KL": {"method": "forward"},
                                      "reverse KL": {"method": "reverse"}},
                            seeds=SEEDS, recipe=recipes["finetune"], start=start)
print(divergences.table())

# %%
prompt = setting.test_inputs[300:301, :32]
print("prompt:", repr(decode(prompt[0])))
for name in ["forward KL", "reverse KL"]:
    text = lm.generate(divergences.students[name][0], prompt.repeat(3, 1), 32,
                       generator=torch.Generator().manual_seed(0))
    print(f"\n{name} student, three samples:")
    for row in text:
        print("   ", repr(decode(row[32:])))

# %%
for metric, word in [("bpc", "held-out bpc"), ("sample_entropy", "entropy of its choices"),
                     ("teacher_bpc_of_samples", "teacher's bpc of its text")]:
    d = divergences.paired("reverse KL", "forward KL", metric)
    print(f"reverse - forward, {word:<26}: " + ", ".join(f"{x:+.3f}" for x in d["runs"]))
d_bpc = divergences.paired("reverse KL", "forward KL", "bpc")["runs"]
d_entropy = divergences.paired("reverse KL", "forward KL", "sample_entropy")["runs"]
d_plausible = divergences.paired("reverse KL", "forward KL", "teacher_bpc_of_samples")["runs"]
assert min(d_bpc) > 0.3, "reverse KL: worse held-out bpc than forward KL, by more than 0.3 bits on every seed"
assert max(d_entropy) < -0.5, "reverse KL: its choices keep at least 0.5 bits less entropy on every seed"
assert max(d_plausible) < -1.0, "reverse KL: the teacher finds its text more plausible by more than 1 bit on every seed"
print("asserted on every seed: reverse KL gives worse held-out bpc (> +0.3), less entropy (< -0.5 bits) and text "
      "the teacher finds more plausible (< -1 bit per character)")

# %% [markdown]
# Continuing with forward KL beats continuing with labels by a little (2.656 against 2.673 bpc).
# Reverse KL does what the picture predicted. Held-out bpc gets much worse (3.440; +0.784, +0.805,
# +0.765 bits against forward KL per seed): the student stops covering characters the teacher finds
# only somewhat likely, and real text is full of them. Yet its own text is far more plausible to the
# teacher (3.645 bits per character against 6.147) and it keeps fewer options open (1.430 bits of
# entropy against 2.784). Top-1 agreement is the same for both (0.568): the two students share the
# teacher's favourite character and differ in what they do with the rest. The samples show it: the
# reverse-KL student strings short common words together ("of the or on and", "is the if this
# an"), the forward-KL student writes more varied, less plausible strings.
#
# Which is better depends on the use. A model that *scores* text (perplexity, ranking, compression)
# wants forward KL; a model that *generates*, where every sampled token must be plausible, is why
# MiniLLM chose reverse KL. With a student 17 times smaller than its teacher, our budget is the
# left-hand picture: the two directions train very different students.

# %% [markdown]
# ## 7. Sequence-level KD and on-policy distillation
#
# Two more ways to use a teacher that only exist for models that write:
#
# - **sequence-level KD** (Kim & Rush 2016): train on text the **teacher wrote** instead of the real
#   text, with ordinary cross-entropy. The teacher's text ships with the course: it was sampled by
#   `scripts/train_lm_teacher.py`, one continuation after each of a few hundred training prompts
#   (the first line below says how many and how long).
# - **on-policy distillation** (GKD, Agarwal et al. 2024): the **student writes**, the teacher
#   scores every character it wrote, and the student minimises the KL to the teacher on its own
#   text — it learns from its own mistakes rather than from text it will never produce. Here each
#   batch is, with probability 0.5 (GKD's $\lambda$), the student's text: a 32-character prompt from
#   the training text and 33 characters the student writes, which fill the 64-character window plus
#   the last target; otherwise it is cached real text. Both kinds use forward KL.
#
# Both continue the same label-only students for 100 steps, like section 6.

# %%
written = info["text"]
print(f"the teacher's text: {len(setting.teacher_text):,} characters, {written['samples']} continuations of "
      f"{written['chars_per_sample']} characters after {written['prompt_chars']}-character training prompts\n")
others = lm.char_study(setting, {"sequence-level KD": {"method": "sequence"},
                                 "on-policy KD": {"method": "on-policy", "on_policy_share": 0.5, "prompt": 32}},
                       seeds=SEEDS, recipe=recipes["finetune"], start=start)
divergences.merge(others)
print(divergences.table(["labels, 100 more steps", "forward KL", "sequence-level KD", "on-policy KD"]))
print(f"\n(on-policy: {others.seconds['on-policy KD']:.0f} s for three students, "
      f"token-level: {divergences.seconds['forward KL']:.0f} s)")

# %%
for name in ["sequence-level KD", "on-policy KD"]:
    d = divergences.paired(name, "forward KL")["runs"]
    print(f"{name} - token-level forward KL, held-out bpc per seed: " + ", ".join(f"{x:+.3f}" for x in d))
    assert min(d) > 0.01, f"{name} is worse than token-level KD by more than 0.01 bits on every seed"
print("asserted: in this regime both are worse than token-level KD on every seed, by more than 0.01 bits")
real_bpc = lm.bits_per_char(teacher, data.test)
own = divergences.summary("labels, 100 more steps", "teacher_bpc_of_samples")["mean"]
print(f"\nwhy on-policy batches teach less here: the teacher needs {own:.2f} bits per character to explain "
      f"the students' text, against {real_bpc:.2f} on real text")
teacher_text_bpc = lm.bits_per_char(teacher, setting.teacher_text)
print(f"and the teacher's own text costs it {teacher_text_bpc:.2f} bits per character: one sampled character per "
      "position, where token-level KD gives the whole distribution")


# %% [markdown]
# Neither helps in this regime. Sequence-level KD is worse than token-level KD on every seed
# (+0.041, +0.032, +0.039 bits) and even slightly worse than more steps on the real text (2.693
# against 2.673). On-policy distillation is worse still (+0.061, +0.044, +0.043), its own text is no
# *less* plausible to the teacher (6.462 against 6.147), and it takes several times as long (the
# timing line above): the student writes 33 characters before about every other batch.
#
# The measurements under the assert are consistent with why. The students' text is so unlike real
# text that the teacher needs 6.22 bits per character to explain it (1.61 on real text): half of
# the on-policy batches correct the student on text unlike anything it is tested on. Sequence-level
# KD gives one sampled character per position where token-level KD gives the whole distribution;
# section 8 measures what the distribution is worth against one hard label per position (top-1, the
# teacher's arg-max rather than a sample, against the full cache). On-policy
# methods target the mistakes of students that already write well (GKD's experiments start from
# students fine-tuned on the task); a 21 k-parameter character model is not there yet.

# %% [markdown]
# ## 8. A cache of the teacher's top-k
#
# Storing the teacher's full distribution at every position is expensive: 97 numbers per
# character here, tens of thousands per token for a real tokenizer's vocabulary. Large-scale distillation stores
# only the teacher's **top k** log-probabilities and their token ids (an API that returns
# "logprobs" does the same). Their probabilities sum to less than one: the rest, the **tail**, is
# lost. The course's choice, stated in `kdcourse.losses.top_k_kd_loss`: **drop the tail and
# renormalise** the k kept probabilities to sum to one; the student's distribution stays over the
# whole vocabulary, so it is pushed to put its mass on the teacher's k candidates. $k = 1$ is the
# teacher's arg-max, a hard pseudo-label.
#
# ### Exercise 3: renormalise a top-k cache
#
# Write `renormalize_top_k(top_log_probs)`: given the cached log-probabilities `(..., k)`, return
# the renormalised probabilities, which sum to one over the last dimension.

# %%
def renormalize_top_k(top_log_probs):
    ### BEGIN SOLUTION probabilities divided by their sum over the k candidates
    p = top_log_probs.exp()
    return p / p.sum(dim=-1, keepdim=True)
    ### END SOLUTION


# %%
check_renormalize_top_k(renormalize_top_k)

# %%
teacher_log_probs = F.log_softmax(setting.teacher_train[:500], dim=-1)  # 500 windows: 32,000 positions
full_bytes = setting.teacher_train.shape[-1] * 2  # float16 for every character
print(f"{'k':>4}{'kept mass':>12}{'bytes/token':>13}{'of the full':>13}")
for k in (1, 5, 20, setting.teacher_train.shape[-1]):
    values, _ = top_k_logits(teacher_log_probs, k)
    kept = float(values.exp().sum(-1).mean())
    size = k * 3 if k < full_bytes // 2 else full_bytes  # float16 value + one-byte id per kept candidate
    print(f"{k:>4}{kept:>12.3f}{size:>13}{size / full_bytes:>12.0%}")

# %%
topk = lm.char_study(setting, {f"top-{k}": {"method": "top-k", "k": k} for k in (1, 5, 20)},
                     seeds=SEEDS, recipe=recipes["finetune"], start=start)
divergences.merge(topk)
order = ["labels, 100 more steps", "top-1", "top-5", "top-20", "forward KL"]
print(divergences.table(order, metrics=("bpc", "agreement", "sample_entropy")))
print("(forward KL is the full cache: top-97)")
for name in ("top-1", "top-5", "top-20"):
    d = divergences.paired(name, "forward KL")["runs"]
    print(f"{name} - full cache, held-out bpc per seed: " + ", ".join(f"{x:+.4f}" for x in d))

# %%
d20 = divergences.paired("top-20", "forward KL")["runs"]
d1 = divergences.paired("top-1", "labels, 100 more steps")["runs"]
assert max(abs(x) for x in d20) < 0.005, "a top-20 cache trains as well as the full one (within 0.005 bits, every seed)"
assert min(d1) > 0.05, "hard pseudo-labels (top-1) are worse than the true labels by more than 0.05 bits on every seed"
print("asserted: top-20 within 0.005 bits of the full cache on every seed; top-1 worse than the real labels "
      "by more than 0.05 bits on every seed")

# %% [markdown]
# A **top-20** cache keeps 99.4 % of the teacher's mass at 31 % of the storage and trains students
# indistinguishable from the full cache (+0.0012 to +0.0020 bits). **Top-5** (93.8 % of the mass,
# 8 % of the storage) costs about 0.02 bits. **Top-1**, the teacher's arg-max as a hard label, is
# the worst of all: 2.816 bpc, worse even than the real labels (2.673). On the training text the
# teacher gives its top choice 75 % of its mass on average, and a hard label throws the other 25 %
# away together with what it says about the alternatives. Its students nevertheless agree with the
# teacher most often (0.578): agreement and held-out loss measure different things, which is the
# subject of the next section.

# %% [markdown]
# ## 9. Fidelity and calibration
#
# Stanton et al. (2021, "Does knowledge distillation really work?") separate two questions: does
# the student get **better** (lower held-out loss), and does it become **faithful** to the teacher
# (predict what the teacher predicts)? They found students often improve while staying far from
# the teacher. We measure fidelity as the top-1 **agreement** with the teacher and the **KL to the
# teacher** on test text, and calibration as the **expected calibration error** (ECE: the gap
# between how confident the top choice is and how often it is right, averaged over 15 confidence
# bins), for the students of section 4.

# %%
with torch.no_grad():
    teacher_probs = torch.softmax(setting.teacher_test, dim=-1)
rows = {"teacher": {"bpc": lm.bits_per_char(teacher, data.test), "agreement": 1.0, "kl_to_teacher": 0.0,
                    "ece": expected_calibration_error(teacher_probs, setting.test_targets)}}
print(f"{'':<14}{'test bpc':>16}{'agreement':>18}{'KL to teacher':>18}{'ECE':>18}")
print(f"{'teacher':<14}{rows['teacher']['bpc']:>16.3f}{1:>18.3f}{0:>18.3f}{rows['teacher']['ece']:>18.4f}")
for name in ("labels only", "token KD"):
    cells = "".join(f"{scratch.summary(name, k)['mean']:>10.3f} ± {scratch.summary(name, k)['std']:.3f}"
                    for k in ("bpc", "agreement", "kl_to_teacher"))
    e = scratch.summary(name, "ece")
    print(f"{name:<14}{cells}{e['mean']:>10.4f} ± {e['std']:.4f}")
d_agree = scratch.paired("token KD", "labels only", "agreement")["runs"]
print("\ntoken KD - labels only, agreement per seed:", ", ".join(f"{x:+.3f}" for x in d_agree))
assert min(d_agree) > 0.01, "KD students agree with the teacher more often, by more than 1 point on every seed"
assert max(scratch.runs("token KD", "agreement")) < 0.7, "and still disagree with it on more than 30 % of characters"
print("asserted: KD raises agreement with the teacher by more than 1 point on every seed, yet every KD student "
      "disagrees with the teacher on more than 30 % of test characters")

# %%
bins = {"teacher": reliability_bins(teacher_probs, setting.test_targets)}
ece = {"teacher": rows["teacher"]["ece"]}
for name in ("labels only", "token KD"):
    probs = torch.softmax(lm.logits_on(scratch.students[name][0], setting.test_inputs), dim=-1)
    bins[f"{name} (seed 0)"] = reliability_bins(probs, setting.test_targets)
    ece[f"{name} (seed 0)"] = expected_calibration_error(probs, setting.test_targets)
fig = reliability_diagram(bins, title="next-character confidence against accuracy, test text", ece=ece)
plt.show()

# %% [markdown]
# KD raises fidelity, a little: agreement with the teacher goes from 54.5 % to 57.4 % (+3.5, +3.2
# and +1.9 points per seed) and the KL to the teacher falls from 1.499 to 1.379 bits. But the KD
# students still disagree with the teacher on about 43 % of test characters: as Stanton et al.
# found, a student trained to match its teacher does not end up matching it, here because it is 17
# times smaller.
#
# Calibration tells a story of its own. The students are well calibrated (ECE 0.0101 and 0.0122)
# and the teacher is the overconfident one (ECE 0.0409; its points lie below the diagonal). KD did
# not measurably pass that on: the KD students' ECE (0.0122 ± 0.0052) is within the seed noise of
# the label-only ones (0.0101 ± 0.0024). Lesson 04 makes the same measurement on the digits.

# %% [markdown]
# ## 10. Sampling temperature: diversity against plausibility
#
# A language model is used by sampling from it, and the **sampling temperature** divides its
# logits before the softmax (it is not the distillation temperature). Lower temperatures make
# safer, more repetitive text, higher ones more diverse and more wrong. The slider moves through
# the KD student's text at five temperatures; the plot shows both measures of section 6 for each.

# %%
kd_student = scratch.students["token KD"][0]
rows_for_prompts = torch.linspace(0, len(setting.test_inputs) - 1, 64).long()
prompts = setting.test_inputs[rows_for_prompts, :32]
sampling = {}
for temperature in (0.5, 0.7, 1.0, 1.3, 1.6):
    stats = lm.sample_stats(kd_student, teacher, prompts, 32, temperature=temperature, seed=0)
    sampling[temperature] = {"entropy_bits": stats["entropy_bits"], "teacher_bpc": stats["teacher_bpc"],
                             "text": "\n".join(decode(row) for row in stats["samples"][:3])}
    print(f"sampling T = {temperature:g}: entropy {stats['entropy_bits']:.2f} bits, "
          f"teacher's bpc of the text {stats['teacher_bpc']:.2f}")
entropies = [sampling[t]["entropy_bits"] for t in sorted(sampling)]
plausibility = [sampling[t]["teacher_bpc"] for t in sorted(sampling)]
assert all(a < b for a, b in zip(entropies, entropies[1:])), "entropy grows with the sampling temperature"
assert plausibility[0] < plausibility[-1], "the coldest text is more plausible to the teacher than the hottest"
print("asserted: entropy grows with the sampling temperature, and the text at 0.5 is more plausible to the "
      "teacher than at 1.6")

# %%
sampling_browser(sampling, start=1.0)

# %%
print(f"notebook run time: {time.perf_counter() - notebook_start:.0f} s")

# %% [markdown]
# The slider's five points trace the trade-off: from 1.26 bits of entropy and text the teacher
# explains at 3.35 bits per character (temperature 0.5) to 4.37 bits of entropy and 9.68 bits per
# character (temperature 1.6).
#
# ## Recap
#
# - A language model has a distribution at every position. Token-level KD is lesson 02's KL at
#   every **real** token: masked, averaged **per token** over the whole batch, times $T^2$.
# - With a teacher 17 times larger, token-level KD lowered the held-out cost by 0.109 ± 0.036 bits
#   per character, on every seed.
# - Forgetting the mask, averaging per sequence, reversing the KL and dropping $T^2$ raise no error:
#   each changes the numbers or the gradients, which is how you find them.
# - Forward KL covers every mode of the teacher, reverse KL seeks one. The reverse-KL student wrote
#   text the teacher found far more plausible and scored real text far worse. With a student able
#   to represent the teacher the two would agree.
# - Sequence-level KD and on-policy distillation did not beat token-level KD here: the teacher's
#   full distribution on real text was the most useful thing it could give.
# - A top-20 cache stored 31 % of the full one and trained as well; a top-1 cache (hard
#   pseudo-labels) trained worse than the real labels.
# - Better is not faithful: the KD students moved toward the teacher and still disagreed with it on
#   about 43 % of characters.
#
# ## Questions to think about
#
# 1. The reverse-KL student writes text the teacher likes and scores real text badly. Which student
#    would you ship for autocomplete? For a filter that flags unusual text by its bits per character?
# 2. The course's top-k loss drops the tail and renormalises. Another choice keeps the tail as one
#    extra "everything else" bucket on both sides. Write it with the inputs of `top_k_kd_loss`: does
#    it change the top-5 result?
# 3. On-policy distillation did not help a student whose text the teacher finds implausible. What
#    would you change first: the student's size, its starting point, or the on-policy share
#    (`on_policy_share`)? Measure it.
# 4. Run the lesson with `KDCOURSE_PROFILE=full` (2,000 steps from scratch, 400 for the
#    continuations): does the gain of token-level KD grow or shrink with the budget?

# %% [markdown] tags=["answer-key"]
# ### Answer key (solutions only)
#
# 1. Autocomplete shows generated text: every suggestion should be plausible, so for sampled suggestions
#    the reverse-KL student fits (its text costs the teacher 3.645 bits per character against 6.147 for
#    the forward-KL student, with less entropy, 1.430 bits). Both have the same top-1 agreement (0.568),
#    so for greedy one-character suggestions they would often agree; for ranking several candidate
#    completions the forward-KL student's probabilities are the more informative. A filter that flags
#    unusual text by its bits per character is a *scoring* model: it needs low cost on ordinary text so
#    that only unusual text scores high. The reverse-KL student scores real held-out text badly (3.440
#    against 2.656 bpc) and would flag ordinary text: ship the forward-KL student there.
# 2. With the teacher's top-k **log-probabilities** at $T = 1$ (as the lesson caches them, `top_k_logits`
#    of the log-softmax, or an API's logprobs; raw top-k logits do not tell the tail's mass), the tail
#    bucket is the rest of the mass on both sides, and the loss is the KL between the two distributions
#    coarsened to $k + 1$ outcomes:
#
#    ```python
#    def top_k_kd_loss_with_tail(student_logits, top_values, top_indices, mask=None):
#        # forward KL over the teacher's top k plus one "everything else" bucket, per real token (T = 1);
#        # top_values: the teacher's top-k log-probabilities (log_softmax, then top-k); k < vocabulary
#        log_p = top_values.float()                                       # (batch, length, k), not renormalised
#        p_tail = (1 - log_p.exp().sum(-1)).clamp_min(1e-12)              # the teacher's tail mass
#        log_q_all = F.log_softmax(student_logits, dim=-1)                # the student over the whole vocabulary
#        log_q = log_q_all.gather(-1, top_indices.long())                 # (batch, length, k)
#        log_q_tail = log_q_all.scatter(-1, top_indices.long(), float("-inf")).logsumexp(-1)
#        per_token = (log_p.exp() * (log_p - log_q)).sum(-1) + p_tail * (p_tail.log() - log_q_tail)
#        mask = torch.ones_like(per_token, dtype=torch.bool) if mask is None else mask
#        return (per_token * mask).sum() / mask.sum()
#    ```
#
#    It no longer pushes the student's mass outside the top k towards zero, only towards the teacher's
#    total tail mass. Whether it changes the top-5 result is for the run to say (same seeds and start,
#    paired against `top-5` and `forward KL`), but the table suggests where to look: top-5 kept 0.938 of
#    the mass and its students were sharper than the full cache's (sample entropy 2.623 against 2.784
#    bits) and about 0.02 bits worse; the bucket should recover part of that gap, not all of it, since
#    the tail's inner shape is still unknown.
# 3. The starting point. The teacher needs 6.22 bits per character to explain these students' text
#    against 1.61 on real text, so on-policy batches correct them on text unlike anything they are
#    tested on; GKD starts from students that already write well. Continuing from better students (the
#    forward-KL ones, or students trained longer) tests the mechanism at no extra cost; a larger student
#    changes more than one thing at once, and lowering `on_policy_share` towards 0 only moves the method
#    towards token-level KD on real text, which is already known to be best here, so it cannot show
#    on-policy distillation helping. Measure: `lm.char_study(setting, {"forward KL": {"method": "forward"},
#    "on-policy KD": {"method": "on-policy", "on_policy_share": 0.5, "prompt": 32}}, seeds=SEEDS,
#    recipe=recipes["finetune"], start=dict(zip(SEEDS, divergences.students["forward KL"])))`, paired by
#    seed, with the teacher's bits per character on the students' text before and after; then vary the
#    share, and only then the size.
# 4. The stored outputs are the quick profile's, so this is for the run to answer; the arguments go both
#    ways. At 400 steps the students have seen the training text about twice (2.2 passes), far from
#    converged. If KD's advantage is mainly faster learning from a richer target, the label-only student
#    catches up with more steps and the gain shrinks; if the teacher's full distribution, which does not
#    overfit the 373,047 training characters, keeps helping once the label-only student starts to
#    overfit, the gain grows (Beyer et al. 2022 found distillation needs patience: long schedules).
#    Read it from the paired per-seed differences token KD - labels only (quick: −0.109 ± 0.036 bits),
#    and compare both students with the teacher's 1.611.
#
