"""The feature checkers (lesson 05): the reference passes; each classic mistake is named."""

import os
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from checker_frames import fails_with, shown_checker_frames
from kdcourse import losses
from kdcourse.checks import (
    check_attention_map,
    check_attention_transfer_loss,
    check_hint_loss,
    check_hint_term,
    check_make_regressor,
    check_rkd_angle_loss,
    check_rkd_angles,
    check_rkd_distance_loss,
    check_similarity_matrix,
    check_similarity_preserving_loss,
)
from kdcourse.distill import LossTerm, hint_term, make_regressor
from kdcourse.models import feature_extractor

pytestmark = pytest.mark.filterwarnings("ignore:Using a target size")


def spatial_guard(build):
    """A learner's make_regressor keeps the skeleton's shape check and varies only the layer."""
    def make_regressor(student_shape, teacher_shape):
        if tuple(student_shape[2:]) != tuple(teacher_shape[2:]):
            raise ValueError("hint layers must share their spatial size")
        return build(student_shape[1], teacher_shape[1])
    return make_regressor


# ------------------------------------------------------------------ make_regressor


def test_make_regressor_reference_and_variants_pass(capsys):
    check_make_regressor(make_regressor)
    check_make_regressor(spatial_guard(lambda cs, ct: nn.Conv2d(cs, ct, 1)))  # with a bias
    check_make_regressor(spatial_guard(lambda cs, ct: nn.Conv2d(cs, ct, 3, padding=1)))
    assert capsys.readouterr().out.count("✓") == 3


@pytest.mark.parametrize("fn, patterns", [
    (spatial_guard(lambda cs, ct: nn.Conv2d(ct, cs, 1)), ["wrong way round", "nn.Conv2d\\(c_student, c_teacher"]),
    (spatial_guard(lambda cs, ct: nn.Conv2d(cs, ct, 3)), ["spatial size changed", "kernel_size=1"]),
    (spatial_guard(lambda cs, ct: nn.Conv2d(cs, cs, 1)), ["teacher's channel count"]),
    (spatial_guard(lambda cs, ct: nn.Identity()), ["no trainable parameters"]),
    (spatial_guard(lambda cs, ct: torch.zeros(ct, cs)), ["returned a tensor", "nn.Module"]),
    (lambda s, t: nn.Conv2d(s[1], t[1], 1), ["8x8 maps into 4x4", "ValueError"]),
])
def test_make_regressor_mistakes_are_named(fn, patterns):
    fails_with(check_make_regressor, fn, *patterns)


@pytest.mark.parametrize("build", [lambda cs, ct: nn.Linear(cs, ct), lambda cs, ct: nn.Linear(cs, ct, bias=False)])
def test_make_regressor_linear_layer_is_named(build):
    fails_with(check_make_regressor, spatial_guard(build), "raised RuntimeError",
               "nn.Linear, which acts on the LAST dimension", "1x1 convolution",
               "nn.Conv2d\\(c_student, c_teacher, kernel_size=1\\)")


def test_make_regressor_batch_size_as_channel_count_is_named():
    def make_regressor(student_shape, teacher_shape):
        if tuple(student_shape[2:]) != tuple(teacher_shape[2:]):
            raise ValueError("hint layers must share their spatial size")
        return nn.Conv2d(student_shape[0], teacher_shape[0], kernel_size=1)

    fails_with(check_make_regressor, make_regressor, "raised RuntimeError",
               "input and output channel counts are shape\\[0\\], the batch size N", "shape\\[1\\]")

    def make_regressor_out(student_shape, teacher_shape):
        if tuple(student_shape[2:]) != tuple(teacher_shape[2:]):
            raise ValueError("hint layers must share their spatial size")
        return nn.Conv2d(student_shape[1], teacher_shape[0], kernel_size=1)

    fails_with(check_make_regressor, make_regressor_out, "output channel count is shape\\[0\\], the batch size N")


def test_make_regressor_not_implemented():
    def make_regressor(student_shape, teacher_shape):
        raise NotImplementedError("Exercise: build a 1x1 convolution")
    # the checker itself; the lessons' wrapper answers the untouched stub with the reference (tests/test_fallback.py)
    fails_with(check_make_regressor.__wrapped__, make_regressor, "not implemented yet")


# ------------------------------------------------------------------ hint_loss


def test_hint_loss_reference_and_learner_style_pass(capsys):
    check_hint_loss(losses.hint_loss)
    check_hint_loss(lambda s, t, r: ((r(s) - t) ** 2).mean())
    check_hint_loss(lambda s, t, r: F.mse_loss(t, r(s)))  # the MSE is symmetric: fine
    assert capsys.readouterr().out.count("✓") == 3


@pytest.mark.parametrize("fn, patterns", [
    (lambda s, t, r: F.mse_loss(r(t), s), ["reversed", "applied to the TEACHER"]),
    (lambda s, t, r: F.mse_loss(s, t), ["never applied"]),
    (lambda s, t, r: F.mse_loss(r(s), r(t)), ["applied to both"]),
    (lambda s, t, r: ((r(s) - t) ** 2).sum(), ["sums the squared errors"]),
    (lambda s, t, r: ((r(s) - t) ** 2).sum() / len(s), ["batch only"]),
    (lambda s, t, r: 0.5 * F.mse_loss(r(s), t), ["1/2", "weight"]),
    (lambda s, t, r: (r(s) - t).norm(), ["not its square"]),
    (lambda s, t, r: F.l1_loss(r(s), t), ["absolute error"]),
    (lambda s, t, r: F.mse_loss(r(s.detach()), t), ["no gradient reaches the student", "detach"]),
    (lambda s, t, r: F.mse_loss(r(s), t).item(), ["returned a float", "item"]),
    (lambda s, t, r: ((r(s) - t) ** 2).flatten(1).mean(1), ["one value per example"]),
])
def test_hint_loss_mistakes_are_named(fn, patterns):
    fails_with(check_hint_loss, fn, *patterns)


def test_hint_loss_shape_error_gets_a_shape_hint():
    def hint_loss(s, t, r):
        return ((s - r(t)) ** 2).mean()  # the regressor on the teacher, channels mismatch
    fails_with(check_hint_loss, hint_loss, "reversed|STUDENT's channels")


# ------------------------------------------------------------------ hint_term


def learner_hint_term(weight, student, teacher, feature, sample_input):
    s_shape = feature_extractor(student, [feature])(sample_input)[feature].shape
    t_shape = feature_extractor(teacher, [feature])(sample_input)[feature].shape
    regressor = make_regressor(s_shape, t_shape)
    return LossTerm("hint", weight, lambda s, t, y: losses.hint_loss(s[feature], t[feature], regressor),
                    features=(feature,), module=regressor)


def test_hint_term_reference_and_learner_pass(capsys):
    check_hint_term(learner_hint_term)
    check_hint_term(hint_term)  # the package's reference
    assert capsys.readouterr().out.count("✓") == 2


def test_hint_term_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_hint_term(learner_hint_term)
    assert torch.equal(torch.rand(3), expected)


def _modified(**changes):
    def fn(weight, student, teacher, feature, x):
        term = learner_hint_term(weight, student, teacher, feature, x)
        for key, value in changes.items():
            setattr(term, key, value(term) if callable(value) and key != "fn" else value)
        return term
    return fn


@pytest.mark.parametrize("fn, patterns", [
    (_modified(module=None), ["left out of the optimizer", "module=regressor"]),
    (_modified(module=lambda term: nn.Conv2d(8, 16, 1, bias=False)), ["same regressor", "ONE regressor"]),
    (_modified(weight=1.0), ["weight is 1.0", "don't hard-code"]),
    # a LossTerm built without features= (neither side reads the layer)
    (_modified(features=(), student_features=(), teacher_features=()), ["features=\\('layer2',\\)"]),
    (lambda weight, student, teacher, feature, x: learner_hint_term(weight, student, teacher, feature, x).fn,
     ["return a LossTerm"]),
])
def test_hint_term_mistakes_are_named(fn, patterns):
    fails_with(check_hint_term, fn, *patterns)


def _hint_term_with(build_regressor, read=lambda out, feature: out[feature]):
    def hint_term(weight, student, teacher, feature, sample_input):
        s_shape = feature_extractor(student, [feature])(sample_input)[feature].shape
        t_shape = feature_extractor(teacher, [feature])(sample_input)[feature].shape
        regressor = build_regressor(s_shape, t_shape)
        return LossTerm("hint", weight, lambda s, t, y: F.mse_loss(regressor(read(s, feature)), read(t, feature)),
                        features=(feature,), module=regressor)
    return hint_term


@pytest.mark.parametrize("build, patterns", [
    (lambda s, t: nn.Linear(s[1], t[1]), ["raised RuntimeError", "nn.Linear, which acts on the LAST dimension", "1x1"]),
    (lambda s, t: nn.Conv2d(s[0], t[0], 1), ["shape\\[0\\], the batch size N", "shape\\[1\\]"]),
])
def test_hint_term_regressor_errors_get_a_hint(build, patterns):
    message = fails_with(check_hint_term, _hint_term_with(build), *patterns)
    assert "line" in message and "F.mse_loss(regressor(" in message  # the learner's own line, not torch's


def test_hint_term_wrong_layer_name_gets_a_hint():
    fails_with(check_hint_term, _hint_term_with(make_regressor, read=lambda out, feature: out["layer3"]),
               "KeyError", "keyed by layer name", "the `feature` passed in")


def test_hint_term_module_of_the_wrong_shape_is_reported_not_raised():
    def hint_term(weight, student, teacher, feature, sample_input):
        term = learner_hint_term(weight, student, teacher, feature, sample_input)
        return LossTerm("hint", weight, term.fn, features=(feature,), module=nn.Linear(8, 16))
    fails_with(check_hint_term, hint_term, "term.module cannot map the student's 'layer2' features",
               "nn.Linear, which acts on the LAST dimension")


def test_hint_term_weight_applied_twice_is_named():
    def fn(weight, student, teacher, feature, x):
        term = learner_hint_term(weight, student, teacher, feature, x)
        inner = term.fn
        term.fn = lambda s, t, y: weight * inner(s, t, y)
        return term
    fails_with(check_hint_term, fn, "weight would count twice")


# ------------------------------------------------------------------ attention_map


def test_attention_map_reference_and_learner_style_pass(capsys):
    check_attention_map(losses.attention_map)

    def attention_map(feature, p=2.0):
        q = feature.abs().pow(p).sum(dim=1).view(len(feature), -1)  # the sum: same after normalising
        return q / q.norm(dim=1, keepdim=True)

    check_attention_map(attention_map)
    assert capsys.readouterr().out.count("✓") == 2


def _q(a, p):
    return a.abs().pow(p).mean(1).flatten(1)


@pytest.mark.parametrize("fn, patterns", [
    (lambda a, p: _q(a, p), ["not normalised", "F.normalize"]),
    (lambda a, p: a.abs().pow(p).sum(1).flatten(1), ["not normalised"]),
    (lambda a, p: F.normalize(a.pow(p).mean(1).flatten(1), dim=1), ["absolute value"]),
    (lambda a, p: F.normalize(a.pow(2).mean(1).flatten(1), dim=1), ["ignores p"]),
    (lambda a, p: F.normalize(_q(a, p), p=1, dim=1), ["L1 norm"]),
    (lambda a, p: _q(a, p) / _q(a, p).norm(), ["whole batch"]),
    (lambda a, p: F.normalize(_q(a, p), dim=0), ["dim=0"]),
    (lambda a, p: torch.softmax(_q(a, p), dim=1), ["softmax"]),
    (lambda a, p: F.normalize(a.abs().pow(p).mean(1), dim=1), ["shape \\(3, 4, 4\\)", "flatten"]),
    (lambda a, p: F.normalize(a.abs().pow(p).mean((2, 3)), dim=1), ["CHANNELS \\(dim=1\\)"]),
    (lambda a, p: a.pow(p).mean(1).flatten(1), ["2 mistakes", "not normalised", "absolute value"]),
])
def test_attention_map_mistakes_are_named(fn, patterns):
    fails_with(check_attention_map, fn, *patterns)


def test_attention_map_reduced_over_the_batch_is_named():
    fails_with(check_attention_map, lambda a, p: F.normalize(a.abs().pow(p).mean(0).flatten(1), dim=1),
               "shape \\(5, 16\\)", "reduced over dim 0, the batch", "dim=1")


def test_attention_map_in_place_is_named():
    def attention_map(feature, p=2.0):
        feature.abs_()
        return F.normalize(feature.pow(p).mean(1).flatten(1), dim=1)
    fails_with(check_attention_map, attention_map, "in place")


# ------------------------------------------------------------------ attention_transfer_loss


def test_attention_transfer_loss_reference_and_learner_style_pass(capsys):
    check_attention_transfer_loss(losses.attention_transfer_loss)
    check_attention_transfer_loss(
        lambda s, t, p=2.0: F.mse_loss(losses.attention_map(s, p), losses.attention_map(t, p)))
    assert capsys.readouterr().out.count("✓") == 2


am = losses.attention_map


@pytest.mark.parametrize("fn, patterns", [
    (lambda s, t, p: (s - t).pow(2).mean(), ["different channel counts", "attention MAPS"]),
    (lambda s, t, p: (_q(s, p) - _q(t, p)).pow(2).mean(), ["without normalising"]),
    (lambda s, t, p: (am(s, p) - am(t, p)).pow(2).sum(), ["sums over the batch and the positions"]),
    (lambda s, t, p: (am(s, p) - am(t, p)).pow(2).sum(1).mean(), ["averages over the batch"]),
    (lambda s, t, p: (am(s, p) - am(t, p)).norm(dim=1).mean(), ["not its square"]),
    (lambda s, t, p: (am(s, p) - am(t, p)).abs().mean(), ["absolute difference"]),
    (lambda s, t, p: (am(s, 2.0) - am(t, 2.0)).pow(2).mean(), ["ignores p"]),
    (lambda s, t, p: (am(s.detach(), p) - am(t, p)).pow(2).mean(), ["no gradient reaches"]),
])
def test_attention_transfer_loss_mistakes_are_named(fn, patterns):
    fails_with(check_attention_transfer_loss, fn, *patterns)


# ------------------------------------------------------------------ noise: warnings and tracebacks


@pytest.mark.parametrize("wrong", [
    lambda s, t, r: F.mse_loss(r(t), s),  # reversed: the checker tries "no regressor", F.mse_loss(s, t), too
    lambda s, t, r: ((r(s) - t) ** 2).sum(),
    lambda s, t, r: F.mse_loss(r(s), t) + 1.0,  # unexplained: every hypothesis is computed
])
def test_hint_loss_checker_emits_no_broadcasting_warning_of_its_own(wrong):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(AssertionError):
            check_hint_loss(wrong)
    ours = [w for w in caught if f"{os.sep}checks{os.sep}" in w.filename or "target size" in str(w.message)]
    assert not ours, [f"{w.filename}:{w.lineno}: {w.message}" for w in ours]




def crashes(*args):
    raise RuntimeError("the learner's own bug")


@pytest.mark.parametrize("check, wrong", [
    (check_make_regressor, crashes),
    (check_make_regressor, spatial_guard(lambda cs, ct: nn.Linear(cs, ct))),
    (check_hint_loss, crashes),
    (check_hint_loss, lambda s, t, r: F.mse_loss(s, t)),
    (check_hint_loss, lambda s, t, r: F.mse_loss(r(s.detach()), t)),
    (check_hint_term, crashes),
    (check_hint_term, _hint_term_with(lambda s, t: nn.Linear(s[1], t[1]))),
    (check_attention_map, crashes),
    (check_attention_map, lambda a, p: a.abs().pow(p).mean(1).flatten(1)),
    (check_attention_map, lambda a, p: a.abs().pow(p).mean(1)),
    (check_attention_transfer_loss, crashes),
    (check_attention_transfer_loss, lambda s, t, p: (am(s.detach(), p) - am(t, p)).pow(2).mean()),
    (check_rkd_distance_loss, crashes),
    (check_rkd_distance_loss, lambda s, t: F.mse_loss(torch.cdist(s, s), torch.cdist(t, t))),
    (check_rkd_angles, crashes),
    (check_rkd_angle_loss, crashes),
    (check_similarity_matrix, crashes),
    (check_similarity_matrix, lambda f: f.flatten(1) @ f.flatten(1).t()),
    (check_similarity_preserving_loss, crashes),
    (check_similarity_preserving_loss, lambda s, t: (losses.similarity_matrix(s) - losses.similarity_matrix(t)).sum(1)),
])
def test_tracebacks_hide_the_checkers_frames(check, wrong):
    with pytest.raises(AssertionError) as info:
        check(wrong)
    assert shown_checker_frames(info.value) == []
