"""A NumPy reference of LARS, written from the paper's Algorithm 1, independent of TF.

Used by the single-process tests and by the distributed tests (which apply it to the
gradient averaged over ranks).
"""

from __future__ import annotations

import re

import numpy as np


def excluded(name: str, shape, patterns, exclude_low_rank: bool) -> bool:
    if exclude_low_rank and len(shape) <= 1:
        return True
    return any(re.search(p, name) for p in patterns)


def lars_step(
    w: np.ndarray,
    g: np.ndarray,
    v: np.ndarray,
    lr: float,
    *,
    momentum: float,
    weight_decay_rate: float,
    trust_coefficient: float,
    epsilon: float,
    nesterov: bool,
    mode: str,
    decay: bool,
    adapt: bool,
    clip: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """One LARS step in float64; returns (new w, new v). ``clip``: LARC's clip policy, the
    local rate min(lr, trust) in place of lr * trust (NVIDIA Caffe's larc_policy "clip")."""
    w = w.astype(np.float64)
    g = g.astype(np.float64)
    v = v.astype(np.float64)
    beta = weight_decay_rate if decay else 0.0
    d = g + beta * w
    trust = 1.0
    if adapt:
        w_norm = np.linalg.norm(w)
        if mode == "paper":
            g_norm = np.linalg.norm(g)
            denominator = g_norm + beta * w_norm + epsilon
        else:
            g_norm = np.linalg.norm(d)
            denominator = g_norm + epsilon
        if w_norm > 0 and g_norm > 0:
            trust = trust_coefficient * w_norm / denominator
    local_lr = min(lr, trust) if adapt and clip else lr * trust
    step = local_lr * d
    if momentum == 0:
        return w - step, v
    v = momentum * v + step
    if nesterov:
        return w - (momentum * v + step), v
    return w - v, v


def relative_error(actual, expected) -> float:
    """||actual - expected|| / max(||expected||, tiny): a norm-wise relative error."""
    expected = np.asarray(expected, dtype=np.float64)
    diff = np.linalg.norm(np.asarray(actual, dtype=np.float64) - expected)
    return float(diff / max(np.linalg.norm(expected), 1e-30))
