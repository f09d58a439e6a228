"""Seeding: every random choice of a run comes from a generator derived from the run's seed and a
purpose ("perm", "order", "strategy", "model", ...), never from global random state, so the same seed
gives the same stream, model, data order and strategy randomness on any machine."""

from __future__ import annotations

import hashlib

import torch


def derived_generator(seed: int, purpose: str) -> torch.Generator:
    """A CPU generator for one purpose, independent of the others for the same seed."""
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
