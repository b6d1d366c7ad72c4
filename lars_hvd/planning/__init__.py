"""The dry run: flags -> config -> plan -> what the plan costs, with neither TensorFlow nor
Horovod imported (a test checks ``sys.modules``).

- ``config``: the dataclasses that are the flags, each flag's bounds beside it, and the
  rules that span flags.
- ``presets``: the named experiments, each setting with its source.
- ``plan``: ``resolve()``: global batch -> per-worker batch, accumulation, steps, LR.
- ``cost`` and ``cost_validation``: what a plan costs on published hardware, and that model
  checked against published runs.
- ``dry_run``: what ``python -m lars_hvd.train --dry-run [--hardware P]`` prints.
- ``schedule``: the run's LR schedule object, and ``--plot-lr``; the one part that imports
  TensorFlow, and only when called.
"""
