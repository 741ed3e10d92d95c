"""The training config (kdcourse.distill.TrainConfig) and the one study driver (kdcourse.study)."""

import pytest
import torch
from torch.utils.data import TensorDataset

from kdcourse.distill import TrainConfig, evaluate, seed_everything, train
from kdcourse.models import DigitsCNN
from kdcourse.study import RunPlan, Runs, StudyResult, paired_differences, paired_gain, summarize


def _data(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 1, 8, 8, generator=g), torch.arange(n) % 10)


@pytest.fixture(scope="module")
def teacher():
    seed_everything(0)
    model = DigitsCNN(8)
    train(model, _data(), epochs=2, progress=False)
    return model


# ------------------------------------------------------------------ TrainConfig


def test_config_and_keywords_are_the_same_run():
    data = _data()
    seed_everything(1)
    a = DigitsCNN(4)
    ha = train(a, data, TrainConfig(epochs=2, lr=3e-3, seed=1), progress=False)
    seed_everything(1)
    b = DigitsCNN(4)
    hb = train(b, data, epochs=2, lr=3e-3, seed=1, progress=False)
    assert ha.train_loss == hb.train_loss
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_keywords_replace_the_config_fields():
    config = TrainConfig(method="kd", epochs=3)
    assert config.replace(epochs=5) == TrainConfig(method="kd", epochs=5)
    assert config.replace() is config
    with pytest.raises(TypeError, match="unknown training setting\\(s\\) \\['epoch'\\]"):
        config.replace(epoch=5)
    with pytest.raises(TypeError, match="unknown training setting"):
        train(DigitsCNN(4), _data(), epoch=5)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="must be positive"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="must be positive"):
        TrainConfig(lr=-1.0)
    with pytest.raises(ValueError, match="'adam' or 'sgd'"):
        TrainConfig(optimizer="rmsprop")


# ------------------------------------------------------------------ the driver


def _runs(teacher, keep=None):
    data, test = _data(), _data(30, seed=5)
    config = TrainConfig(epochs=2, lr=3e-3)
    plans = []

    def plan(method, seed, T=4.0):
        plans.append((method, seed, T))
        return RunPlan(data, config.replace(method=method, T=T), teacher if method != "baseline" else None)

    return Runs(lambda: DigitsCNN(4), plan, lambda s, h: evaluate(s, test), keep_students=keep), plans, data, test


def test_study_pairs_runs_by_seed_and_summarises(teacher):
    runs, plans, data, test = _runs(teacher, keep="first")
    result = runs.study(["baseline", "kd"], seeds=3, progress=False)
    assert isinstance(result, StudyResult) and list(result.methods) == ["baseline", "kd"]
    kd = result["kd"]
    assert [r.seed for r in kd.runs] == [0, 1, 2] and len(kd.histories) == 3
    assert kd.mean == pytest.approx(sum(kd.scores) / 3)
    assert kd.std == pytest.approx(torch.tensor(kd.scores).std(unbiased=True).item(), abs=1e-12)
    gain = result.paired("kd", "baseline")
    assert gain["runs"] == pytest.approx([a - b for a, b in zip(kd.scores, result["baseline"].scores)])
    summaries = result.summaries()
    assert set(summaries["kd"]) == {"mean", "std", "runs", "params", "seconds", "images_per_second"}
    run = kd.runs[0]  # the training set's images of every epoch over the epochs' step time
    assert run.images_per_second == pytest.approx(len(data) * 2 / sum(run.history.epoch_seconds))
    assert paired_differences(summaries, "kd")["runs"] == pytest.approx(gain["runs"])
    # only the first seed's student is kept; the histories hold no weights
    assert kd.runs[0].student is not None and kd.runs[1].student is None
    assert all(h.student is None for h in kd.histories)
    # a run is the one you would get by hand: same seed, same fresh student, same config
    seed_everything(1)
    by_hand = DigitsCNN(4)
    train(by_hand, data, TrainConfig(method="kd", epochs=2, lr=3e-3, seed=1), teacher=teacher, progress=False)
    assert kd.scores[1] == evaluate(by_hand, test)


def test_runs_are_memoised_on_method_seed_and_options(teacher):
    runs, plans, _, _ = _runs(teacher)
    first = runs.run("kd", 0)
    assert runs.run("kd", 0) is first and len(plans) == 1
    other = runs.run("kd", 0, T=2.0)  # another option: another run
    assert other is not first and len(plans) == 2
    runs.study(["kd"], seeds=[0], progress=False, T=2.0)
    assert len(plans) == 2  # the sweep's run came back from the memo
    kept = runs.run("kd", 0, keep=True)  # asked with the model this time: trained again, and kept
    assert kept.student is not None and kept.score == first.score


def test_driver_rejects_bad_arguments(teacher):
    runs, _, _, _ = _runs(teacher)
    with pytest.raises(ValueError, match="seeds must be >= 1"):
        runs.study(["kd"], seeds=0)
    with pytest.raises(ValueError, match="keep_students"):
        Runs(lambda: DigitsCNN(4), None, None, keep_students="some")


def test_summarize_uses_the_sample_std():
    s = summarize([0.5, 0.7, 0.9])
    assert s["mean"] == pytest.approx(0.7) and s["std"] == pytest.approx(0.2)
    assert summarize([0.5])["std"] == 0.0


def test_paired_gain_is_the_mean_and_sample_std_of_per_seed_differences():
    mean, std = paired_gain([0.452, 0.471, 0.418], [0.372, 0.409, 0.401])
    assert mean == pytest.approx(0.053) and std == pytest.approx(0.0324499615, rel=1e-6)
    with pytest.raises(ValueError, match="pair the runs by seed"):
        paired_gain([0.5, 0.6], [0.5])
    with pytest.raises(ValueError, match="at least 2 seeds"):
        paired_gain([0.7], [0.6])
