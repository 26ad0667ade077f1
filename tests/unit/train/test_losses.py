"""Each distillation loss term against a plain computation written out by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from textclf.train.losses import (
    DistillWeights,
    distillation_loss,
    hard_ce,
    masked_mean,
    pooled_hidden_mse,
    soft_target_kl,
)


@pytest.fixture()
def logits():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(5, 3, generator=gen) * 3, torch.randn(5, 3, generator=gen) * 3, torch.tensor([0, 2, 1, 1, 0])


def reference_kl(student: torch.Tensor, teacher: torch.Tensor, t: float) -> float:
    """sum_i sum_c p_t (log p_t - log p_s) / B * T^2, with softmax spelled out per row."""
    total = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist(), strict=True):
        s_exp = [math.exp(v / t) for v in s_row]
        t_exp = [math.exp(v / t) for v in t_row]
        p_s = [v / sum(s_exp) for v in s_exp]
        p_t = [v / sum(t_exp) for v in t_exp]
        total += sum(pt * (math.log(pt) - math.log(ps)) for pt, ps in zip(p_t, p_s, strict=True))
    return total / len(student) * t * t


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.5])
def test_soft_target_kl_matches_hand_computation_and_torch_kl_div(logits, temperature):
    student, teacher, _ = logits
    ours = soft_target_kl(student, teacher, temperature)
    assert ours.item() == pytest.approx(reference_kl(student, teacher, temperature), rel=1e-5)
    torch_ref = (
        F.kl_div(F.log_softmax(student / temperature, -1), F.softmax(teacher / temperature, -1), reduction="batchmean")
        * temperature**2
    )
    assert ours.item() == pytest.approx(torch_ref.item(), rel=1e-5)


def test_soft_target_kl_is_zero_for_identical_and_ignores_row_shifts(logits):
    student, teacher, _ = logits
    assert soft_target_kl(teacher, teacher, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    # Softmax is shift-invariant per row, so adding a constant to the teacher changes nothing.
    assert soft_target_kl(student, teacher + 7.0, 2.0).item() == pytest.approx(
        soft_target_kl(student, teacher, 2.0).item(), rel=1e-5
    )


def test_hard_ce_matches_negative_log_softmax_of_gold_class(logits):
    student, _, labels = logits
    ref = 0.0
    for row, gold in zip(student.tolist(), labels.tolist(), strict=True):
        log_z = math.log(sum(math.exp(v) for v in row))
        ref += -(row[gold] - log_z)
    assert hard_ce(student, labels).item() == pytest.approx(ref / len(labels), rel=1e-5)


def test_masked_mean_ignores_padding():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])  # [1, 3, 2], last token is padding
    mask = torch.tensor([[1, 1, 0]])
    assert masked_mean(hidden, mask).tolist() == [[2.0, 3.0]]


def test_pooled_hidden_mse_with_projection_matches_reference():
    torch.manual_seed(0)
    s_hidden = [torch.randn(2, 4, 3), torch.randn(2, 4, 3)]  # student: width 3
    t_hidden = [torch.randn(2, 6, 5), torch.randn(2, 6, 5)]  # teacher: width 5, other tokenisation length
    s_mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    t_mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]])
    proj = nn.ModuleList([nn.Linear(3, 5), nn.Linear(3, 5)])
    ours = pooled_hidden_mse(s_hidden, t_hidden, s_mask, t_mask, proj)
    per_layer = []
    for k in range(2):
        diffs = []
        for b in range(2):
            s_vec = s_hidden[k][b, : int(s_mask[b].sum())].mean(0)
            t_vec = t_hidden[k][b, : int(t_mask[b].sum())].mean(0)
            diffs.append(((proj[k].weight @ s_vec + proj[k].bias - t_vec) ** 2).mean())
        per_layer.append(sum(diffs) / 2)
    assert ours.item() == pytest.approx((sum(per_layer) / 2).item(), rel=1e-5)
    ours.backward()
    assert proj[0].weight.grad is not None and proj[0].weight.grad.abs().sum() > 0


def test_pooled_hidden_mse_rejects_mismatched_layer_lists():
    with pytest.raises(ValueError, match="matching"):
        pooled_hidden_mse([torch.zeros(1, 2, 3)], [], torch.ones(1, 2), torch.ones(1, 2))


def test_distillation_loss_weights_the_terms(logits):
    student, teacher, labels = logits
    weights = DistillWeights(temperature=3.0, alpha=0.25, hidden_mse=2.0)
    hidden = torch.tensor(0.5)
    parts = distillation_loss(student, teacher, labels, weights, hidden)
    expected = 0.75 * reference_kl(student, teacher, 3.0) + 0.25 * hard_ce(student, labels).item() + 2.0 * 0.5
    assert parts["loss"].item() == pytest.approx(expected, rel=1e-5)
    assert set(parts) == {"loss", "hard_ce", "soft_kl", "hidden_mse"}
    # Without teacher logits (evaluation batches) it is plain cross-entropy.
    plain = distillation_loss(student, None, labels, weights)
    assert plain["loss"].item() == pytest.approx(hard_ce(student, labels).item())
