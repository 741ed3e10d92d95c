"""The teacher cache for augmented training (kdcourse.views) and train(teacher_views=...)."""

import re
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from kdcourse.distill import LossTerm, cross_entropy_term, seed_everything, train
from kdcourse.losses import kd_loss
from kdcourse.models import CifarCNN
from kdcourse.views import (
    DEFAULT_VIEWS,
    TEN_CROP,
    TeacherViews,
    ViewRecipe,
    apply_views,
    cached_teacher_views,
    teacher_view_outputs,
    views_cache_key,
)

SMALL = ViewRecipe(pad=2, offsets=((2, 2), (0, 4), (4, 1)), flips=(False, True))


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("KDCOURSE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def tiny_net(seed):
    seed_everything(seed)
    return CifarCNN((4, 8, 8))


@pytest.fixture
def tiny():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 3, 16, 16, generator=g)
    y = torch.randint(0, 10, (48,), generator=g)
    return TensorDataset(x, y)


def naive_view(img, recipe, v):
    (dy, dx), flipped = recipe.offsets[v // len(recipe.flips)], recipe.flips[v % len(recipe.flips)]
    p, (_, h, w) = recipe.pad, img.shape
    out = F.pad(img, (p, p, p, p))[:, dy:dy + h, dx:dx + w]
    return out.flip(2) if flipped else out


# ------------------------------------------------------------------ recipes and views


def test_recipe_counts_names_and_validates():
    assert len(DEFAULT_VIEWS) in (8, 16) and len(TEN_CROP) == 10 and len(SMALL) == 6
    assert DEFAULT_VIEWS.offsets == ((2, 2), (2, 6), (6, 2), (6, 6))
    assert SMALL.view(3) == ((0, 4), True) and SMALL.view(4) == ((4, 1), False)
    assert "6 views" in SMALL.describe()
    assert SMALL.key() == ViewRecipe(pad=2, offsets=[[2, 2], [0, 4], [4, 1]], flips=[0, 1]).key()
    assert len({DEFAULT_VIEWS.key(), TEN_CROP.key(), SMALL.key()}) == 3
    with pytest.raises(ValueError, match="0..8"):
        ViewRecipe(offsets=((0, 9),))
    with pytest.raises(ValueError):
        ViewRecipe(offsets=(), flips=(False,))


def test_apply_views_matches_a_naive_crop_and_flip():
    x = torch.randn(12, 3, 7, 9)
    ids = torch.arange(12) % len(SMALL)
    out = apply_views(x, ids, SMALL)
    assert out.shape == x.shape and out.is_contiguous()
    for i in range(12):
        assert torch.equal(out[i], naive_view(x[i], SMALL, int(ids[i])))
    assert torch.equal(apply_views(x, ids, SMALL), out)  # deterministic
    identity = ViewRecipe(pad=3, offsets=((3, 3),), flips=(False,))
    assert torch.equal(apply_views(x, torch.zeros(12, dtype=torch.long), identity), x)
    with pytest.raises(ValueError, match="0..5"):
        apply_views(x, torch.full((12,), 6), SMALL)
    with pytest.raises(ValueError, match="one per image"):
        apply_views(x, torch.zeros(5, dtype=torch.long), SMALL)


def test_teacher_view_outputs_is_every_view_in_eval_mode():
    teacher = tiny_net(1).train()
    x = torch.randn(10, 3, 16, 16)
    out = teacher_view_outputs(teacher, x, SMALL, batch_size=4)
    assert out.shape == (len(SMALL), 10, 10) and out.dtype == torch.float32 and not out.requires_grad
    assert teacher.training  # restored
    teacher.eval()
    with torch.no_grad():
        for v in range(len(SMALL)):
            expected = teacher(apply_views(x, torch.full((10,), v), SMALL))
            torch.testing.assert_close(out[v], expected, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ the disk cache


def test_cache_gives_the_fresh_result_and_keys_differ(cache_dir):
    teacher = tiny_net(1)
    x = torch.randn(10, 3, 16, 16)
    fresh, hit = cached_teacher_views(teacher, x, SMALL, teacher_sha256="abc")
    assert not hit
    again, hit = cached_teacher_views(teacher, x, SMALL, teacher_sha256="abc")
    assert hit and torch.equal(again, fresh)
    files = sorted(p.name for p in cache_dir.iterdir())
    assert len(files) == 1 and files[0].startswith("teacher-views-") and files[0].endswith(".pt")
    key = views_cache_key("abc", x, SMALL)
    assert key in files[0]
    assert views_cache_key("abc", x, TEN_CROP) != key
    assert views_cache_key("abd", x, SMALL) != key
    x2 = x.clone()
    x2[0, 0, 0, 0] += 1
    assert views_cache_key("abc", x2, SMALL) != key
    assert views_cache_key("abc", x[:9], SMALL) != key
    cached_teacher_views(teacher, x, SMALL, teacher_sha256="other", cache=False)
    assert len(list(cache_dir.iterdir())) == 1  # cache=False writes nothing


@pytest.mark.parametrize("damage", ["truncated", "random bytes", "foreign", "wrong shape", "non-finite"])
def test_a_damaged_cache_file_warns_and_is_rebuilt(cache_dir, damage):
    teacher = tiny_net(1)
    x = torch.randn(6, 3, 16, 16)
    fresh, _ = cached_teacher_views(teacher, x, SMALL, teacher_sha256="abc")
    (path,) = cache_dir.iterdir()
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "random bytes":
        path.write_bytes(torch.randint(0, 256, (3000,), generator=torch.Generator().manual_seed(0))
                         .to(torch.uint8).numpy().tobytes())
    elif damage == "foreign":
        torch.save({"weights": torch.zeros(3)}, path)
    elif damage == "wrong shape":
        torch.save({"logits": fresh[:, :3], "recipe": SMALL.key()}, path)
    else:
        torch.save({"logits": fresh.clone().fill_(float("nan")), "recipe": SMALL.key()}, path)
    with pytest.warns(RuntimeWarning, match=r"cache file .*teacher-views-.* was unreadable .*; recomputing"):
        rebuilt, hit = cached_teacher_views(teacher, x, SMALL, teacher_sha256="abc")
    assert not hit and torch.equal(rebuilt, fresh)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again, hit = cached_teacher_views(teacher, x, SMALL, teacher_sha256="abc")  # overwritten
    assert hit and torch.equal(again, fresh)
    assert [p.name for p in cache_dir.iterdir()] == [path.name]  # no temporary file left


def test_teacher_views_draw_inputs_targets():
    logits = torch.randn(len(SMALL), 5, 10)
    views = TeacherViews(SMALL, logits)
    assert views.num_views == 6 and views.num_examples == 5
    a = views.draw(1000, torch.Generator().manual_seed(3))
    assert torch.equal(a, views.draw(1000, torch.Generator().manual_seed(3)))
    assert a.dtype == torch.long and set(a.tolist()) == set(range(6))
    idx, v = torch.tensor([4, 0, 2]), torch.tensor([5, 1, 1])
    assert torch.equal(views.targets(idx, v)["logits"], torch.stack([logits[5, 4], logits[1, 0], logits[1, 2]]))
    x = torch.randn(3, 3, 8, 8)
    assert torch.equal(views.inputs(x, v), apply_views(x, v, SMALL))
    with pytest.raises(ValueError, match="no teacher logits"):
        TeacherViews(SMALL).targets(idx, v)
    with pytest.raises(ValueError, match="K=6"):
        TeacherViews(SMALL, torch.randn(4, 5, 10))


# ------------------------------------------------------------------ train(teacher_views=...)


def recording_kd_terms(record, T=4.0, alpha=0.9):
    def kd(s, t, y):
        record.append(t["logits"].detach().clone())
        return kd_loss(s["logits"], t["logits"], T)

    return [cross_entropy_term(1 - alpha), LossTerm("kd", alpha, kd)]


def record_inputs(model, store):
    return model.register_forward_pre_hook(lambda m, args: store.append(args[0].detach().clone()))


def test_kd_with_teacher_views_trains_and_repeats(tiny):
    teacher = tiny_net(1)
    views = TeacherViews.from_teacher(teacher, tiny.tensors[0], SMALL, teacher_sha256="t1")
    runs = []
    for _ in range(2):
        student = tiny_net(2)
        h = train(student, tiny, teacher=teacher, method="kd", teacher_views=views, epochs=3, batch_size=16,
                  seed=5, progress=False)
        runs.append((h.train_loss, h.parts, [p.clone() for p in student.parameters()]))
    assert all(torch.isfinite(torch.tensor(v)) for v in runs[0][0]) and set(runs[0][1]) == {"ce", "kd"}
    assert runs[0][0] == runs[1][0] and runs[0][1] == runs[1][1]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][2], runs[1][2]))
    other = train(tiny_net(2), tiny, teacher=teacher, method="kd", teacher_views=views, epochs=3, batch_size=16,
                  seed=6, progress=False)
    assert other.train_loss != runs[0][0]


def test_targets_are_the_teacher_on_the_exact_batch_the_student_saw(tiny):
    teacher = tiny_net(1)
    x, _ = tiny.tensors
    views = TeacherViews.from_teacher(teacher, x, SMALL)
    student = tiny_net(2)
    seen, targets, teacher_calls = [], [], []
    hooks = [record_inputs(student, seen), teacher.register_forward_hook(lambda *a: teacher_calls.append(1))]
    try:
        train(student, tiny, teacher=teacher, terms=recording_kd_terms(targets), method="kd",
              teacher_views=views, epochs=2, batch_size=16, progress=False)
    finally:
        for h in hooks:
            h.remove()
    assert not teacher_calls  # a cache read, never a teacher pass
    assert len(seen) == len(targets) == 2 * 3
    every_view = torch.stack([apply_views(x, torch.full((len(x),), v), SMALL) for v in range(len(SMALL))])
    flat = every_view.flatten(2)  # (K, N, pixels)
    drawn = set()
    teacher.eval()
    with torch.no_grad():
        for xb, t in zip(seen, targets):
            torch.testing.assert_close(t, teacher(xb), rtol=1e-5, atol=1e-5)
            # every row the student saw is one of the K fixed views of a training image
            match = (flat[:, :, None, :] == xb.flatten(1)[None, None]).all(-1)  # (K, N, B)
            assert bool(match.any(0).any(0).all())
            drawn.update(match.nonzero()[:, 0].tolist())
    assert len(drawn) > 1  # the views vary


def test_a_baseline_sees_the_same_views_without_a_teacher(tiny):
    teacher = tiny_net(1)
    views = TeacherViews.from_teacher(teacher, tiny.tensors[0], SMALL)
    seen_kd, seen_base = [], []
    for store, kwargs in ((seen_kd, {"teacher": teacher, "method": "kd", "teacher_views": views}),
                          (seen_base, {"method": "baseline", "teacher_views": TeacherViews(SMALL)})):
        student = tiny_net(2)
        hook = record_inputs(student, store)
        try:
            train(student, tiny, epochs=2, batch_size=16, seed=3, progress=False, **kwargs)
        finally:
            hook.remove()
    assert len(seen_kd) == len(seen_base) == 6
    assert all(torch.equal(a, b) for a, b in zip(seen_kd, seen_base))
    raw = tiny.tensors[0].flatten(1)
    assert not all(bool((raw[:, None] == b.flatten(1)[None]).all(-1).any(0).all()) for b in seen_base)


def test_teacher_views_errors(tiny):
    teacher = tiny_net(1)
    x, _ = tiny.tensors
    views = TeacherViews.from_teacher(teacher, x, SMALL)
    common = dict(teacher=teacher, epochs=1, progress=False)
    with pytest.raises(ValueError, match="augment"):
        train(tiny_net(2), tiny, method="kd", teacher_views=views, augment=lambda b: b, **common)
    with pytest.raises(ValueError, match="teacher_cache"):
        train(tiny_net(2), tiny, method="kd", teacher_views=views, teacher_cache={"logits": views.logits[0]},
              **common)
    for method in ("at", "kd+sp", "hint"):
        with pytest.raises(ValueError, match=re.escape(f"method '{method}' reads the teacher's features")):
            train(tiny_net(2), tiny, method=method, teacher_views=views, **common)
    small = TensorDataset(*(t[:20] for t in tiny.tensors))
    with pytest.raises(ValueError, match="for 48 images"):
        train(tiny_net(2), small, method="kd", teacher_views=views, **common)
    with pytest.raises(ValueError, match="for no images"):
        train(tiny_net(2), tiny, method="kd", teacher_views=TeacherViews(SMALL), **common)
