"""``python -m lars_hvd.bench``: how fast lars_hvd is, measured side by side.

    python -m lars_hvd.bench throughput   # images/s, Horovod synthetic-benchmark style
    python -m lars_hvd.bench overhead     # the train path vs a bare model.fit, interleaved
    python -m lars_hvd.bench optimizer    # LARS vs SGD vs LAMB apply / full step, ResNet-50
    python -m lars_hvd.bench allreduce    # Horovod allreduce bandwidth under -np 2
    python -m lars_hvd.bench scaling      # projected ResNet-50 32K scaling, 8..1024 GPUs
    python -m lars_hvd.bench all --quick  # what `make bench` runs

Every figure that compares two things is a ratio of the two measured in the same process,
interleaved round by round, so that a noisy machine moves both. Results are JSON (and PNG)
files in ``--out`` (default ``runs/bench``; ``make bench-docs`` refreshes the published
``docs/results/bench``).
"""
