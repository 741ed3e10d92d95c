"""Unit tests of kdcourse.models."""

import pytest
import torch

from kdcourse.models import (
    MLP,
    CifarCNN,
    CifarResNet,
    DigitsCNN,
    count_parameters,
    feature_extractor,
    feature_names,
    measure_latency,
)


@pytest.mark.parametrize("model, shape", [
    (MLP(hidden=(32, 16)), (1, 8, 8)),
    (DigitsCNN(4), (1, 8, 8)),
    (CifarCNN(), (3, 32, 32)),
    (CifarResNet((8, 16, 32), blocks=1), (3, 32, 32)),
])
def test_forward_and_features(model, shape):
    x = torch.randn(3, *shape)
    model.eval()
    names = [n for n in feature_names(model) if n != "head"]
    out = feature_extractor(model, names)(x)
    assert set(out) == {*names, "logits"}
    assert torch.allclose(out["logits"], model(x), atol=1e-6)
    assert out["logits"].shape == (3, 10)
    assert out["embedding"].dim() == 2


def test_feature_extractor_shares_parameters_and_spatial_sizes():
    model = DigitsCNN(4)
    fx = feature_extractor(model, ["layer1", "layer2", "layer3"])
    assert fx.get_submodule("layer2.0").weight is model.layer2[0].weight
    out = fx(torch.randn(2, 1, 8, 8))
    assert out["layer1"].shape == (2, 4, 8, 8)
    assert out["layer2"].shape == (2, 8, 4, 4)
    assert out["layer3"].shape == (2, 16, 2, 2)


def test_unknown_feature_is_explained():
    with pytest.raises(ValueError, match="choose among"):
        feature_extractor(MLP(), ["layer2"])


def test_parameter_counts():
    # 64*8 + 8 + 8*10 + 10
    assert count_parameters(MLP(hidden=8)) == 64 * 8 + 8 + 8 * 10 + 10
    assert 20_000 < count_parameters(CifarCNN()) < 30_000
    frozen = MLP(hidden=8).requires_grad_(False)
    assert count_parameters(frozen, trainable_only=True) == 0


def test_measure_latency_restores_mode():
    model = DigitsCNN(4).train()
    seconds = measure_latency(model, (1, 8, 8), batch_size=4, repeats=3, warmup=1)
    assert 0 < seconds < 1
    assert model.training


def test_bad_sizes():
    with pytest.raises(ValueError):
        MLP(hidden=())
    with pytest.raises(ValueError):
        DigitsCNN(0)


def test_speed_net_shapes_and_whitened_stem():
    from kdcourse.models import CifarSpeedNet, whiten_stem_

    torch.manual_seed(0)
    model = CifarSpeedNet()
    images = torch.randn(16, 3, 32, 32) * torch.tensor([1.0, 2.0, 0.5]).view(1, 3, 1, 1)
    whiten_stem_(model, images)
    out = feature_extractor(model.eval(), ["stem", "layer1", "layer2", "layer3", "embedding"])(images[:2])
    assert {k: tuple(v.shape[1:]) for k, v in out.items()} == {
        "stem": (24, 31, 31), "layer1": (64, 15, 15), "layer2": (256, 7, 7), "layer3": (256, 3, 3),
        "embedding": (256,), "logits": (10,)}
    # the 12 filters whiten the images' 2x2 patches (unit covariance); the other 12 are their negatives
    patches = images.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 12)
    w = model.stem[0].weight
    z = (patches - patches.mean(0)) @ w[:12].reshape(12, 12).T
    assert torch.allclose(torch.cov(z.T), torch.eye(12), atol=2e-2)
    assert torch.equal(w[12:], -w[:12]) and not w.requires_grad and model.stem[0].bias.requires_grad
