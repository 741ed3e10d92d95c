"""The distance part of RepDistiller's RKDLoss (distiller_zoo/RKD.py), transcribed once for the
tests of the loss (test_losses.py) and of its checker (test_checks_relations.py). It is also the
RKD authors' RkdDistance (lenscloth/RKD, metric/loss.py) and mdistiller's rkd_loss: pdist clamps
the squared distances at eps=1e-12 and zeroes the diagonal; each matrix is divided by the mean of
its positive entries (the pairs i != j); smooth_l1 over the full N x N matrices."""

import torch
import torch.nn.functional as F


def pdist(e: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    e_square = e.pow(2).sum(dim=1)
    res = (e_square.unsqueeze(1) + e_square.unsqueeze(0) - 2 * e @ e.t()).clamp(min=eps).sqrt().clone()
    res[range(len(e)), range(len(e))] = 0
    return res


def repdistiller_rkd_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        t_d = pdist(teacher)
        t_d = t_d / t_d[t_d > 0].mean()
    d = pdist(student)
    d = d / d[d > 0].mean()
    return F.smooth_l1_loss(d, t_d)
