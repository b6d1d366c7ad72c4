"""What the Keras 2 optimizers share on TensorFlow: the L2 norm, a variable's handle, what
they say they are.

(What LARS and LAMB are on every Keras, their arguments and trust ratios, is in ``rules``.)
"""

from __future__ import annotations

import tensorflow as tf


def l2_norm(tensor):
    # One fused pass over the tensor (tf.nn.l2_loss = sum(x**2) / 2), no temporary the size
    # of the tensor: the norms are LARS's only extra memory traffic over SGD.
    return tf.sqrt(2.0 * tf.nn.l2_loss(tensor))


def handle(variable):
    """The resource handle of a variable (through a mixed-precision AutoCastVariable)."""
    return getattr(variable, "_variable", variable).handle


class Keras2:
    """What LARS and LAMB do the Keras 2 way: name variables (``rules.Exclusions``), say
    which Keras they are for (their repr, which Keras 3's compile() prints when given one)."""

    @staticmethod
    def name_of(variable) -> str:
        return variable.name

    @staticmethod
    def shape_of(variable) -> tuple:
        return tuple(variable.shape.as_list())

    def __repr__(self) -> str:
        return (f"<lars_hvd.optim.{type(self).__name__}, for tf.keras (Keras 2): a Keras 3 model "
                f"needs lars_hvd.keras3.{type(self).__name__}>")
