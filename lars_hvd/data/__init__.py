"""Input pipelines: Fashion-MNIST (the offline default)."""
