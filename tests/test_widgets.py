"""The explorers in kdcourse.widgets: pure functions, and sliders that update label and figure."""

import math
import os

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from kdcourse import losses  # noqa: E402
from kdcourse.distill import History  # noqa: E402
from kdcourse.widgets import (  # noqa: E402
    loss_explorer,
    loss_parts,
    sweep_browser,
    sweep_cell,
    temperature_explorer,
    temperature_view,
)

LOGITS = torch.tensor([1.0, 7.0, 0.5, 3.0, -1.0, 0.0, 0.2, 2.0, 4.0, 1.5])
STUDENT = torch.tensor([0.5, 2.0, 0.0, 1.5, 0.0, 0.5, 0.0, 1.0, 1.0, 0.0])


def figures_open():
    return len(plt.get_fignums())


# ------------------------------------------------------------------ temperature


def test_temperature_view_matches_softmax_and_entropy_grows():
    v1 = temperature_view(LOGITS, 1.0)
    assert np.allclose(v1["probs"], torch.softmax(LOGITS, 0).numpy(), atol=1e-6)
    entropies = [temperature_view(LOGITS, T)["entropy"] for T in (0.5, 1, 2, 4, 10, 100)]
    assert all(a < b for a, b in zip(entropies, entropies[1:]))
    assert entropies[-1] == pytest.approx(math.log(10), abs=0.01)
    assert v1["top"] == 1
    assert temperature_view(LOGITS[None], 2.0)["probs"].shape == (10,)  # a (1, C) batch is fine
    with pytest.raises(ValueError, match="ONE example"):
        temperature_view(torch.zeros(3, 10), 1.0)


def test_temperature_explorer_slider_updates_label_and_figure():
    box = temperature_explorer(LOGITS, class_names=[f"d{i}" for i in range(10)], true_class=1)
    slider = box.sliders["T"]
    assert slider.description == "T" and "kd-temperature-slider" in slider._dom_classes
    assert "kd-temperature-label" in box.label._dom_classes
    assert box.label.value.startswith("T = 1.0, entropy = ")
    before = figures_open()
    slider.value = 4.0
    expected = temperature_view(LOGITS, 4.0)
    assert box.view()["entropy"] == pytest.approx(expected["entropy"])
    assert f"T = 4.0, entropy = {expected['entropy']:.2f} nats" in box.label.value
    slider.value = 20.0
    assert "T = 20.0" in box.label.value
    slider.value = 0.75  # the label states the slider's exact value, as its readout does
    assert box.label.value.startswith("T = 0.75, entropy")
    assert figures_open() == before  # each redraw closes its figure


def test_temperature_explorer_rejects_wrong_names():
    with pytest.raises(ValueError, match="class names"):
        temperature_explorer(LOGITS, class_names=["a", "b"])


# ------------------------------------------------------------------ loss parts


def test_loss_parts_match_the_reference():
    parts = loss_parts(STUDENT, LOGITS, 1, T=4.0, alpha=0.9)
    s, t, y = STUDENT[None], LOGITS[None], torch.tensor([1])
    assert parts["total"] == pytest.approx(float(losses.distillation_loss(s, t, y, 4.0, 0.9)), rel=1e-5)
    assert parts["soft"] == pytest.approx(0.9 * float(losses.kd_loss(s, t, 4.0)), rel=1e-5)
    assert parts["hard"] == pytest.approx(0.1 * float(torch.nn.functional.cross_entropy(s, y)), rel=1e-5)
    assert parts["soft"] + parts["hard"] == pytest.approx(parts["total"], rel=1e-5)
    assert loss_parts(STUDENT, LOGITS, 1, T=4.0, alpha=0.0)["soft"] == 0.0
    assert loss_parts(STUDENT, LOGITS, 1, T=4.0, alpha=1.0)["hard"] == 0.0


def test_loss_explorer_sliders_update_label():
    box = loss_explorer(STUDENT, LOGITS, target=1)
    a, T = box.sliders["alpha"], box.sliders["T"]
    assert a.description == "alpha" and T.description == "T"
    assert "kd-loss-alpha-slider" in a._dom_classes and "kd-loss-T-slider" in T._dom_classes
    before = figures_open()
    a.value, T.value = 0.5, 10.0
    expected = loss_parts(STUDENT, LOGITS, 1, T=10.0, alpha=0.5)
    assert box.view()["total"] == pytest.approx(expected["total"])
    assert f"total = {expected['total']:.4f}" in box.label.value
    assert box.label.value.startswith("alpha = 0.50, T = 10.0")
    assert figures_open() == before


# ------------------------------------------------------------------ sweep browser


def fake_history(final, epochs=5, noise=0.0):
    h = History(method="kd")
    h.val_acc = list(np.linspace(0.5, final, epochs) + noise)
    h.train_loss = list(np.linspace(2.0, 0.1, epochs))
    return h


@pytest.fixture
def sweep():
    histories = {(0.0, 1.0): [fake_history(0.90, noise=n) for n in (-0.01, 0.0, 0.01)]}
    for alpha in (0.5, 0.9):
        for T in (1.0, 4.0):
            histories[(alpha, T)] = [fake_history(0.9 + alpha * T / 100, noise=n) for n in (-0.01, 0.01)]
    return histories


def test_sweep_cell_mean_std_and_baseline_fallback(sweep):
    cell = sweep_cell(sweep, 0.9, 4.0)
    assert cell["final"] == pytest.approx(0.936)
    assert cell["final_std"] == pytest.approx(0.01 * 2 ** 0.5)  # the sample std of 0.926 and 0.946
    assert cell["n"] == 2 and cell["mean"].shape == (5,)
    assert sweep_cell(sweep, 0.0, 4.0)["final"] == pytest.approx(0.90)  # T is irrelevant at alpha = 0
    assert sweep_cell({(0.9, 4.0): fake_history(0.8)}, 0.9, 4.0)["n"] == 1  # a single History works
    with pytest.raises(KeyError, match="no runs for alpha=0.7"):
        sweep_cell(sweep, 0.7, 4.0)
    with pytest.raises(ValueError, match="no 'val_acc' values"):
        sweep_cell({(0.9, 4.0): History(method="kd")}, 0.9, 4.0)


def test_sweep_browser_sliders_update_label(sweep):
    box = sweep_browser(sweep)
    a, T = box.sliders["alpha"], box.sliders["T"]
    assert (a.value, T.value) == (0.9, 4.0)  # starts on the best cell
    assert [v for _, v in a.options] == [0.0, 0.5, 0.9] and [v for _, v in T.options] == [1.0, 4.0]
    assert "kd-sweep-alpha-slider" in a._dom_classes and a.description == "alpha"
    before = figures_open()
    a.value, T.value = 0.5, 1.0
    assert box.view()["final"] == pytest.approx(0.905)
    assert box.label.value.startswith("alpha = 0.5, T = 1: final val acc 90.5 %")
    assert "baseline 90.0 %" in box.label.value
    a.value = 0.0
    assert "baseline" not in box.label.value
    assert figures_open() == before


def test_sweep_browser_other_metric(sweep):
    box = sweep_browser(sweep, metric="train_loss")
    assert "final train loss 0.1000" in box.label.value


# ------------------------------------------------------------------ sampling temperature (lesson 09)

SAMPLING = {0.5: {"entropy_bits": 0.8, "teacher_bpc": 1.9, "text": "the the the"},
            1.0: {"entropy_bits": 1.6, "teacher_bpc": 2.6, "text": "if x <b>"},
            1.5: {"entropy_bits": 2.5, "teacher_bpc": 3.9, "text": "qz%"}}


def test_sampling_view_picks_the_row_and_says_it():
    from kdcourse.widgets import sampling_view

    v = sampling_view(SAMPLING, 1.0)
    assert v["teacher_bpc"] == 2.6 and v["temperature"] == 1.0
    assert "1.60 bits" in v["label"] and "2.60 bits" in v["label"]
    with pytest.raises(KeyError, match=r"\[0.5, 1.0, 1.5\]"):
        sampling_view(SAMPLING, 2.0)
    with pytest.raises(ValueError, match="lacks"):
        sampling_view({1.0: {"text": ""}}, 1.0)


def test_sampling_browser_slider_updates_label_text_and_figure():
    from kdcourse.widgets import sampling_browser

    box = sampling_browser(SAMPLING)
    slider = box.sliders["temperature"]
    assert "kd-sampling-slider" in slider._dom_classes and slider.value == 1.0
    assert "&lt;b&gt;" in box.children[3].value  # the sample is escaped, shown as text
    before = figures_open()
    slider.value = 1.5
    assert box.view()["entropy_bits"] == 2.5 and "2.50 bits" in box.label.value
    assert "qz%" in box.children[3].value
    assert figures_open() == before
