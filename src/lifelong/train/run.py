"""Run a whole stream: build it, train task after task, fill the accuracy matrix, write the run folder.

Run folder (written atomically, file by file):
    config.json           the resolved config, written before training starts
    results.json          accuracy matrix, metrics, timings, peak memory, versions, seed
    accuracy_matrix.csv   R[i][j]: row 0 before training, row i after training task i
    accuracy_curves.png   accuracy on each task along the stream (as Fig. 2A of Kirkpatrick et al. 2017)
    accuracy_matrix.png   heatmap of R
"""

from __future__ import annotations

import dataclasses
import json
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import __version__
from .._io import atomic_write_json
from ..checkpoint import (
    CHECKPOINT_FILE,
    load_checkpoint,
    load_model_state,
    load_optimizer_state,
    optimizer_tensors,
    save_checkpoint,
    split_prefix,
    with_prefix,
)
from ..config import NOT_IN_ID, RunConfig
from ..errors import UsageError
from ..models import build_model, count_parameters
from ..scenarios import TaskStream, batches, derived_generator, permuted, rotated, split
from ..strategies import STRATEGIES, Strategy
from .loop import TrainSettings, evaluate, make_optimizer, train_task


def build_stream(cfg: RunConfig) -> TaskStream:
    """The task stream a (resolved) config describes; loads the data set (see lifelong.data)."""
    from ..data import load_dataset

    data = load_dataset(cfg.dataset, cfg.data_dir, download=cfg.download)
    common = dict(seed=cfg.seed, val_fraction=cfg.val_fraction, name=cfg.benchmark, pad=cfg.pad, mean=cfg.mean,
                  std=cfg.std, seen_classes_only=cfg.class_units == "seen")
    if cfg.kind == "permuted":
        return permuted(data, cfg.tasks, cfg.scenario, **common)
    if cfg.kind == "rotated":
        return rotated(data, cfg.angles, cfg.scenario, **common)
    return split(data, cfg.split_groups, cfg.scenario, **common)


def build_strategy(cfg: RunConfig) -> Strategy:
    """The strategy ``cfg.strategy``, built from the config fields it reads (``from_config``)."""
    return STRATEGIES[cfg.strategy].from_config(cfg, derived_generator(cfg.seed, "strategy"))


def seeded_model(cfg: RunConfig, stream: TaskStream) -> nn.Module:
    """The model, initialized from the run's seed without touching global random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived_generator(cfg.seed, "model").initial_seed())
        return build_model(cfg.model, stream.input_shape, stream.n_outputs, cfg.hidden)


def prepare_run_dir(cfg: RunConfig, overwrite: bool = False) -> Path:
    """Create the run folder and write config.json; refuse a folder that holds a different run."""
    out = Path(cfg.out) if cfg.out else Path("runs") / cfg.run_id()
    previous = out / "config.json"
    try:
        if previous.exists() and not overwrite:
            old = json.loads(previous.read_text()).get("run_id")
            if old != cfg.run_id():
                raise UsageError(
                    f"{out} holds another run ({old}); choose another --out or pass --overwrite"
                )
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "config.json", {"run_id": cfg.run_id(), **cfg.to_dict()})
    except (OSError, json.JSONDecodeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise UsageError(f"cannot write the run folder {out}: {reason}; choose another --out") from None
    return out


def run(cfg: RunConfig, *, overwrite: bool = False, write: bool = True, _resume: tuple | None = None) -> dict:
    """Run the experiment ``cfg`` describes and return its results (also written to the run folder).

    The run folder gets a checkpoint (``checkpoint.safetensors``) after every task and every
    ``cfg.checkpoint_every`` steps; it is removed once results.json is written.
    """
    cfg = cfg.resolved()
    out = prepare_run_dir(cfg, overwrite) if write else None
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    stream = build_stream(cfg)
    model = seeded_model(cfg, stream)
    strategy = build_strategy(cfg)
    ckpt = out / CHECKPOINT_FILE if out is not None else None
    results = run_stream(model, stream, strategy, cfg, checkpoint=ckpt, resume=_resume)
    results = {"run_id": cfg.run_id(), "config": cfg.to_dict(), **results}
    if out is not None:
        from ..report import write_run_outputs

        results["title"] = f"{cfg.benchmark} ({cfg.scenario}-incremental), {cfg.strategy}"
        write_run_outputs(out, results)
        results["run_dir"] = str(out)
        ckpt.unlink(missing_ok=True)  # results.json is complete: the checkpoint has served its purpose
    return results


def resume(run_dir: str | Path, options: dict | None = None, *, allow_changes: bool = False) -> dict:
    """Continue the run in ``run_dir`` from its last checkpoint.

    ``options`` are config fields given again on the command line: any that changes results and
    differs from the saved config is refused (naming the keys) unless ``allow_changes``.
    """
    run_dir = Path(run_dir)
    try:
        saved = json.loads((run_dir / "config.json").read_text())
    except FileNotFoundError:
        raise UsageError(f"--resume {run_dir}: no config.json there; give the folder of a run started with lifelong run") from None
    except (OSError, json.JSONDecodeError) as e:
        raise UsageError(f"--resume {run_dir}: cannot read config.json ({e}); the run folder is damaged") from None
    saved.pop("run_id", None)
    saved_cfg = RunConfig.from_dict(saved).resolved()
    options = {k: v for k, v in (options or {}).items() if k != "out"}
    cfg = dataclasses.replace(saved_cfg, **options, out=str(run_dir)).resolved()
    changed = [
        f"{k} (saved {getattr(saved_cfg, k)!r}, given {getattr(cfg, k)!r})"
        for k in saved_cfg.to_dict()
        if k not in NOT_IN_ID and getattr(cfg, k) != getattr(saved_cfg, k)
    ]
    if changed and not allow_changes:
        raise UsageError(
            f"--resume: options differ from the saved run in {'; '.join(changed)}; drop them, or pass "
            "--override-config to continue with the new values"
        )
    if (run_dir / "results.json").exists() and not changed:
        results = json.loads((run_dir / "results.json").read_text())
        return {**results, "run_dir": str(run_dir)}
    tensors, meta = load_checkpoint(run_dir / CHECKPOINT_FILE)
    return run(cfg, overwrite=True, _resume=(tensors, meta))


def run_stream(
    model: nn.Module,
    stream: TaskStream,
    strategy: Strategy,
    cfg: RunConfig,
    *,
    checkpoint: Path | None = None,
    resume: tuple[dict, dict] | None = None,
) -> dict:
    """Train ``model`` on each task of ``stream`` in turn; R[0] before training, R[i] after task i.

    With ``checkpoint`` (a file path) the run is saved at the end of every task and every
    ``cfg.checkpoint_every`` optimizer steps; ``resume`` = ``load_checkpoint(path)`` continues from one.
    """
    from ..eval import summarize

    settings = TrainSettings(cfg.optimizer, cfg.lr, cfg.momentum, cfg.batch_size, cfg.epochs, cfg.iterations)
    order = derived_generator(cfg.seed, "order")
    T, has_val = len(stream), stream[0].val is not None
    P = {  # progress: everything besides tensors that a resumed run needs (JSON)
        "task": 0, "step": 0, "partial_train_seconds": 0.0, "elapsed_seconds": 0.0, "steps_per_task": [],
        "R": np.zeros((T + 1, T)).tolist(), "R_val": np.zeros((T + 1, T)).tolist() if has_val else None,
        "timings": {"train_seconds": [], "fisher_seconds": [], "eval_seconds": []},
    }
    opt = None
    if resume is not None:
        tensors, meta = resume
        P = meta["progress"]
        load_model_state(model, split_prefix(tensors, "model"))
        strategy.load_state_dict(split_prefix(tensors, "strategy"))
        order.set_state(tensors["rng.order"])
        if P["step"] > 0:
            opt = make_optimizer(model, settings)
            load_optimizer_state(opt, split_prefix(tensors, "optim"), meta["optimizer"])
    started = time.perf_counter() - P["elapsed_seconds"]

    def measure(row: int) -> float:
        t0 = time.perf_counter()
        active = stream.active_mask(row - 1)  # after training task row-1 (row 0: every unit)
        P["R"][row] = evaluate(model, stream.tasks, "test", active=active).tolist()
        if has_val:
            P["R_val"][row] = evaluate(model, stream.tasks, "val", active=active).tolist()
        return time.perf_counter() - t0

    def save(opt, order_state) -> None:
        if checkpoint is None:
            return
        P["elapsed_seconds"] = time.perf_counter() - started
        tensors = {**with_prefix(model.state_dict(), "model"), **with_prefix(strategy.state_dict(), "strategy")}
        tensors["rng.order"] = order_state
        meta = {"config": cfg.to_dict(), "progress": P}
        if opt is not None:
            opt_t, meta["optimizer"] = optimizer_tensors(opt)
            tensors.update(with_prefix(opt_t, "optim"))
        save_checkpoint(checkpoint, tensors, meta)

    if resume is None:
        measure(0)
    bar = _progress_bar(cfg)
    for i in range(P["task"], T):
        task = stream[i]
        if bar is not None:
            bar.set_description(f"task {i + 1}/{T} {task.name}")
        t0, before = time.perf_counter(), P["partial_train_seconds"]  # time spent on this task before a resume

        def on_step(step: int, opt, order_state) -> None:
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                P.update(step=step, partial_train_seconds=before + time.perf_counter() - t0)
                save(opt, order_state)

        n = train_task(model, stream, i, strategy, settings, order, bar, opt=opt, start_step=P["step"], on_step=on_step)
        t1 = time.perf_counter()
        mask = task.mask if task.mask is not None else stream.active_mask(i)
        fisher_data = ((x, y, mask) for x, y, _ in batches([task], "train", batch_size=1000))
        strategy.after_task(model, task, fisher_data)
        t2 = time.perf_counter()
        P["timings"]["train_seconds"].append(before + t1 - t0)
        P["timings"]["fisher_seconds"].append(t2 - t1)
        P["timings"]["eval_seconds"].append(measure(i + 1))
        P["steps_per_task"].append(n)
        P.update(task=i + 1, step=0, partial_train_seconds=0.0)
        opt = None
        save(None, order.get_state())
    if bar is not None:
        bar.close()
    R = np.array(P["R"])
    results = {
        "benchmark": stream.name,
        "scenario": stream.scenario,
        "strategy": strategy.name,
        "task_names": stream.task_names,
        "accuracy_matrix": P["R"],
        "metrics": summarize(R),
    }
    if has_val:
        results["val_accuracy_matrix"] = P["R_val"]
        results["val_metrics"] = summarize(np.array(P["R_val"]))
    results.update(
        steps_per_task=P["steps_per_task"],
        timings={**P["timings"], "total_seconds": time.perf_counter() - started},
        peak_memory_bytes=_peak_rss_bytes(),
        n_parameters=count_parameters(model),
        seed=cfg.seed,
        threads=torch.get_num_threads(),
        versions=versions(),
    )
    return results


def _progress_bar(cfg: RunConfig):
    if not cfg.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=None, unit="step", dynamic_ncols=True, leave=False, file=sys.stderr)


def _peak_rss_bytes() -> int:
    """Peak resident memory of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def versions() -> dict[str, str]:
    return {
        "lifelong": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
    }
