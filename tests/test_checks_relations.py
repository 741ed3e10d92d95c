"""The relation checkers (lesson 06): the reference passes; each classic mistake is named."""


import pytest
import torch
import torch.nn.functional as F

from checker_frames import fails_with
from kdcourse import losses
from kdcourse.checks import (
    check_rkd_angle_loss,
    check_rkd_angles,
    check_rkd_distance_loss,
    check_similarity_matrix,
    check_similarity_preserving_loss,
)
from rkd_reference import repdistiller_rkd_distance

# ------------------------------------------------------------------ RKD distance


def rkd_distance(s, t, *, norm="own", crit=F.smooth_l1_loss, dist="cdist", mean="offdiag", reduction="mean",
                 entries="all"):
    """A learner-style RKD distance loss with switches for the classic mistakes."""
    def d(e):
        if dist == "cdist":
            return torch.cdist(e, e)
        if dist == "naive":
            return ((e[:, None] - e[None]) ** 2).sum(-1).sqrt()
        return torch.cdist(e, e) ** 2

    d_s, d_t = d(s), d(t)
    mu = (lambda m: m[m > 0].mean()) if mean == "offdiag" else (lambda m: m.mean())
    if norm == "own":
        d_s, d_t = d_s / mu(d_s), d_t / mu(d_t)
    elif norm == "teacher":
        d_s, d_t = d_s / mu(d_t), d_t / mu(d_t)
    if entries == "pairs":  # the b(b-1) pairs i != j only; "all": the b^2 entries, as the reference implementations
        off = ~torch.eye(len(s), dtype=torch.bool)
        d_s, d_t = d_s[off], d_t[off]
    return crit(d_s, d_t, reduction=reduction)


repdistiller_distance = repdistiller_rkd_distance  # RepDistiller's RKDLoss, distance part (tests/rkd_reference.py)


def test_rkd_distance_reference_and_learner_styles_pass(capsys):
    check_rkd_distance_loss(losses.rkd_distance_loss)
    check_rkd_distance_loss(rkd_distance)  # d[d > 0].mean() for the mean, the loss over the full matrices

    def masked(s, t):  # the mean over an off-diagonal mask, the loss over the full matrices
        off = ~torch.eye(len(s), dtype=torch.bool)
        d_s, d_t = torch.cdist(s, s), torch.cdist(t, t)
        return F.smooth_l1_loss(d_s / d_s[off].mean(), d_t / d_t[off].mean())

    check_rkd_distance_loss(masked)
    check_rkd_distance_loss(repdistiller_distance)
    assert capsys.readouterr().out.count("✓") == 4


@pytest.mark.parametrize("kwargs, patterns", [
    (dict(norm="none"), ["not normalised by their mean"]),
    (dict(norm="teacher"), ["TEACHER's mean"]),
    (dict(mean="all"), ["zeros of the diagonal"]),
    (dict(dist="squared"), ["SQUARED distances"]),
    (dict(crit=F.mse_loss), ["squared error", "Huber"]),
    (dict(crit=F.l1_loss), ["absolute error", "Huber"]),
    (dict(reduction="sum"), ["sums over the pairs"]),
    (dict(entries="pairs"), [r"b\(b-1\) pairs i != j only", r"b/\(b-1\)", "5/4"]),
    (dict(norm="none", crit=F.mse_loss), ["2 mistakes", "not normalised", "Huber"]),
    (dict(dist="naive"), ["NaN", "clamp"]),
])
def test_rkd_distance_mistakes_are_named(kwargs, patterns):
    fails_with(check_rkd_distance_loss, lambda s, t: rkd_distance(s, t, **kwargs), *patterns)


def test_rkd_distance_over_the_pairs_only_is_named():
    """The RKD authors' code, RepDistiller and mdistiller (and the reference) average the Huber loss over all b^2
    entries, diagonal zeros included; over the b(b-1) pairs i != j alone it is b/(b-1) times that: named."""
    s, t = torch.randn(5, 3), torch.randn(5, 6)
    pairs = rkd_distance(s, t, entries="pairs")
    assert torch.allclose(pairs, losses.rkd_distance_loss(s, t) * 5 / 4)
    message = fails_with(check_rkd_distance_loss, lambda s, t: rkd_distance(s, t, entries="pairs"),
                         r"b\(b-1\) pairs i != j only", r"b/\(b-1\) times the reference implementations'",
                         r"5/4 for a batch of 5", r"whole b x b matrices", "zeros of the diagonal included",
                         "mu stays over the pairs i != j")
    assert "No classic mistake" not in message and "mistakes" not in message
    fails_with(check_rkd_distance_loss, lambda s, t: rkd_distance(s, t, entries="pairs", crit=F.mse_loss),
               "2 mistakes", r"b\(b-1\) pairs i != j only", "Huber")


def test_rkd_distance_mean_with_the_diagonal_is_told_apart_from_the_reduction():
    """mu over all b^2 entries (the zeros included) is the normalisation mistake, alone; with the loss also over the
    pairs only, both mistakes are named."""
    diag = fails_with(check_rkd_distance_loss, lambda s, t: rkd_distance(s, t, mean="all"), "mean distance mu "
                      "includes the zeros of the diagonal", r"d\[d > 0\]\.mean\(\)")
    assert "mistakes" not in diag and "b(b-1) pairs i != j only" not in diag and "sums over" not in diag
    fails_with(check_rkd_distance_loss, lambda s, t: rkd_distance(s, t, mean="all", entries="pairs"),
               "2 mistakes", "includes the zeros of the diagonal", r"b\(b-1\) pairs i != j only")
    fails_with(check_rkd_distance_loss, lambda s, t: rkd_distance(s, t, mean="all", reduction="sum"),
               "2 mistakes", "includes the zeros of the diagonal", "sums over the pairs")


def test_rkd_distance_detached_student_is_named():
    fails_with(check_rkd_distance_loss, lambda s, t: losses.rkd_distance_loss(s.detach(), t), "no gradient")


# ------------------------------------------------------------------ RKD angles


def angles(e, pattern="ijd,kjd->ijk", normalise=True, sign=1.0):
    diff = e[:, None, :] - e[None, :, :]  # diff[i, j] = t_i - t_j
    if normalise == "naive":
        diff = diff / diff.norm(dim=-1, keepdim=True)
    elif normalise:
        diff = F.normalize(diff, p=2, dim=-1)
    return sign * torch.einsum(pattern, diff, diff)


def test_rkd_angles_reference_passes(capsys):
    check_rkd_angles(angles)
    assert "✓" in capsys.readouterr().out


@pytest.mark.parametrize("fn, patterns", [
    (lambda e: torch.bmm(*(lambda u: (u, u.transpose(1, 2)))(F.normalize(e[:, None] - e[None], dim=-1))),
     ["angle at t_i", "middle point"]),
    (lambda e: angles(e, "ikd,jkd->ijk"), ["angle at t_k", "middle point"]),
    (lambda e: angles(e, "ijd,jkd->ijk"), ["wrong way"]),
    (lambda e: angles(e, sign=-1.0), ["wrong way"]),
    (lambda e: angles(e, normalise=False), ["not normalised", "dot products"]),
    (lambda e: torch.acos(angles(e).clamp(-1, 1)), ["acos"]),
    (lambda e: angles(e, normalise="naive"), ["NaN", "F.normalize"]),
    (lambda e: angles(e)[:, :, 0], ["\\(N, N, N\\)"]),
])
def test_rkd_angles_mistakes_are_named(fn, patterns):
    fails_with(check_rkd_angles, fn, *patterns)


def normalised_over(dim):
    def rkd_angles(e):
        diff = e[:, None, :] - e[None, :, :]
        u = diff / diff.norm(dim=dim, keepdim=True)  # a plain division: no NaN over these dimensions
        return torch.einsum("ijd,kjd->ijk", u, u)
    return rkd_angles


@pytest.mark.parametrize("dim", [0, 1])
def test_rkd_angles_normalised_over_the_wrong_dimension_is_named(dim):
    message = fails_with(check_rkd_angles, normalised_over(dim), f"wrong dimension \\(dim={dim}\\)",
                         "LAST dimension", "dim=-1")
    assert "No classic mistake" not in message
    message = fails_with(check_rkd_angle_loss, lambda s, t: F.smooth_l1_loss(normalised_over(dim)(s),
                                                                             normalised_over(dim)(t)),
                         f"wrong dimension \\(dim={dim}\\)", "dim=-1")
    assert "No classic mistake" not in message


def test_rkd_angles_of_normalised_points_is_named():
    def rkd_angles(e):
        u = F.normalize(e, dim=1)
        diff = u[:, None, :] - u[None, :, :]
        return torch.einsum("ijd,kjd->ijk", diff, diff)
    fails_with(check_rkd_angles, rkd_angles, "normalises the embeddings \\(the points\\)", "difference vectors")


# ------------------------------------------------------------------ RKD angle loss


def test_rkd_angle_loss_reference_and_learner_style_pass(capsys):
    check_rkd_angle_loss(losses.rkd_angle_loss)
    check_rkd_angle_loss(lambda s, t: F.smooth_l1_loss(angles(s), angles(t).detach()))
    assert capsys.readouterr().out.count("✓") == 2


@pytest.mark.parametrize("fn, patterns", [
    (lambda s, t: F.mse_loss(angles(s), angles(t)), ["squared error", "Huber"]),
    (lambda s, t: F.l1_loss(angles(s), angles(t)), ["absolute error", "Huber"]),
    (lambda s, t: F.smooth_l1_loss(angles(s), angles(t), reduction="sum"), ["sums over the triplets"]),
    (lambda s, t: F.smooth_l1_loss(angles(s, normalise=False), angles(t, normalise=False)),
     ["not normalised", "scales"]),
    (lambda s, t: F.smooth_l1_loss(angles(s).detach(), angles(t)), ["no gradient"]),
])
def test_rkd_angle_loss_mistakes_are_named(fn, patterns):
    fails_with(check_rkd_angle_loss, fn, *patterns)


# ------------------------------------------------------------------ similarity matrix


def test_similarity_matrix_reference_and_learner_style_pass(capsys):
    check_similarity_matrix(losses.similarity_matrix)

    def similarity_matrix(feature):
        q = feature.view(feature.shape[0], -1)
        g = torch.mm(q, q.t())
        return g / g.norm(dim=1, keepdim=True)

    check_similarity_matrix(similarity_matrix)
    assert capsys.readouterr().out.count("✓") == 2


def gram(f):
    q = f.flatten(1)
    return q @ q.t()


@pytest.mark.parametrize("fn, patterns", [
    (gram, ["rows of G = Q Q\\^T are not normalised"]),
    (lambda f: (lambda q: q @ q.t())(F.normalize(f.flatten(1), dim=1)), ["cosine-similarity"]),
    (lambda f: F.normalize(gram(f), dim=0), ["columns"]),
    (lambda f: F.normalize(gram(f), p=1, dim=1), ["L1 norm"]),
    (lambda f: torch.softmax(gram(f), dim=1), ["softmax"]),
    (lambda f: gram(f) / gram(f).norm(), ["one norm"]),
    (lambda f: F.normalize(f.flatten(1).t() @ f.flatten(1), dim=1), ["Q\\^T Q", "\\(b, b\\)"]),
    (lambda f: F.normalize(f @ f.transpose(0, 1), dim=1), ["4-D", "flatten"]),
])
def test_similarity_matrix_mistakes_are_named(fn, patterns):
    fails_with(check_similarity_matrix, fn, *patterns)


@pytest.mark.parametrize("fn, patterns", [
    (lambda f: F.normalize(f @ f.transpose(-1, -2), dim=1), [r"shape \(5, 3, 2, 2\)", "4-D", "flatten\\(1\\)"]),
    (lambda f: F.normalize(f.reshape(-1, f.shape[-1]) @ f.reshape(-1, f.shape[-1]).t(), dim=1),
     [r"shape \(30, 30\)", "4-D", "flatten\\(1\\)"]),
    (lambda f: F.normalize(gram(f.mean((2, 3)) if f.dim() == 4 else f), dim=1),
     ["averages each feature map over its positions", "flatten\\(1\\)"]),
])
def test_similarity_matrix_4d_not_flattened_is_named(fn, patterns):
    message = fails_with(check_similarity_matrix, fn, *patterns)
    assert "No classic mistake" not in message


def sp_without_flatten(s, t):
    g = lambda f: F.normalize(f @ f.transpose(-1, -2), dim=1)  # noqa: E731 - (b, b) for 2-D features only
    return (g(t) - g(s)).pow(2).sum() / len(s) ** 2


@pytest.mark.parametrize("fn, patterns", [
    (sp_without_flatten, ["raised RuntimeError", "4-D", "flatten\\(1\\)", "similarity_matrix"]),
    (lambda s, t: (G(t.mean((2, 3)) if t.dim() == 4 else t) - G(s.mean((2, 3)) if s.dim() == 4 else s))
     .pow(2).sum() / len(s) ** 2, ["averages each feature map over its positions"]),
])
def test_sp_loss_4d_not_flattened_is_named(fn, patterns):
    message = fails_with(check_similarity_preserving_loss, fn, *patterns)
    assert "No classic mistake" not in message


# ------------------------------------------------------------------ SP loss

G = losses.similarity_matrix


def test_sp_loss_reference_and_learner_styles_pass(capsys):
    check_similarity_preserving_loss(losses.similarity_preserving_loss)
    check_similarity_preserving_loss(lambda s, t: F.mse_loss(G(s), G(t)))  # the mean over b x b entries
    check_similarity_preserving_loss(lambda s, t: torch.linalg.matrix_norm(G(t) - G(s)) ** 2 / len(s) ** 2)
    assert capsys.readouterr().out.count("✓") == 3


@pytest.mark.parametrize("fn, patterns", [
    (lambda s, t: (G(t) - G(s)).pow(2).sum(), ["1/b\\^2 is missing"]),
    (lambda s, t: (G(t) - G(s)).pow(2).sum() / len(s), ["divides by b, not b\\^2"]),
    (lambda s, t: (G(t) - G(s)).norm() / len(s) ** 2, ["not its square"]),
    (lambda s, t: (G(t) - G(s)).abs().sum() / len(s) ** 2, ["absolute differences"]),
    (lambda s, t: (gram(t) - gram(s)).pow(2).sum() / len(s) ** 2, ["not row-normalised"]),
    (lambda s, t: (gram(t) - gram(s)).pow(2).sum(), ["not row-normalised", "1/b\\^2"]),
    (lambda s, t: (G(t) - G(s)).pow(2).sum(1) / len(s), ["one value per example"]),
    (lambda s, t: (G(t) - G(s.detach())).pow(2).mean(), ["no gradient"]),
])
def test_sp_loss_mistakes_are_named(fn, patterns):
    fails_with(check_similarity_preserving_loss, fn, *patterns)


# ------------------------------------------------------------------ the lesson's figure helper


def test_matrix_row_shares_one_colour_scale(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from kdcourse.plots import matrix_row

    mats = [torch.zeros(6, 6), torch.ones(6, 6) * 0.5, torch.eye(6) * 2.0]
    fig = matrix_row(mats, ["a", "b", "c"], suptitle="gaps", boundaries=[3], colorbar_label="|diff|")
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 3
    assert all(im.get_clim() == (0.0, 2.0) for im in images)
    assert [ax.get_title() for ax in fig.axes[:3]] == ["a", "b", "c"]
    fig.savefig(tmp_path / "row.png")
    with pytest.raises(ValueError, match="3 matrices but 2 titles"):
        matrix_row(mats, ["a", "b"])
