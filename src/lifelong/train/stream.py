"""A whole stream: train task after task, fill the accuracy matrix. No files, no command-line config.

``run_stream(model, stream, strategy, settings)`` is what ``lifelong run``, the Python API and the
integrations share. Saving is the caller's business: ``on_checkpoint(tensors, meta)`` receives, at the
end of every task and every ``checkpoint_every`` steps, everything a resumed run needs (model,
optimizer, strategy state, generators, progress), and ``resume=(tensors, meta)`` continues from one.

R[0] is measured before any training, R[i] after task i (see :mod:`lifelong.eval.metrics`).
"""

from __future__ import annotations

import platform
import sys
import time
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from .._version import __version__
from ..errors import UsageError
from ..models import count_parameters
from ..models.heads import Heads
from ..scenarios import TaskStream, batches, derived_generator
from ..strategies import Context, Strategy
from .checkpoint import (
    CheckpointError,
    load_model_state,
    load_optimizer_state,
    optimizer_tensors,
    split_prefix,
    with_prefix,
)
from .device import peak_device_memory, peak_rss_bytes, reset_peak_memory, resolve_device
from .loop import TrainSettings, make_optimizer, train_task

Checkpoint = Callable[[dict[str, Tensor], dict[str, Any]], None]

CLASS_IL_FWT = ("undefined in the class-incremental scenario: before task j is trained its classes' output units "
                "have never been trained (with --class-units seen they are not even live), so R[j-1][j] reflects "
                "the random initialization alone")


def run_stream(
    model: nn.Module,
    stream: TaskStream,
    strategy: Strategy,
    settings: TrainSettings = TrainSettings(),
    *,
    device: str | torch.device = "auto",
    checkpoint: Checkpoint | None = None,
    checkpoint_every: int = 0,
    resume: tuple[dict[str, Tensor], dict[str, Any]] | None = None,
    progress: bool = False,
    log: Callable[[dict], None] | None = None,
    dist=None,
) -> dict[str, Any]:
    """Train ``model`` on each task of ``stream`` in turn with ``strategy``; return the results (accuracy
    matrix, metrics, timings, memory). The model, the data (uint8), the strategy's state and the
    optimizer live on ``device``; the model is moved there. ``log(event)`` receives the events of
    :mod:`lifelong.train.events` (per-step loss and penalty, per-task timings and accuracy row). ``dist``: this process's place in a
    data-parallel run (:mod:`lifelong.train.distributed`); the caller passes ``checkpoint`` and ``log``
    on rank 0 only."""
    from ..eval import evaluate, summarize

    device = resolve_device(device)
    reset_peak_memory(device)
    model.to(device)
    data = stream.to(device)
    ctx = Context(model, Heads.of(stream).to(device), device, derived_generator(settings.seed, "strategy"), data,
                  settings=settings, dist=dist)
    _check_fits_stream(ctx)
    strategy.check_stream(ctx)
    order = derived_generator(settings.seed, "order")
    augment_rng = derived_generator(settings.seed, "augment") if settings.augment != "none" else None
    T, has_val = len(stream), stream[0].val is not None
    P = {  # progress: everything besides tensors that a resumed run needs (JSON)
        "task": 0, "step": 0, "partial_train_seconds": 0.0, "elapsed_seconds": 0.0, "steps_per_task": [],
        "R": np.zeros((T + 1, T)).tolist(), "R_val": np.zeros((T + 1, T)).tolist() if has_val else None,
        "timings": {"train_seconds": [], "after_task_seconds": [], "eval_seconds": []},
    }
    if resume is not None:
        P, ctx.optimizer = restore(model, strategy, settings, resume, order, ctx.generator, device, augment_rng)
    started = time.perf_counter() - P["elapsed_seconds"]

    def measure(row: int) -> float:
        t0 = time.perf_counter()
        P["R"][row] = evaluate(ctx, data.tasks, strategy=strategy, split="test", upto=row - 1).tolist()
        if has_val:
            P["R_val"][row] = evaluate(ctx, data.tasks, strategy=strategy, split="val", upto=row - 1).tolist()
        return time.perf_counter() - t0

    def save(order_state: Tensor) -> None:
        if checkpoint is None:
            return
        P["elapsed_seconds"] = time.perf_counter() - started
        tensors = {**with_prefix(model.state_dict(), "model"), **with_prefix(strategy.state_dict(), "strategy"),
                   "rng.order": order_state, "rng.strategy": ctx.generator.get_state()}
        if augment_rng is not None:
            tensors["rng.augment"] = augment_rng.get_state()
        meta: dict[str, Any] = {"progress": P}
        if ctx.optimizer is not None:
            opt_t, meta["optimizer"] = optimizer_tensors(ctx.optimizer)
            tensors.update(with_prefix(opt_t, "optim"))
        checkpoint(tensors, meta)

    if resume is None:
        measure(0)
    if log is not None:
        log({"event": "start", "tasks": T, "task_names": stream.task_names, "strategy": strategy.name,
             "scenario": stream.scenario, "resumed_at": None if resume is None else {"task": P["task"], "step": P["step"]},
             "accuracy": P["R"][0]})
    bar = _progress_bar() if progress else None
    for i in range(P["task"], T):
        ctx.task, ctx.task_index = data[i], i
        ctx.step = sum(P["steps_per_task"]) + P["step"]
        if bar is not None:
            bar.set_description(f"task {i + 1}/{T} {data[i].name}")
        t0, before = time.perf_counter(), P["partial_train_seconds"]  # time spent on this task before a resume

        def on_checkpoint(step: int, order_state: Tensor) -> None:
            P.update(step=step, partial_train_seconds=before + time.perf_counter() - t0)
            save(order_state)

        on_losses = None
        if log is not None:
            def on_losses(first: int, losses: list[float], i=i, base=ctx.step - P["step"]) -> None:
                with torch.no_grad():
                    pen = strategy.penalty(ctx)  # Ω at θ after the block's last step
                last = len(losses) - 1
                for k, loss in enumerate(losses):
                    event = {"event": "step", "task": i, "step": base + first + k, "task_step": first + k, "loss": loss}
                    if k == last:
                        event["penalty"] = 0.0 if pen is None else float(pen)
                    log(event)

        n = train_task(ctx, strategy, settings, order, bar=bar, start_step=P["step"], checkpoint_every=checkpoint_every,
                       on_checkpoint=on_checkpoint, augment_rng=augment_rng, on_losses=on_losses)
        t1 = time.perf_counter()
        strategy.after_task(ctx)
        if dist is not None:
            dist.sync_generator(ctx.generator)  # an MC Fisher drew labels for this rank's shard only
        t2 = time.perf_counter()
        P["timings"]["train_seconds"].append(before + t1 - t0)
        P["timings"]["after_task_seconds"].append(t2 - t1)
        P["timings"]["eval_seconds"].append(measure(i + 1))
        P["steps_per_task"].append(n)
        P.update(task=i + 1, step=0, partial_train_seconds=0.0)
        if log is not None:
            log({"event": "task", "task": i, "name": data[i].name, "steps": n,
                 **{k: v[-1] for k, v in P["timings"].items()}, "accuracy": P["R"][i + 1],
                 **({"val_accuracy": P["R_val"][i + 1]} if has_val else {})})
        if settings.optimizer_state == "reset":
            ctx.optimizer = None  # a fresh optimizer per task (else its state carries over)
        save(order.get_state())
    if bar is not None:
        bar.close()
    results = _results(ctx, strategy, settings, device, P, time.perf_counter() - started, summarize)
    if log is not None:
        log({"event": "end", "metrics": results["metrics"], "total_seconds": results["timings"]["total_seconds"]})
    return results


def check_run(model: nn.Module, stream: TaskStream, strategy: Strategy, settings: TrainSettings = TrainSettings()) -> None:
    """What :func:`run_stream` checks before it trains, on the CPU and without side effects: the model
    takes the stream's inputs and has its output units, and the strategy accepts the stream and the
    model (``check_stream``). A UsageError otherwise; callers run it before they write anything."""
    ctx = Context(model, Heads.of(stream), stream=stream, settings=settings)
    _check_fits_stream(ctx)
    strategy.check_stream(ctx)


@torch.no_grad()
def _check_fits_stream(ctx: Context) -> None:
    """The model takes the stream's inputs and returns one score per output unit: one forward pass of
    two samples in eval mode (no state changes), so a mismatch is a UsageError naming both shapes."""
    x, _, _ = next(batches([ctx.stream[0]], "test", batch_size=2))
    was_training = ctx.model.training
    ctx.model.eval()
    try:
        out = ctx.model(x)
    except (RuntimeError, ValueError, TypeError, IndexError) as e:
        raise UsageError(f"the model cannot take the stream's inputs {tuple(x.shape[1:])} (batches of "
                         f"{tuple(x.shape)}): {str(e).splitlines()[0][:160]}") from None
    finally:
        ctx.model.train(was_training)
    want = ctx.heads.n_outputs
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] != want:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UsageError(f"the model returns {shape} for a batch of 2 but the stream has {want} output units "
                         f"({ctx.stream.scenario}-incremental, {len(ctx.stream)} tasks): give the model {want} outputs")


def restore(model: nn.Module, strategy: Strategy, settings: TrainSettings, checkpoint: tuple[dict, dict],
            order: torch.Generator, generator: torch.Generator, device: torch.device | str = "cpu",
            augment_rng: torch.Generator | None = None):
    """Load a checkpoint's model, strategy, generators and optimizer into fresh objects (the model on
    ``device``); returns ``(progress, optimizer or None)``. Every piece is checked against what it is
    loaded into, and a mismatch is a one-line CheckpointError: a resume can try this on scratch
    objects before it writes anything."""
    tensors, meta = checkpoint
    P = meta["progress"]
    load_model_state(model, split_prefix(tensors, "model"))
    state = {k: v.to(device) for k, v in split_prefix(tensors, "strategy").items()}
    try:
        strategy.load_state_dict(state)
        strategy.check_state(model)
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint strategy state does not fit {strategy.name}: {str(e).splitlines()[0]}") from None
    gens = [("rng.order", order), ("rng.strategy", generator)] + ([("rng.augment", augment_rng)] if augment_rng else [])
    if augment_rng is None and "rng.augment" in tensors:
        raise CheckpointError("checkpoint holds an augmentation generator but the run does not augment")
    for name, gen in gens:
        try:
            gen.set_state(tensors[name])
        except (KeyError, RuntimeError, TypeError) as e:
            raise CheckpointError(f"checkpoint generator state {name} is missing or invalid ({type(e).__name__})") from None
    optimizer = None
    keep = settings.optimizer_state == "keep"
    if P["step"] > 0 or (keep and P["task"] > 0):
        optimizer = make_optimizer(model, settings, strategy.parameters())
        load_optimizer_state(optimizer, split_prefix(tensors, "optim"), meta.get("optimizer"))
    elif split_prefix(tensors, "optim"):
        raise CheckpointError("checkpoint holds optimizer state at a task boundary, where a run starts a fresh optimizer"
                              " (it was made with --optimizer-state keep)" if not keep else
                              "checkpoint holds optimizer state before the first step")
    return P, optimizer


def _results(ctx, strategy, settings, device, P, total_seconds, summarize) -> dict[str, Any]:
    stream, model = ctx.stream, ctx.model
    results: dict[str, Any] = {
        "benchmark": stream.name,
        "scenario": stream.scenario,
        "strategy": strategy.name,
        "task_names": stream.task_names,
        "accuracy_matrix": P["R"],
        "metrics": summarize(np.array(P["R"])),
    }
    if P["R_val"] is not None:
        results["val_accuracy_matrix"] = P["R_val"]
        results["val_metrics"] = summarize(np.array(P["R_val"]))
    if stream.scenario == "class":  # a number that measures the initialization is not reported
        for key in ("metrics", "val_metrics"):
            if key in results:
                results[key]["forward_transfer"] = None
        results["undefined_metrics"] = {"forward_transfer": CLASS_IL_FWT}
    results.update(
        steps_per_task=P["steps_per_task"],
        timings={**P["timings"], "total_seconds": total_seconds},
        device=str(device),
        peak_memory_bytes=peak_rss_bytes(),
        peak_device_memory_bytes=peak_device_memory(device),
        n_parameters=count_parameters(model),
        extra_memory_bytes=strategy.state_bytes(),  # what the strategy keeps beside the model after the last task
        replay_memory=strategy.memory_report(),
        capacity=strategy.capacity_report(ctx),  # parameter isolation: what each task uses (else None)
        seed=settings.seed,
        threads=torch.get_num_threads(),
        versions=versions(),
    )
    return results


def _progress_bar():
    from tqdm.auto import tqdm

    return tqdm(total=None, unit="step", dynamic_ncols=True, leave=False, file=sys.stderr)


def versions() -> dict[str, str]:
    return {
        "lifelong": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
    }
