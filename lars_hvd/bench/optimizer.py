"""LARS's cost, side by side with Keras SGD (momentum) and LAMB, on ResNet-50's variables.

Two measurements, each interleaved round by round in one process:

- apply: one ``apply_gradients`` of every ResNet-50 trainable variable (25.6M parameters)
  with fixed random gradients. The memory-traffic bound: SGD with momentum reads the
  gradient, the weights and the velocity and writes the last two; LARS also reads weights and
  gradients once for the two norms (7 passes instead of 5: 1.4x).
- step: one whole training step (forward, backward, apply) at a fixed batch, LARS vs SGD.

Both with and without XLA (``tf.function(jit_compile=True)`` around the step). The first
call of each step function traces (and compiles) it: its time is reported apart, and the
tracing count after the timed rounds must still be 1 (no retracing).
"""

from __future__ import annotations

import time

import numpy as np
import tensorflow as tf

from lars_hvd.bench import results
from lars_hvd.run.optimizer_factory import build_optimizer_state


def make_optimizer(name: str):
    """The run factory's optimizer ``name`` at a small constant LR (it keeps the weights sane
    over many benchmark steps; speed does not depend on it)."""
    from lars_hvd.planning.config import OptimizerConfig
    from lars_hvd.run.optimizer_factory import make_optimizer as factory

    return factory(OptimizerConfig(optimizer=name), 1e-4 if name == "lamb" else 1e-3,
                   record_trust_ratios=False)


def _timed(fn, steps: int) -> float:
    """Seconds per call of ``fn`` over ``steps`` calls (the result fetched each time)."""
    start = time.perf_counter()
    for _ in range(steps):
        fn().numpy()
    return (time.perf_counter() - start) / steps


def _interleave(fns: dict, rounds: int, steps: int) -> dict:
    """name -> seconds per call in every round; the order rotates from round to round."""
    names = list(fns)
    times = {name: [] for name in names}
    for name in names:  # one untimed round: allocator and thread pools settle first
        _timed(fns[name], steps)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            times[name].append(_timed(fns[name], steps))
    return times


def apply_functions(model_name: str, optimizers, xla: bool, input_shape, num_classes: int):
    """One apply_gradients step function per optimizer, each on its own copy of the model's
    variables, with the same fixed random gradients. Returns the functions, the seconds of
    each first (tracing) call, the parameter count, and each function's variables."""
    from lars_hvd.models import build

    fns, first_call, variables_count, state = {}, {}, 0, {}
    for name in optimizers:
        model = build(model_name, input_shape, num_classes)
        variables = model.trainable_variables
        variables_count = sum(int(np.prod(v.shape)) for v in variables)
        rng = np.random.default_rng(0)
        grads = [tf.constant(rng.normal(0, 1e-3, v.shape).astype(np.float32))
                 for v in variables]
        optimizer = make_optimizer(name)
        build_optimizer_state(optimizer, variables)

        @tf.function(jit_compile=xla)
        def apply(optimizer=optimizer, grads=grads, variables=variables):
            optimizer.apply_gradients(zip(grads, variables, strict=True))
            return tf.constant(0.0) + tf.cast(optimizer.iterations, tf.float32)

        start = time.perf_counter()
        apply().numpy()
        first_call[name] = time.perf_counter() - start
        fns[name], state[name] = apply, variables
    return fns, first_call, variables_count, state


def step_functions(model_name: str, optimizers, xla: bool, input_shape, num_classes: int,
                   batch: int):
    """One whole training step (forward, backward, apply) per optimizer, same data."""
    from lars_hvd.models import build

    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((batch, *input_shape), dtype=np.float32))
    y = tf.constant(rng.integers(0, num_classes, batch).astype(np.int32))
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    fns, first_call = {}, {}
    for name in optimizers:
        tf.keras.utils.set_random_seed(0)
        model = build(model_name, input_shape, num_classes)
        optimizer = make_optimizer(name)
        build_optimizer_state(optimizer, model.trainable_variables)

        @tf.function(jit_compile=xla)
        def step(model=model, optimizer=optimizer):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
            return loss

        start = time.perf_counter()
        step().numpy()
        first_call[name] = time.perf_counter() - start
        fns[name] = step
    return fns, first_call


def _summarize(times: dict, first_call: dict, fns: dict, baseline: str) -> dict:
    out = {"seconds_per_call": {k: results.interval95(v) for k, v in times.items()},
           "first_call_seconds": first_call,
           "tracing_count": {k: f.experimental_get_tracing_count() for k, f in fns.items()},
           "ratios": {}}
    for name in times:
        if name != baseline:
            out["ratios"][f"{name}/{baseline}"] = results.ratio_summary(times[name],
                                                                       times[baseline])
    return out


def measure(args) -> dict:
    shape = tuple(args.input_shape)
    out = {"model": args.model, "input_shape": shape, "batch": args.batch,
           "rounds": args.rounds, "steps_per_round": args.steps, "apply": {}, "step": {}}
    for xla in args.xla_modes:
        label = "xla" if xla else "no_xla"
        fns, first, count, _ = apply_functions(args.model, args.optimizers, xla, shape,
                                            args.num_classes)
        out["parameters"] = count
        times = _interleave(fns, args.rounds, args.steps)
        out["apply"][label] = _summarize(times, first, fns, "sgd")
        _print("apply_gradients", label, out["apply"][label])
        if args.batch:
            fns, first = step_functions(args.model, ("lars", "sgd"), xla, shape,
                                        args.num_classes, args.batch)
            times = _interleave(fns, args.rounds, max(1, args.steps // 2))
            out["step"][label] = _summarize(times, first, fns, "sgd")
            _print(f"full step, batch {args.batch}", label, out["step"][label])
    return out


def _print(what: str, label: str, summary: dict) -> None:
    for name, (mean, half) in summary["seconds_per_call"].items():
        print(f"{what} [{label}] {name:>5}: {1e3 * mean:8.1f} +-{1e3 * half:.1f} ms "
              f"(first call {summary['first_call_seconds'][name]:.2f} s, traced "
              f"{summary['tracing_count'][name]}x)", flush=True)
    for key, ratio in summary["ratios"].items():
        print(f"{what} [{label}] {key}: {ratio['ratio']:.3f} +-{ratio['ci95']:.3f}", flush=True)
