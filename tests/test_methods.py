"""The method registry (kdcourse.methods): sums parsed in one place, layer choices as
(student layer, teacher layer) pairs, terms that read each side by its own names."""

import pytest
import torch

from kdcourse import losses
from kdcourse.distill import Distiller, train
from kdcourse.methods import REGISTRY, LossTerm, layer_pairs, method_terms, parse_method
from kdcourse.models import CifarCNN, CifarResNet, DigitsCNN, feature_extractor


def test_parse_method_splits_sums_once():
    assert parse_method("kd") == ("kd",)
    assert parse_method(" KD + at ") == ("kd", "at")
    assert parse_method("kd+at+kd") == ("kd", "at")  # a repeated part counts once
    with pytest.raises(ValueError, match="unknown method 'kd\\+crd'"):
        parse_method("kd+crd")
    with pytest.raises(ValueError, match="unknown method"):
        parse_method("+")
    with pytest.raises(ValueError, match="'pseudo' replaces the label loss"):
        parse_method("kd+pseudo")
    with pytest.raises(TypeError, match="a name such as 'kd'"):
        parse_method(["kd"])


def test_layer_pairs_accepts_names_dicts_and_pairs():
    assert layer_pairs("layer2") == (("layer2", "layer2"),)
    assert layer_pairs({"layer1": "layer2", "layer2": "layer3"}) == (("layer1", "layer2"), ("layer2", "layer3"))
    assert layer_pairs([("layer1", "layer2"), "layer3"]) == (("layer1", "layer2"), ("layer3", "layer3"))
    with pytest.raises(ValueError, match="at least one"):
        layer_pairs({})
    with pytest.raises(ValueError, match="pair"):
        layer_pairs([("a", "b", "c")])
    with pytest.raises(TypeError, match="student: teacher"):
        layer_pairs(3)


def test_a_term_names_each_side():
    term = LossTerm("x", 1.0, lambda s, t, y: s["a"].sum(), student_features=("a",), teacher_features=("b",))
    assert (term.student_features, term.teacher_features) == (("a",), ("b",))
    same = LossTerm("y", 1.0, lambda s, t, y: s["a"].sum(), features=("a",))
    assert same.student_features == same.teacher_features == ("a",)


def test_feature_methods_read_the_layers_they_are_given():
    torch.manual_seed(0)
    student, teacher = CifarCNN((8, 16, 32)), CifarResNet((8, 8, 16), blocks=1)
    x = torch.randn(2, 3, 32, 32)
    hint = method_terms("hint", student=student, teacher=teacher, sample_input=x,
                        layers={"hint": {"layer1": "layer2"}})[1]  # 16x16 both: a 1x1 conv regressor 8 -> 8
    assert (hint.student_features, hint.teacher_features) == (("layer1",), ("layer2",))
    assert isinstance(hint.module, torch.nn.Conv2d)
    at = method_terms("at", student=student, teacher=teacher, layers={"at": {"layer1": "layer2", "layer2": "layer3"}},
                      weights={"at": 7.0})[1]
    assert at.weight == 7.0 and at.teacher_features == ("layer2", "layer3")
    s_out = dict(feature_extractor(student, ["layer1", "layer2"])(x))
    t_out = dict(feature_extractor(teacher, ["layer2", "layer3"])(x))
    expected = (losses.attention_transfer_loss(s_out["layer1"], t_out["layer2"])
                + losses.attention_transfer_loss(s_out["layer2"], t_out["layer3"]))
    assert torch.allclose(at.fn(s_out, t_out, None), expected)
    with pytest.raises(ValueError, match="sp reads one"):
        method_terms("sp", student=student, teacher=teacher, layers={"sp": ["embedding", "layer3"]})


def test_layers_per_method_win_over_feature():
    s, t = DigitsCNN(4), DigitsCNN(8)
    x = torch.randn(2, 1, 8, 8)
    terms = method_terms("hint+at", student=s, teacher=t, sample_input=x, feature="layer3", layers={"at": "layer2"})
    assert [(term.name, term.student_features) for term in terms[1:]] == [("hint", ("layer3",)), ("at", ("layer2",))]


def test_train_with_differently_named_layers():
    """train() caches the teacher's features by the teacher's names and the student reads its own."""
    torch.manual_seed(0)
    student, teacher = CifarCNN((4, 8, 8)), CifarResNet((4, 4, 8), blocks=1)
    data = torch.utils.data.TensorDataset(torch.randn(16, 3, 32, 32), torch.arange(16) % 10)
    history = train(student, data, teacher=teacher, method="kd+at", layers={"at": {"layer1": "layer2"}},
                    epochs=1, batch_size=8, progress=False)
    assert set(history.parts) == {"ce", "kd", "at"}
    distiller = Distiller(student, teacher, method_terms("at", student=student, teacher=teacher,
                                                         layers={"at": {"layer1": "layer2"}}))
    assert (distiller.student_features, distiller.teacher_features) == (("layer1",), ("layer2",))


def test_every_entry_builds_its_terms():
    s, t = DigitsCNN(4), DigitsCNN(8)
    x = torch.randn(2, 1, 8, 8)
    for name, entry in REGISTRY.items():
        terms = method_terms(name, student=s, teacher=t, sample_input=x)
        assert tuple(term.name for term in terms) == entry.term_names
        assert any(term.needs_teacher for term in terms) == entry.needs_teacher
