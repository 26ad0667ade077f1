"""Distillation loss terms. Shapes: B batch, C classes, S/S' sequence lengths, Ds/Dt hidden widths.

total = (1 - alpha) * soft_target_kl(T) + alpha * hard_ce + hidden_weight * pooled_hidden_mse
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def soft_target_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's soft-target loss: KL(p_teacher^T || p_student^T) * T^2, mean over the batch.

    student_logits, teacher_logits: [B, C] -> scalar. The T^2 factor keeps the gradient's size
    independent of T, so alpha means the same at any temperature.
    """
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


def hard_ce(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with the gold labels: logits [B, C], labels [B] (int) -> scalar mean."""
    return F.cross_entropy(student_logits.float(), labels)


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens: hidden [B, S, D], mask [B, S] (1 = token) -> [B, D]."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def pooled_hidden_mse(
    student_hidden: list[torch.Tensor],
    teacher_hidden: list[torch.Tensor],
    student_mask: torch.Tensor,
    teacher_mask: torch.Tensor,
    projections: nn.ModuleList | None = None,
) -> torch.Tensor:
    """MSE between mean-pooled hidden states of mapped layer pairs, averaged over the pairs.

    student_hidden[k]: [B, S, Ds], teacher_hidden[k]: [B, S', Dt] (pair k is a mapped layer).
    Pooling first makes the term independent of token alignment; projections[k] (Ds -> Dt,
    learned) bridges different widths. The teacher side carries no gradient.
    """
    if len(student_hidden) != len(teacher_hidden) or not student_hidden:
        raise ValueError(f"need matching non-empty layer lists, got {len(student_hidden)} and {len(teacher_hidden)}")
    losses = []
    for k, (s_h, t_h) in enumerate(zip(student_hidden, teacher_hidden, strict=True)):
        s_pooled = masked_mean(s_h.float(), student_mask)
        if projections is not None:
            s_pooled = projections[k](s_pooled)
        t_pooled = masked_mean(t_h.float(), teacher_mask).detach()
        losses.append(F.mse_loss(s_pooled, t_pooled))
    return torch.stack(losses).mean()


@dataclass(frozen=True)
class DistillWeights:
    temperature: float = 2.0
    alpha: float = 0.5
    hidden_mse: float = 0.0


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    labels: torch.Tensor,
    weights: DistillWeights,
    hidden_term: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The weighted total and its parts (for logging). Without teacher logits (evaluation) it is plain CE."""
    ce = hard_ce(student_logits, labels)
    if teacher_logits is None:
        return {"loss": ce, "hard_ce": ce}
    kl = soft_target_kl(student_logits, teacher_logits, weights.temperature)
    total = (1.0 - weights.alpha) * kl + weights.alpha * ce
    parts = {"hard_ce": ce, "soft_kl": kl}
    if hidden_term is not None and weights.hidden_mse > 0:
        total = total + weights.hidden_mse * hidden_term
        parts["hidden_mse"] = hidden_term
    return {"loss": total, **parts}
