"""Unit tests of the digits loader and the transfer-set helpers."""

import pytest
import torch

from kdcourse.data import hold_out_class, load_digits_data, subset, tensors


def test_digits_split_sizes_scaling_and_determinism():
    d = load_digits_data()
    assert (len(d.train), len(d.val), len(d.test)) == (1077, 270, 450)
    x, y = tensors(d.train)
    assert x.shape == (1077, 64) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0.0 <= x.min() and x.max() <= 1.0
    again = load_digits_data()
    assert torch.equal(again.train.tensors[0], x)
    other = load_digits_data(seed=1)
    assert not torch.equal(other.train.tensors[1], y)
    # stratified: every class in every split
    for split in (d.train, d.val, d.test):
        assert set(split.tensors[1].tolist()) == set(range(10))


def test_digits_images_and_loaders():
    d = load_digits_data(images=True)
    assert d.train.tensors[0].shape[1:] == (1, 8, 8)
    loaders = load_digits_data(loaders=True, batch_size=32)
    xb, yb = next(iter(loaders.train))
    assert xb.shape == (32, 64)
    first = next(iter(load_digits_data(loaders=True, batch_size=32).train))[1]
    assert torch.equal(yb, first)  # seeded shuffling


def test_subset_is_stratified_and_seeded():
    d = load_digits_data()
    s = subset(d.train, 300, seed=0)
    counts = torch.bincount(s.tensors[1], minlength=10)
    assert len(s) == 300 and counts.min() >= 28 and counts.max() <= 32
    assert torch.equal(subset(d.train, 300, seed=0).tensors[0], s.tensors[0])
    assert not torch.equal(subset(d.train, 300, seed=1).tensors[0], s.tensors[0])
    with pytest.raises(ValueError, match="between 1 and"):
        subset(d.train, 5000)


def test_hold_out_class():
    d = load_digits_data()
    no3 = hold_out_class(d.train, 3)
    assert 3 not in no3.tensors[1].tolist()
    assert len(no3) == len(d.train) - int((d.train.tensors[1] == 3).sum())
    with pytest.raises(ValueError, match="does not occur"):
        hold_out_class(no3, 3)


def test_bad_fractions():
    with pytest.raises(ValueError, match="leave some data"):
        load_digits_data(test_fraction=0.6, val_fraction=0.5)
