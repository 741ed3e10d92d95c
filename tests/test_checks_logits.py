"""The logit checkers (lessons 01-02): the reference passes; each classic mistake is named."""


import numpy as np
import pytest
import torch
import torch.nn.functional as F

from checker_frames import fails_with, shown_checker_frames
from kdcourse import losses
from kdcourse.checks import (
    check_distillation_loss,
    check_entropy,
    check_kd_loss,
    check_softmax_with_temperature,
)

pytestmark = pytest.mark.filterwarnings("ignore:reduction. .mean. divides")


# ------------------------------------------------------------------ softmax with temperature


def test_softmax_reference_passes(capsys):
    check_softmax_with_temperature(losses.softmax_with_temperature)
    assert "✓ softmax_with_temperature matches the reference" in capsys.readouterr().out


def test_softmax_learner_style_passes(capsys):
    def softmax_with_temperature(logits, T):
        scaled = logits / T
        scaled = scaled - scaled.max(dim=-1, keepdim=True).values
        e = torch.exp(scaled)
        return e / e.sum(dim=-1, keepdim=True)

    check_softmax_with_temperature(softmax_with_temperature)
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize("fn, patterns", [
    (lambda z, T: torch.softmax(z, -1), ["temperature is not applied"]),
    (lambda z, T: torch.softmax(z * T, -1), ["multiplies the logits by T"]),
    (lambda z, T: torch.softmax(z / T ** 2, -1), ["divides by T twice"]),
    (lambda z, T: torch.softmax(z, -1) / T, ["after the softmax"]),
    (lambda z, T: torch.log_softmax(z / T, -1), ["log-probabilities"]),
    (lambda z, T: torch.exp(z / T), ["without dividing by the sum"]),
    (lambda z, T: z / T, ["without the softmax"]),
    (lambda z, T: torch.softmax(z / T, 0), [r"dim=0", "dim=-1"]),
    (lambda z, T: torch.exp(z / T) / torch.exp(z / T).sum(), ["sum of the WHOLE tensor", r"dim=-1, keepdim=True"]),
    (lambda z, T: (lambda e: e / e.sum())(torch.exp(z / T - (z / T).max())), ["sum of the WHOLE tensor"]),
])
def test_softmax_mistakes_are_named(fn, patterns):
    fails_with(check_softmax_with_temperature, fn, *patterns)


def test_softmax_dim1_fails_on_a_vector():
    fails_with(check_softmax_with_temperature, lambda z, T: torch.softmax(z / T, dim=1),
               "IndexError|Dimension out of range", "not on one example", "dim=-1")


def test_softmax_naive_exp_overflows():
    def naive(z, T):
        e = torch.exp(z / T)
        return e / e.sum(-1, keepdim=True)

    fails_with(check_softmax_with_temperature, naive, "overflow", "maximum")


def test_softmax_not_implemented_exception_numpy_and_inplace():
    def not_done(z, T):
        raise NotImplementedError("Exercise: implement softmax_with_temperature")

    # the checker itself; the lessons' wrapper answers the untouched stub with the reference (tests/test_fallback.py)
    fails_with(check_softmax_with_temperature.__wrapped__, not_done, "not implemented yet", "Replace")

    def crashes(z, T):
        return torch.softmax(z / T, dim=-1) + undefined_name  # noqa: F821

    fails_with(check_softmax_with_temperature, crashes, "raised NameError", "undefined_name")
    fails_with(check_softmax_with_temperature, lambda z, T: np.exp(z.numpy()), "ndarray", "torch.Tensor")
    fails_with(check_softmax_with_temperature, lambda z, T: None, "NoneType", "return")

    def inplace(z, T):
        z /= T
        return torch.softmax(z, -1)

    fails_with(check_softmax_with_temperature, inplace, "in place")


def test_softmax_unknown_mistake_gets_generic_message():
    fails_with(check_softmax_with_temperature, lambda z, T: torch.softmax(z / T + 0.3 * z ** 2, -1),
               "No classic mistake", "expected")


# ------------------------------------------------------------------ entropy


def test_entropy_reference_passes(capsys):
    check_entropy(lambda p: -torch.special.xlogy(p, p).sum(-1))
    check_entropy(lambda p: -(p * torch.log(p.clamp_min(1e-12))).sum(dim=1))
    assert capsys.readouterr().out.count("✓") == 2


@pytest.mark.parametrize("fn, pattern", [
    (lambda p: -(p * torch.log2(p.clamp_min(1e-12))).sum(-1), "base 2"),
    (lambda p: (p * torch.log(p.clamp_min(1e-12))).sum(-1), "minus sign"),
    (lambda p: -(p * torch.log(p.clamp_min(1e-12))).mean(-1), "instead of summing"),
    (lambda p: -(p * torch.log(p.clamp_min(1e-12))).sum(), "whole batch"),
    (lambda p: -(p * torch.log(p)).sum(-1), r"0 \* log\(0\)|xlogy"),
    (lambda p: -torch.log(p).sum(-1), "p_i weights"),
])
def test_entropy_mistakes_are_named(fn, pattern):
    fails_with(check_entropy, fn, pattern)


# ------------------------------------------------------------------ kd_loss


def kd_reference_style(s, t, T):
    return F.kl_div(F.log_softmax(s / T, dim=1), F.softmax(t / T, dim=1), reduction="batchmean") * T ** 2


def test_kd_reference_passes(capsys):
    check_kd_loss(losses.kd_loss)
    check_kd_loss(kd_reference_style)
    out = capsys.readouterr().out
    assert out.count("✓ kd_loss matches the reference on 6 test cases") == 1
    assert "✓ kd_reference_style" in out


def kl(inp, target, reduction="batchmean", **kw):
    return F.kl_div(inp, target, reduction=reduction, **kw)


@pytest.mark.parametrize("fn, patterns", [
    (lambda s, t, T: kl(F.log_softmax(s / T, 1), F.softmax(t / T, 1)),
     [r"factor T\^2 \(= 16 at T=4\)", "forget to rescale"]),
    (lambda s, t, T: kl(F.log_softmax(t / T, 1), F.softmax(s / T, 1)) * T * T, ["reversed", r"KL\(student"]),
    (lambda s, t, T: kl(F.log_softmax(s / T, 1), F.softmax(t / T, 1), "mean") * T * T,
     [r'reduction="mean"', "number of classes"]),
    (lambda s, t, T: kl(F.log_softmax(s / T, 1), F.softmax(t / T, 1), "sum") * T * T, [r'reduction="sum"']),
    (lambda s, t, T: kl(F.softmax(s / T, 1), F.softmax(t / T, 1)) * T * T, ["LOG-probabilities"]),
    (lambda s, t, T: kl(F.log_softmax(s / T, 1), F.log_softmax(t / T, 1)) * T * T, ["log_target"]),
    (lambda s, t, T: kl(F.log_softmax(s / T, 1), F.softmax(t, 1)) * T * T, ["student only"]),
    (lambda s, t, T: kl(F.log_softmax(s, 1), F.softmax(t / T, 1)) * T * T, ["teacher only"]),
    (lambda s, t, T: kl(F.log_softmax(s, 1), F.softmax(t, 1)) * T * T, ["not applied to the logits"]),
    (lambda s, t, T: kl(F.log_softmax(s, 1), F.softmax(t, 1)), ["plain KL at T = 1"]),
    (lambda s, t, T: kl(F.log_softmax(s / T, 1), F.softmax(t / T, 1)) * T, ["multiplies by T, not by T\\^2"]),
    (lambda s, t, T: -(F.softmax(t / T, 1) * F.log_softmax(s / T, 1)).sum(1).mean() * T * T, ["cross-entropy"]),
    (lambda s, t, T: kl(F.log_softmax(s / T, 0), F.softmax(t / T, 0)) * T * T,
     [r"over the batch \(dim=0\)", "in both F.log_softmax and F.softmax"]),
    (lambda s, t, T: kl(F.log_softmax(s / T, dim=0), F.softmax(t / T, dim=1)) * T * T,
     [r"student's log_softmax runs over the batch \(dim=0\)"]),
    (lambda s, t, T: kl(F.log_softmax(s / T, dim=1), F.softmax(t / T, dim=0)) * T * T,
     [r"teacher's softmax runs over the batch \(dim=0\)"]),
])
def test_kd_mistakes_are_named(fn, patterns):
    fails_with(check_kd_loss, fn, *patterns, "got .*expected")


def test_kd_two_mistakes_are_both_named():
    message = fails_with(
        check_kd_loss,
        lambda s, t, T: kl(F.log_softmax(t / T, 1), F.softmax(s / T, 1), "mean"),
        "3 mistakes", r"T\^2", "reversed", r'reduction="mean"',
    )
    assert message.count("  - ") == 3


@pytest.mark.parametrize("fn, patterns", [
    (lambda s, t, T: kl(F.log_softmax(s / T, 1), F.softmax(t / T, 1), "none") * T * T,
     [r"shape \(4, 5\)", 'reduction="none"']),
    (lambda s, t, T: kl(F.log_softmax(s / T, 1), F.softmax(t / T, 1), "none").sum(1) * T * T,
     [r"shape \(4,\)", "one value per example"]),
    (lambda s, t, T: float(losses.kd_loss(s, t, T)), ["returned a float", r"\.item\(\)"]),
    (lambda s, t, T: losses.kd_loss(s, t, T).detach(), ["no gradient"]),
    (lambda s, t, T: F.kl_div(s, t, reduction="batchmean", bogus=1), ["raised TypeError", "bogus"]),
])
def test_kd_shape_type_gradient_and_exceptions(fn, patterns):
    fails_with(check_kd_loss, fn, *patterns)


# ------------------------------------------------------------------ distillation_loss


def test_distillation_reference_passes(capsys):
    check_distillation_loss(losses.distillation_loss)

    def distillation_loss(s, t, y, T, alpha):
        return alpha * kd_reference_style(s, t, T) + (1 - alpha) * F.cross_entropy(s, y)

    check_distillation_loss(distillation_loss)
    assert capsys.readouterr().out.count("✓ distillation_loss matches the reference on 7 test cases") == 2


def soft(s, t, T):
    return losses.kd_loss(s, t, T)


@pytest.mark.parametrize("fn, patterns", [
    (lambda s, t, y, T, a: (1 - a) * soft(s, t, T) + a * F.cross_entropy(s, y), ["alpha is swapped"]),
    (lambda s, t, y, T, a: a * soft(s, t, T) + F.cross_entropy(s, y), [r"not weighted by \(1 - alpha\)"]),
    (lambda s, t, y, T, a: soft(s, t, T) + F.cross_entropy(s, y), ["alpha is not used"]),
    (lambda s, t, y, T, a: a * soft(s, t, T) + (1 - a) * F.cross_entropy(s / T, y), ["temperature T", "T = 1"]),
    (lambda s, t, y, T, a: a * soft(s, t, T) + (1 - a) * F.cross_entropy(s, y, reduction="sum"),
     [r'reduction="sum"']),
    (lambda s, t, y, T, a: a * soft(s, t, T) + (1 - a) * F.cross_entropy(s, t.argmax(1)), ["teacher's predictions"]),
    (lambda s, t, y, T, a: a * soft(s, t, T) / T ** 2 + (1 - a) * F.cross_entropy(s, y),
     ["soft term", r"factor T\^2"]),
    (lambda s, t, y, T, a: a * losses.kd_loss(t, s, T) + (1 - a) * F.cross_entropy(s, y), ["reversed"]),
    (lambda s, t, y, T, a: a * soft(s, t, T) + (1 - a) * F.nll_loss(s, y),
     ["F.nll_loss on the raw logits", "LOG-probabilities", "F.cross_entropy"]),
    (lambda s, t, y, T, a: a * soft(s, t, T) + (1 - a) * F.nll_loss(F.softmax(s, 1), y),
     ["F.nll_loss on probabilities", "log_softmax"]),
    (lambda s, t, y, T, a: a * soft(s, t, T) + (1 - a) * F.cross_entropy(s, y) * T ** 2,
     [r"cross-entropy is multiplied by T\^2 \(= 16 at T=4\)", r"only the soft term needs T\^2"]),
    (lambda s, t, y, T, a: T ** 2 * (a * soft(s, t, T) / T ** 2 + (1 - a) * F.cross_entropy(s, y)),
     [r"cross-entropy is multiplied by T\^2"]),
    (lambda s, t, y, T, a: a * kl(F.log_softmax(s / T, 0), F.softmax(t / T, 0)) * T * T
     + (1 - a) * F.cross_entropy(s, y), [r"soft term's softmaxes run over the batch \(dim=0\)"]),
])
def test_distillation_mistakes_are_named(fn, patterns):
    fails_with(check_distillation_loss, fn, *patterns)


def test_distillation_two_mistakes():
    fails_with(check_distillation_loss,
               lambda s, t, y, T, a: (1 - a) * soft(s, t, T) / T ** 2 + a * F.cross_entropy(s, y),
               "2 mistakes", "swapped", r"T\^2")


def test_distillation_exception_and_shape():
    def not_done(s, t, y, T, alpha):
        raise NotImplementedError("Exercise: mix the soft and the hard term")

    fails_with(check_distillation_loss.__wrapped__, not_done, "not implemented yet")  # the checker itself
    fails_with(check_distillation_loss,
               lambda s, t, y, T, a: a * soft(s, t, T) + (1 - a) * F.cross_entropy(s, y, reduction="none"),
               r"shape \(4,\)", "one value per example")




def crashes(*args):
    return torch.softmax(args[0], dim=5)  # an error inside torch: the learner's line is the one shown


@pytest.mark.parametrize("check, wrong", [
    (check_softmax_with_temperature, crashes),
    (check_softmax_with_temperature, lambda z, T: torch.exp(z / T) / torch.exp(z / T).sum()),
    (check_entropy, crashes),
    (check_kd_loss, crashes),
    (check_kd_loss, lambda s, t, T: kl(F.log_softmax(s / T, 0), F.softmax(t / T, 0)) * T * T),
    (check_distillation_loss, crashes),
    (check_distillation_loss, lambda s, t, y, T, a: a * soft(s, t, T) + (1 - a) * F.nll_loss(s, y)),
])
def test_tracebacks_hide_the_checkers_frames(check, wrong):
    with pytest.raises(AssertionError) as info:
        check(wrong)
    assert shown_checker_frames(info.value) == []
    if wrong is crashes:
        assert "dim=5" in str(info.value)  # the learner's own line, not torch's internals
