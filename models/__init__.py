"""Model definitions, installed as lars_hvd.models."""
