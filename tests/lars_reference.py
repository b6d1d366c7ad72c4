"""NumPy references of LARS (the paper's Algorithm 1) and LAMB, independent of TF and Keras.

Used by the single-process tests, the Keras 3 checks on each backend (keras3_checks.py) and
the distributed tests (which apply it to the gradient averaged over ranks).
"""

from __future__ import annotations

import itertools
import re

import numpy as np

# The LARS configurations checked against lars_step: both trust-ratio modes, plain, momentum
# and Nesterov, with and without weight decay, an epsilon, and LARC's clip policy at a global
# rate that caps some layers and not others (test_optimizer.py's
# test_clip_cases_cap_some_layers_and_not_others).
LARS_CASES = [
    dict(mode=mode, momentum=momentum, nesterov=nesterov, weight_decay_rate=wd, epsilon=eps)
    for mode, (momentum, nesterov), wd, eps in itertools.product(
        ["paper", "decayed_grad"], [(0.0, False), (0.9, False), (0.9, True)], [0.0, 5e-3],
        [0.0],
    )
] + [dict(mode="paper", momentum=0.9, nesterov=False, weight_decay_rate=5e-3, epsilon=1e-3)] + [
    dict(mode=mode, momentum=0.9, nesterov=nesterov, weight_decay_rate=5e-3, epsilon=0.0,
         clip=True, lr=0.012)
    for mode, nesterov in [("paper", False), ("decayed_grad", True)]
]


def initial_weights(seed: int) -> dict[str, np.ndarray]:
    """Adapted, rank-excluded (a bias), regex-excluded (``skip_me``), zero-weight (||w|| = 0:
    trust 1) and zero-gradient (``frozen``, see ``gradients``) variables, by name."""
    rng = np.random.default_rng(seed)
    return {
        "dense/kernel": rng.normal(size=(5, 4)),
        "dense/bias": rng.normal(size=(4,)),
        "skip_me/kernel": rng.normal(size=(3, 3)),
        "zero/kernel": np.zeros((2, 3)),
        "frozen/kernel": rng.normal(size=(2, 2)),
    }


def gradients(seed: int, named_shapes) -> list[np.ndarray]:
    """A float32 gradient per ``(name, shape)`` from ``seed``; zero for a ``frozen`` name."""
    rng = np.random.default_rng(seed)
    grads = []
    for name, shape in named_shapes:
        g = rng.normal(scale=0.5, size=shape).astype(np.float32)
        grads.append(np.zeros_like(g) if name.startswith("frozen") else g)
    return grads


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


def lamb_reference(weights, grads_per_step, lr, beta_1, beta_2, epsilon, weight_decay_rate,
                   excluded):
    """Algorithm 2 of You et al. 2019 in float64, step t = 1, 2, ..."""
    w = [x.astype(np.float64) for x in weights]
    m = [np.zeros_like(x) for x in w]
    v = [np.zeros_like(x) for x in w]
    for t, grads in enumerate(grads_per_step, start=1):
        for i, g in enumerate(grads):
            g = g.astype(np.float64)
            m[i] = beta_1 * m[i] + (1 - beta_1) * g
            v[i] = beta_2 * v[i] + (1 - beta_2) * g * g
            u = (m[i] / (1 - beta_1**t)) / (np.sqrt(v[i] / (1 - beta_2**t)) + epsilon)
            trust = 1.0
            if not excluded[i]:
                u = u + weight_decay_rate * w[i]
                w_norm, u_norm = np.linalg.norm(w[i]), np.linalg.norm(u)
                trust = w_norm / u_norm if w_norm > 0 and u_norm > 0 else 1.0
            w[i] = w[i] - lr * trust * u
    return w


def relative_error(actual, expected) -> float:
    """||actual - expected|| / max(||expected||, tiny): a norm-wise relative error."""
    expected = np.asarray(expected, dtype=np.float64)
    diff = np.linalg.norm(np.asarray(actual, dtype=np.float64) - expected)
    return float(diff / max(np.linalg.norm(expected), 1e-30))
