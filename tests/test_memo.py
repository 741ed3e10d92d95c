"""The training memo (kdcourse/memo.py): a run it puts back is the run it would have trained."""

import pytest
import torch

from kdcourse import memo
from kdcourse.data import load_digits_data, subset
from kdcourse.distill import Distiller, LossTerm, seed_everything, train
from kdcourse.losses import kd_loss
from kdcourse.models import DigitsCNN


@pytest.fixture
def on(monkeypatch, tmp_path):
    monkeypatch.setenv("KDCOURSE_TRAIN_MEMO", "1")
    monkeypatch.setenv("KDCOURSE_CACHE", str(tmp_path))
    return tmp_path / "train-memo"


@pytest.fixture(scope="module")
def setting():
    d = load_digits_data(images=True)
    seed_everything(0)
    teacher = DigitsCNN(8)
    train(teacher, subset(d.train, 200, seed=1), epochs=2, progress=False)
    return d, subset(d.train, 120, seed=0), teacher.eval()


def student(seed=0):
    seed_everything(seed)
    return DigitsCNN(4)


def run(setting, **options):
    _, small, teacher = setting
    model = student()
    history = train(model, small, teacher=teacher, method="kd", epochs=2, progress=False, **options)
    return model, history, torch.rand(3)  # what the global generator gives next


def no_training(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("trained although the memo holds this run")
    monkeypatch.setattr(Distiller, "compute_loss", fail)


def test_a_run_comes_back_exactly_with_the_generators_where_it_left_them(setting, on, monkeypatch):
    first, h1, after1 = run(setting)
    assert len(list(on.glob("*.pt"))) == 1 and len(list(on.glob("*.sha256"))) == 1
    no_training(monkeypatch)
    second, h2, after2 = run(setting)
    for (k, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), k
    assert h2.to_dict() == h1.to_dict() and h2.student is second and not second.training
    assert torch.equal(after1, after2)


def test_off_by_default(setting, monkeypatch, tmp_path):
    monkeypatch.delenv("KDCOURSE_TRAIN_MEMO", raising=False)
    monkeypatch.setenv("KDCOURSE_CACHE", str(tmp_path))
    run(setting)
    assert not (tmp_path / "train-memo").exists()


def test_anything_that_changes_the_run_changes_its_fingerprint(setting):
    d, small, teacher = setting
    base = memo.fingerprint(student(), small, teacher, 2)
    assert memo.fingerprint(student(), small, teacher, 2) == base  # same inputs, same key
    assert memo.fingerprint(student(seed=1), small, teacher, 2) != base  # other initial weights
    assert memo.fingerprint(student(), subset(d.train, 120, seed=5), teacher, 2) != base  # other data
    assert memo.fingerprint(student(), small, teacher, 3) != base  # another setting

    def term(fn):
        return [LossTerm("kd", 0.9, fn)]

    def mine(s, t, y):
        return kd_loss(s["logits"], t["logits"], 4.0)

    def mine_at_2(s, t, y):
        return kd_loss(s["logits"], t["logits"], 2.0)

    keys = {memo.fingerprint(term(f)) for f in (mine, mine_at_2, lambda s, t, y: mine(s, t, y))}
    assert len(keys) == 3  # a notebook's code counts, constants included
    # the package's code is pinned by its hash, but what a call made of it is not: kd_term's closure over T
    from kdcourse.distill import kd_term
    assert memo.fingerprint(kd_term(0.9, 4.0)) != memo.fingerprint(kd_term(0.9, 2.0))


def test_a_global_a_notebook_function_reads_counts():
    namespace = {"T": 4.0}
    exec("def loss(s, t, y):\n    return helper(s) * T", namespace)
    namespace["helper"] = lambda s: s
    before = memo.fingerprint(namespace["loss"])
    namespace["helper"] = lambda s: s * 2  # what the fallback does: the name now means another function
    assert memo.fingerprint(namespace["loss"]) != before
    namespace["helper"] = lambda s: s
    namespace["T"] = 2.0
    assert memo.fingerprint(namespace["loss"]) != before


def test_an_attribute_is_not_a_global():
    """``losses.kd_loss`` reads the module, not a notebook's own ``kd_loss``: replacing that one (the
    fallback does) leaves the fingerprint alone."""
    namespace = {"losses": __import__("kdcourse.losses").losses}
    exec("def loss(s, t, y):\n    return losses.kd_loss(s, t, 4.0)", namespace)
    before = memo.fingerprint(namespace["loss"])
    namespace["kd_loss"] = lambda s, t, T: 0
    assert memo.fingerprint(namespace["loss"]) == before


def test_what_it_cannot_hash_trains_as_usual(setting, on):
    class Opaque:
        pass

    thing = Opaque()
    terms = [LossTerm("kd", 0.9, lambda s, t, y: kd_loss(s["logits"], t["logits"], 4.0) + 0 * len([thing]))]
    with pytest.raises(memo.Unfingerprintable, match="cannot hash"):
        memo.fingerprint(terms)
    _, small, teacher = setting
    train(student(), small, teacher=teacher, terms=terms, epochs=1, progress=False)
    assert not list(on.glob("*.pt"))


def test_a_corrupt_entry_is_reported_and_trained_again(setting, on):
    first, h1, _ = run(setting)
    (entry,) = on.glob("*.pt")
    entry.write_bytes(entry.read_bytes()[:-10] + b"0123456789")
    with pytest.warns(RuntimeWarning, match="SHA-256 does not match"):
        again, h2, _ = run(setting)
    assert h2.to_dict()["train_loss"] == h1.to_dict()["train_loss"]
    with pytest.warns(RuntimeWarning, match="SHA-256"):  # nothing trusted but a matching pair
        entry.with_suffix(".sha256").write_text("0" * 64)
        run(setting)


def test_the_language_model_loop_is_memoised_the_same_way(on, monkeypatch):
    from kdcourse import lm
    from kdcourse.models import CharTransformer

    stream = torch.randint(0, 97, (2_000,), generator=torch.Generator().manual_seed(0))
    recipe = lm.LMRecipe(steps=5, warmup=2)

    def fresh():
        torch.manual_seed(0)
        return CharTransformer(97, context=8, width=16, depth=1, heads=2)

    first = fresh()
    h1 = lm.train_char_model(first, lm.label_batches(stream, 8, 4), recipe, seed=3)
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda *a, **k: pytest.fail("trained although memoised"))
    second = fresh()
    h2 = lm.train_char_model(second, lm.label_batches(stream, 8, 4), recipe, seed=3)
    assert h2.loss == h1.loss and not second.training
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    assert memo.fingerprint(lm.label_batches(stream, 8, 4)) != memo.fingerprint(lm.label_batches(stream[1:], 8, 4))


def test_the_key_holds_the_versions_of_the_libraries_it_does_not_read(monkeypatch):
    """torchvision, SciPy and scikit-learn code is named, not hashed: another version is another key."""
    names = dict(memo.library_versions())
    assert set(names) == {"torch", "numpy", "torchvision", "scipy", "scikit-learn"}
    assert names["torch"] == torch.__version__.split("+")[0] or names["torch"] == torch.__version__
    before = memo.fingerprint("a run")
    monkeypatch.setattr(memo, "library_versions", lambda: (("scikit-learn", "0.0"),))
    assert memo.fingerprint("a run") != before
