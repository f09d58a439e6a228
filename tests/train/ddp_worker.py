"""One rank of the importance test (tests/train/test_distributed.py): the Fisher, MAS importance, the Kronecker factors and the
per-rank gradient average of a shared float64 problem, computed on this rank's shard and all-reduced."""

from __future__ import annotations

import sys

import torch

from lifelong.importance import fisher_diag
from lifelong.importance.kfac import kron_factors
from lifelong.importance.mas import mas_importance
from lifelong.models import Heads
from lifelong.strategies import Context
from lifelong.train import distributed

from tests.train.test_distributed import problem


def main(out: str) -> None:
    torch.set_num_threads(1)
    d = distributed.from_env("cpu")
    model, stream = problem()
    ctx = Context(model, Heads.of(stream), stream=stream, task=stream[0], task_index=0, dist=d)
    fisher = fisher_diag(model, ctx.task_batches(batch_size=7), "exact")
    mas = mas_importance(model, ctx.task_batches(batch_size=7))
    kron, _, n = kron_factors(model, ctx.task_batches(batch_size=7), "exact")
    # one global batch of 11 samples: the weighted gradient average is the full batch's gradient
    x, y, _ = next(iter(ctx.task_batches(batch_size=11).batches))
    part = slice(d.rank, None, d.world)
    loss = torch.nn.functional.cross_entropy(model(x[part]), y[part])
    model.zero_grad()
    loss.backward()
    d.average_gradients(list(model.parameters()), int(y[part].shape[0]))
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    if d.main:
        torch.save({"fisher": fisher, "mas": mas, "kron": kron, "kron_n": n, "grads": grads, "world": d.world}, out)
    d.close()


if __name__ == "__main__":
    main(sys.argv[1])
