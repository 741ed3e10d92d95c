"""Lesson 09's building blocks: the corpus, the causal transformer, the token losses, generation."""

import math

import pytest
import torch
import torch.nn.functional as F

from kdcourse import lm, text
from kdcourse.losses import token_kd_loss, top_k_kd_loss, top_k_logits
from kdcourse.models import CharTransformer, count_parameters

# ------------------------------------------------------------------ corpus


def test_vocab_is_fixed_and_unknown_is_last():
    assert len(text.VOCAB) == 97 and text.VOCAB[0] == "\n" and text.VOCAB[text.UNKNOWN] == "¤"
    ids = text.encode("if x:\n  ß—")
    assert text.decode(ids) == "if x:\n  ¤¤"


def test_splits_are_deterministic_disjoint_and_cover_the_corpus():
    a, b = text.load_text_data(), text.load_text_data()
    assert torch.equal(a.train, b.train) and a.sha256 == b.sha256
    total = len(a.train) + len(a.val) + len(a.test)
    assert total == len(text.corpus_text())
    assert 0.09 < len(a.val) / total < 0.11 and 0.09 < len(a.test) / total < 0.11


def test_split_rule_on_a_known_text():
    t = "".join(chr(65 + (i // text.BLOCK) % 26) for i in range(10 * text.BLOCK))
    d = text.load_text_data(t)
    assert text.decode(d.val[:3]) == "III" and text.decode(d.test[:3]) == "JJJ"
    assert len(d.train) == 8 * text.BLOCK
    with pytest.raises(ValueError, match="too short"):
        text.load_text_data("short")


def test_windows_shift_targets_by_one():
    stream = torch.arange(11)
    x, y = text.windows(stream, 5)
    assert x.tolist() == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert y.tolist() == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]


# ------------------------------------------------------------------ model


def test_char_transformer_is_causal():
    torch.manual_seed(0)
    model = CharTransformer(97, context=16, width=32, depth=2, heads=4).eval()
    ids = torch.randint(0, 97, (2, 16))
    changed = ids.clone()
    changed[:, 10] = (changed[:, 10] + 1) % 97
    a, b = model(ids), model(changed)
    assert torch.allclose(a[:, :10], b[:, :10], atol=1e-6)  # earlier positions cannot see position 10
    assert not torch.allclose(a[:, 10:], b[:, 10:])
    assert a.shape == (2, 16, 97)


def test_char_transformer_rejects_bad_input():
    model = CharTransformer(97, context=8, width=16, depth=1, heads=2)
    with pytest.raises(ValueError, match="exceed the context"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(batch, length\)"):
        model(torch.zeros(9, dtype=torch.long))
    with pytest.raises(ValueError, match="multiple of heads"):
        CharTransformer(97, width=30, heads=4)


def test_student_size():
    student = CharTransformer(97, 64, **lm.STUDENT)
    assert 15_000 < count_parameters(student) < 30_000


# ------------------------------------------------------------------ token losses


def _logits(seed=0, shape=(3, 4, 6)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * 2, torch.randn(*shape, generator=g) * 2


def test_forward_kl_by_hand():
    s, t = _logits()
    p, q = F.softmax(t / 2, -1), F.softmax(s / 2, -1)
    by_hand = (p * (p.log() - q.log())).sum(-1).mean() * 4
    assert torch.allclose(token_kd_loss(s, t, T=2.0), by_hand, atol=1e-6)
    reverse = (q * (q.log() - p.log())).sum(-1).mean() * 4
    assert torch.allclose(token_kd_loss(s, t, T=2.0, divergence="reverse"), reverse, atol=1e-6)


def test_mask_averages_per_token_and_blocks_gradients():
    s, t = _logits()
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    s.requires_grad_(True)
    loss = token_kd_loss(s, t, mask)
    per_token = (F.softmax(t, -1) * (F.log_softmax(t, -1) - F.log_softmax(s, -1))).sum(-1)
    assert torch.allclose(loss, per_token[mask].mean(), atol=1e-6)  # 8 real tokens, each 1/8
    loss.backward()
    assert s.grad[~mask].abs().max() == 0 and s.grad[mask].abs().max() > 0
    # padding values do not matter
    s2 = s.detach().clone()
    s2[~mask] = 1e3
    assert torch.allclose(token_kd_loss(s2, t, mask), loss.detach(), atol=1e-6)
    # 0/1 integer masks work too
    assert torch.allclose(token_kd_loss(s.detach(), t, mask.long()), loss.detach())


def test_jsd_is_symmetric_and_bounded():
    s, t = _logits(1)
    a = token_kd_loss(s, t, divergence="jsd", beta=0.5)
    b = token_kd_loss(t, s, divergence="jsd", beta=0.5)
    assert torch.allclose(a, b, atol=1e-6) and 0 < float(a) < math.log(2)
    p, q = F.softmax(t, -1), F.softmax(s, -1)
    m = 0.1 * p + 0.9 * q
    by_hand = (0.1 * (p * (p / m).log()).sum(-1) + 0.9 * (q * (q / m).log()).sum(-1)).mean()
    assert torch.allclose(token_kd_loss(s, t, divergence="jsd", beta=0.1), by_hand, atol=1e-6)
    assert float(token_kd_loss(t, t, divergence="jsd")) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("kwargs,match", [
    ({"T": 0.0}, "temperature"), ({"divergence": "kl"}, "divergence must be"),
    ({"divergence": "jsd", "beta": 1.0}, "strictly between"), ({"divergence": "jsd", "beta": True}, "strictly"),
])
def test_token_kd_loss_errors(kwargs, match):
    s, t = _logits()
    with pytest.raises(ValueError, match=match):
        token_kd_loss(s, t, **kwargs)


def test_token_kd_loss_shape_errors():
    s, t = _logits()
    with pytest.raises(ValueError, match="vocabularies differ"):
        token_kd_loss(s, t[..., :5])
    with pytest.raises(ValueError, match=r"\(batch, length, vocab\)"):
        token_kd_loss(s[0], t[0])
    with pytest.raises(ValueError, match="mask must be"):
        token_kd_loss(s, t, torch.ones(3, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="no true entry"):
        token_kd_loss(s, t, torch.zeros(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="NaN"):
        token_kd_loss(s * float("nan"), t)


def test_top_k_all_is_forward_kd_and_top_1_is_hard_labels():
    s, t = _logits(2)
    values, ids = top_k_logits(t, 6)
    assert torch.allclose(top_k_kd_loss(s, values, ids, T=2.0), token_kd_loss(s, t, T=2.0), atol=1e-6)
    values, ids = top_k_logits(t, 1)
    hard = F.cross_entropy(s.flatten(0, 1), t.argmax(-1).flatten())
    assert torch.allclose(top_k_kd_loss(s, values, ids), hard, atol=1e-6)


def test_top_k_renormalises_the_kept_mass():
    s, t = _logits(3)
    values, ids = top_k_logits(t, 3)
    p = F.softmax(t, -1).gather(-1, ids)
    p = p / p.sum(-1, keepdim=True)  # the tail is dropped, the kept three sum to one
    log_q = F.log_softmax(s, -1).gather(-1, ids)
    assert torch.allclose(top_k_kd_loss(s, values, ids), (p * (p.log() - log_q)).sum(-1).mean(), atol=1e-6)
    # log-probabilities instead of logits give the same loss
    log_values = F.log_softmax(t, -1).gather(-1, ids)
    assert torch.allclose(top_k_kd_loss(s, log_values, ids), top_k_kd_loss(s, values, ids), atol=1e-6)
    with pytest.raises(ValueError, match="k must be"):
        top_k_logits(t, 0)
    with pytest.raises(ValueError, match="top_values and top_indices"):
        top_k_kd_loss(s, values[..., :2], ids)


# ------------------------------------------------------------------ evaluation and generation


class _Uniform(torch.nn.Module):
    context = 8

    def forward(self, ids):
        return torch.zeros(*ids.shape, 97)


def test_bits_per_char_of_a_uniform_model():
    assert lm.bits_per_char(_Uniform(), torch.arange(90) % 97) == pytest.approx(math.log2(97), rel=1e-6)


def test_generate_appends_tokens_and_is_seeded():
    torch.manual_seed(0)
    model = CharTransformer(97, context=8, width=16, depth=1, heads=2)
    prompts = torch.zeros(3, 4, dtype=torch.long)
    a = lm.generate(model, prompts, 10, generator=torch.Generator().manual_seed(1))
    b = lm.generate(model, prompts, 10, generator=torch.Generator().manual_seed(1))
    assert a.shape == (3, 14) and torch.equal(a, b) and torch.equal(a[:, :4], prompts)
    with pytest.raises(ValueError, match="temperature"):
        lm.generate(model, prompts, 1, temperature=0)


def test_recipe_schedule_warms_up_then_decays():
    r = lm.LMRecipe(steps=100, lr=1.0, warmup=10)
    assert r.lr_at(0) == pytest.approx(0.1) and r.lr_at(9) == pytest.approx(1.0)
    assert r.lr_at(99) == pytest.approx(0.1, abs=0.01)
