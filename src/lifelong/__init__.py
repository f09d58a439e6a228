"""lifelong: continual learning without catastrophic forgetting."""

__version__ = "0.1.0"
