"""get_config() is the contract: every argument in it, schedules round trip, models reload."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from lars_hvd.optim.lars import LARS
from lars_hvd.optim.schedules import LinearWarmup
from lars_hvd.planning.plan import linear_scaled_learning_rate

pytestmark = pytest.mark.core

NON_DEFAULT = dict(
    learning_rate=7.5,
    momentum=0.8,
    weight_decay_rate=2e-4,
    trust_coefficient=0.02,
    epsilon=1e-9,
    nesterov=True,
    trust_ratio_mode="decayed_grad",
    exclude_from_weight_decay=["batch_normalization", "bias"],
    exclude_from_layer_adaptation=["batch_normalization"],
    exclude_low_rank=False,
    record_trust_ratios=True,
    trust_clip=True,
    name="MyLARS",
)


def paper_schedule() -> LinearWarmup:
    return LinearWarmup(
        tf.keras.optimizers.schedules.PolynomialDecay(10.0, 90, end_learning_rate=1e-4, power=2.0),
        warmup_steps=10,
        warmup_start_learning_rate=0.5,
    )


def test_every_init_parameter_is_in_get_config():
    params = [
        p for p in inspect.signature(LARS.__init__).parameters
        if p not in ("self", "kwargs")
    ]
    assert set(params) == set(NON_DEFAULT), "update NON_DEFAULT with the new argument"
    config = LARS(**NON_DEFAULT).get_config()
    for param in params:
        assert param in config, param
        assert config[param] == pytest.approx(NON_DEFAULT[param]), param


def test_config_round_trip_keeps_non_defaults():
    config = LARS(**NON_DEFAULT).get_config()
    rebuilt = LARS.from_config(config)
    assert rebuilt.get_config() == config


def test_round_trip_with_schedule_through_keras_serialize():
    optimizer = LARS(learning_rate=paper_schedule(), weight_decay_rate=5e-4)
    serialized = tf.keras.optimizers.serialize(optimizer)
    rebuilt = tf.keras.optimizers.deserialize(serialized)
    assert type(rebuilt) is LARS
    # `learning_rate` is the current value; the schedule itself is `_learning_rate`.
    assert isinstance(rebuilt._learning_rate, LinearWarmup)
    steps = np.arange(0, 120, 7)
    assert [float(rebuilt._learning_rate(s)) for s in steps] == pytest.approx(
        [float(optimizer._learning_rate(s)) for s in steps]
    )
    assert rebuilt.get_config() == optimizer.get_config()


def test_saved_model_reloads_with_optimizer_state(tmp_path):
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(3)])
    model.compile(optimizer=LARS(learning_rate=paper_schedule(), exclude_from_weight_decay=["x"]),
                  loss="mse")
    x, y = np.ones((8, 4), np.float32), np.zeros((8, 3), np.float32)
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    reloaded = tf.keras.models.load_model(path)
    assert type(reloaded.optimizer) is LARS
    assert reloaded.optimizer.get_config() == model.optimizer.get_config()
    assert int(reloaded.optimizer.iterations) == 2
    for a, b in zip(reloaded.optimizer.variables, model.optimizer.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


class TestLinearWarmup:
    def test_values(self):
        schedule = paper_schedule()
        assert float(schedule(0)) == pytest.approx(0.5)
        assert float(schedule(5)) == pytest.approx(0.5 + (10.0 - 0.5) * 5 / 10)
        assert float(schedule(10)) == pytest.approx(10.0)
        # Poly decay power 2 over the 90 steps after warmup, to 1e-4.
        assert float(schedule(55)) == pytest.approx((10.0 - 1e-4) * (1 - 45 / 90) ** 2 + 1e-4)
        assert float(schedule(100)) == pytest.approx(1e-4)
        assert float(schedule(1000)) == pytest.approx(1e-4)

    def test_no_warmup_is_the_inner_schedule(self):
        inner = tf.keras.optimizers.schedules.CosineDecay(3.0, 50)
        schedule = LinearWarmup(inner, warmup_steps=0)
        for step in (0, 10, 49):
            assert float(schedule(step)) == pytest.approx(float(inner(step)))

    def test_round_trip(self):
        schedule = paper_schedule()
        rebuilt = tf.keras.optimizers.schedules.deserialize(
            tf.keras.optimizers.schedules.serialize(schedule)
        )
        assert isinstance(rebuilt, LinearWarmup)
        assert rebuilt.get_config() == schedule.get_config()

    @pytest.mark.parametrize(
        "kwargs,message",
        [
            (dict(after=1.0, warmup_steps=1), "after=1.0"),
            (dict(warmup_steps=-1), "warmup_steps=-1"),
            (dict(warmup_steps=2.5), "warmup_steps=2.5"),
            (dict(warmup_steps=1, warmup_start_learning_rate=-1.0),
             "warmup_start_learning_rate=-1.0"),
        ],
    )
    def test_bad_arguments(self, kwargs, message):
        kwargs.setdefault("after", tf.keras.optimizers.schedules.CosineDecay(1.0, 10))
        with pytest.raises(ValueError, match=message):
            LinearWarmup(**kwargs)


def test_linear_scaling_rule():
    assert linear_scaled_learning_rate(0.1, 8192) == pytest.approx(3.2)
    with pytest.raises(ValueError, match="global_batch_size=0"):
        linear_scaled_learning_rate(0.1, 0)


class TestPolicy:
    @pytest.mark.parametrize("decay", ["poly", "cosine", "step", "none"])
    def test_warmup_then_decay(self, decay):
        from lars_hvd.optim.schedules import warmup_then_decay

        schedule = warmup_then_decay(8.0, 100, 10, warmup_start_learning_rate=1.0, decay=decay,
                                     end_learning_rate=0.5, step_boundaries=(40, 70),
                                     step_factor=0.1)
        lr = [float(schedule(s)) for s in range(101)]
        assert lr[0] == pytest.approx(1.0) and lr[5] == pytest.approx(4.5)
        assert lr[10] == pytest.approx(8.0)
        expected_end = {"poly": 0.5, "cosine": 0.5, "step": 8.0 * 0.01, "none": 8.0}[decay]
        assert lr[100] == pytest.approx(expected_end, rel=1e-5)
        if decay == "poly":
            assert lr[55] == pytest.approx((8.0 - 0.5) * (1 - 45 / 90) ** 2 + 0.5, rel=1e-5)
        if decay == "step":
            assert lr[39] == pytest.approx(8.0) and lr[41] == pytest.approx(0.8)
        # Round trip through Keras's serialization
        rebuilt = tf.keras.optimizers.schedules.deserialize(
            tf.keras.optimizers.schedules.serialize(schedule))
        assert [float(rebuilt(s)) for s in (0, 33, 77)] == pytest.approx(
            [lr[0], lr[33], lr[77]])

    def test_per_optimizer_step_divides_micro_batches(self):
        from lars_hvd.optim.schedules import PerOptimizerStep

        inner = paper_schedule()
        schedule = PerOptimizerStep(inner, 4)
        # Update n happens at iterations n*4 + 3 and must see inner(n).
        for n in (0, 1, 9, 50):
            assert float(schedule(n * 4 + 3)) == pytest.approx(float(inner(n)))
        rebuilt = tf.keras.optimizers.schedules.deserialize(
            tf.keras.optimizers.schedules.serialize(schedule))
        assert float(rebuilt(43)) == pytest.approx(float(inner(10)))
        with pytest.raises(ValueError, match="micro_batches_per_step=0"):
            PerOptimizerStep(inner, 0)

    def test_warmup_must_end_before_training(self):
        from lars_hvd.optim.schedules import warmup_then_decay

        with pytest.raises(ValueError, match="warmup_steps=100"):
            warmup_then_decay(1.0, 100, 100)


def test_a_model_saved_before_the_package_moved_loads_and_trains_on():
    """tests/fixtures/lars_linear_warmup.keras was saved by the code before LARS and the
    schedules moved into lars_hvd.optim (tests/fixtures/make_lars_fixture.py): the
    Keras names (lars_hvd>LARS, lars_hvd>LinearWarmup, ...) still resolve, and one more step
    gives the kernel that the old code gave."""
    import lars_hvd.optim  # noqa: F401  (the package a user imports)
    from lars_hvd.optim.lars import LARS as Lars
    from lars_hvd.optim.schedules import PerOptimizerStep

    fixtures = Path(__file__).parent / "fixtures"
    model = tf.keras.models.load_model(fixtures / "lars_linear_warmup.keras")
    data = np.load(fixtures / "lars_linear_warmup_data.npz")
    assert type(model.optimizer) is Lars
    schedule = model.optimizer._learning_rate  # (.learning_rate is the current value)
    assert isinstance(schedule, PerOptimizerStep)
    assert isinstance(schedule.schedule, LinearWarmup)
    assert model.optimizer.exclude_from_weight_decay == ["bn"]
    assert int(model.optimizer.iterations) == 2
    model.fit(data["x"][:16], data["y"][:16], batch_size=16, epochs=1, verbose=0,
              shuffle=False)
    np.testing.assert_allclose(model.get_layer("hidden").kernel.numpy(),
                               data["hidden_kernel_after_step"], rtol=1e-6, atol=1e-7)


def test_the_top_level_names_are_the_optim_package_s():
    import lars_hvd
    from lars_hvd import optim

    for name in lars_hvd.__all__:
        assert getattr(lars_hvd, name) is getattr(optim, name), name
