"""One training run, from the plan to the summary (``training.run`` is the story).

- ``training``: the story: prepare, fit, static and elastic.
- ``optimizer_factory``: the run's optimizer, schedule and loss from its config.
- ``tf_setup``: TensorFlow's settings for the run (XLA, determinism, precision, seed).
- ``callbacks``: the Keras callbacks, in the order they must run.
- ``preemption``: a signal becomes a checkpoint of the current step and an exit.
- ``checkpoints``, ``layout``, ``run_dir``: what a run writes and where, and resuming it.
- ``evaluation``, ``report``: exact evaluation over ranks; the summary and its checks.
- ``elastic``: elastic Horovod's parts of a run.

Every Horovod call goes through ``lars_hvd.distributed``; rank 0 alone writes files.
"""
