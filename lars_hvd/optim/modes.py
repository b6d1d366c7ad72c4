"""The optimizers' choice lists, without TensorFlow: the flags (lars_hvd.planning.config)
offer exactly what the optimizers accept."""

TRUST_RATIO_MODES = ("paper", "decayed_grad")  # LARS's trust-ratio denominators (lars.py)
LARS_MODES = ("scale", "clip")  # LARC's policies: lr * trust, or min(lr, trust) (lars.py)
