"""Run folders: build a run from its config, write the folder, resume it, and never lose or mix one.

Run folder (written atomically, file by file):
    config.json               the resolved config, run id and data fingerprint, written before training starts
    checkpoint.safetensors    after every task and every --checkpoint-every steps; removed at the end
    results.json              accuracy matrix, metrics, timings, peak memory, device, versions, seed
    accuracy_matrix.csv       R[i][j]: row 0 before training, row i after training task i
    accuracy_curves.png       accuracy on each task along the stream (as Fig. 2A of Kirkpatrick et al. 2017)
    accuracy_matrix.png       heatmap of R
    .lock                     held by the process running or resuming the run (its pid inside)

Guarantees (:mod:`lifelong.experiments.folder` has the mechanisms): one process per folder; every
file names the run id, and a folder whose files disagree is refused; ``--overwrite`` removes the old
run's files first; a resume checks everything it would need (config, data, checkpoint structure, and
the state loaded into scratch objects) before it writes anything, and a config change on resume is
all-or-nothing. The training itself is :func:`lifelong.train.run_stream`, which knows nothing of
this folder; the stream, model and strategy a config describes are built by
:mod:`lifelong.experiments.build`.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Mapping

import torch

from .._io import atomic_write_json
from ..errors import UsageError
from ..strategies import registry
from ..train import distributed, resolve_device, run_stream
from ..train.checkpoint import CHECKPOINT_FILE, CheckpointError, load_checkpoint, save_checkpoint
from ..train.device import check_fits
from ..train.stream import check_run, restore
from . import folder
from .build import build_strategy, build_stream, parameter_count, seeded_model
from .config import CONFIG_VERSION, NOT_IN_ID, RunConfig

# What a run under way cannot change on resume: its stream, model, strategy and data order are in the
# checkpoint's tensors and progress. (Hyperparameters, training length and batch size can change.)
STRUCTURAL = ("benchmark", "scenario", "tasks", "angles", "split_groups", "class_units", "strategy", "model", "hidden",
              "pad", "mean", "std", "val_fraction", "train_samples", "shuffle_classes", "optimizer_state", "seed")


def config_record(cfg: RunConfig, data: dict | None = None) -> dict[str, Any]:
    """What config.json holds: the run id, the config format, the resolved config and the data's
    fingerprint (what identifies the data set, wherever it is read from)."""
    record = {"run_id": cfg.run_id(), "config_version": CONFIG_VERSION, **cfg.to_dict()}
    if data is not None:
        record["data"] = data
    return record


def _folder(cfg: RunConfig) -> Path:
    return Path(cfg.out) if cfg.out else Path("runs") / cfg.run_id()


def interrupted(cfg: RunConfig) -> bool:
    """Whether ``cfg``'s folder holds this run interrupted: its config and checkpoint, no results."""
    out = _folder(cfg)
    if not out.is_dir():
        return False
    ids = folder.identity(out)
    return ids["config.json"] == ids[CHECKPOINT_FILE] == cfg.resolved().run_id() and ids["results.json"] is None


def run(cfg: RunConfig, *, overwrite: bool = False, write: bool = True) -> dict:
    """Run the experiment ``cfg`` describes and return its results (also written to the run folder).

    Everything that can be checked is checked before the folder is touched (config, device, data,
    the model's size). The folder then gets a checkpoint after every task and every
    ``cfg.checkpoint_every`` steps; it is removed once results.json is written. A folder holding
    another run is refused unless ``overwrite`` (which removes that run's files); a folder holding an
    interrupted run of this same config is refused unless ``overwrite`` too (resume it instead).
    """
    if distributed.follower():
        return follow(resolve_device(cfg.device))
    cfg = cfg.resolved()
    device = resolve_device(cfg.device)
    stream = build_stream(cfg)
    check_fits(parameter_count(cfg, stream.input_shape, stream.n_outputs), device)
    check_run(seeded_model(cfg, stream), stream, build_strategy(cfg), cfg.train_settings())  # before any file
    if cfg.log == "tensorboard":
        from ..train.events import check_tensorboard

        check_tensorboard()
    if not write:
        return _train(cfg, stream, device, None, None)
    out = _folder(cfg)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot write the run folder {out}: {e.strerror or e}; choose another --out") from None
    with folder.locked(out):
        folder.clean_temporaries(out)
        folder.recover(out)
        ids = folder.identity(out)
        others = {ids[k] for k in ids if ids[k] is not None} - {cfg.run_id()}
        if others and not overwrite:
            raise UsageError(f"{out} holds another run ({sorted(others)[0]}); choose another --out or pass --overwrite")
        if ids[CHECKPOINT_FILE] == cfg.run_id() and ids["results.json"] is None and not overwrite:
            raise UsageError(f"{out} holds an interrupted run of this config: continue it with "
                             f"`lifelong run --resume {out}`, or pass --overwrite to start it again")
        folder.clear(out)
        record = config_record(cfg, stream.info.get("data"))
        _write_json(out / "config.json", record, out)
        return _train(cfg, stream, device, out, record)


def _write_json(path: Path, obj: Any, out: Path) -> None:
    try:
        atomic_write_json(path, obj)
    except OSError as e:
        raise UsageError(f"cannot write the run folder {out}: {e.strerror or e}; choose another --out") from None


def _train(cfg: RunConfig, stream, device, out: Path | None, record: dict | None, resume: tuple | None = None) -> dict:
    """Train (under the folder's lock when ``out``), write the outputs, remove the checkpoint. In a
    data-parallel run this is rank 0, which tells the other ranks what to train first (:func:`follow`)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    d = distributed.from_env(device)
    if d is not None:
        device = d.device
        distributed.announce(d, {"config": cfg.to_dict(), "out": None if out is None else str(out),
                                 "resume": resume is not None})
    model = seeded_model(cfg, stream)
    strategy = build_strategy(cfg)
    ckpt = out / CHECKPOINT_FILE if out is not None else None

    def save(tensors, meta) -> None:
        save_checkpoint(ckpt, tensors, _checkpoint_meta(record, meta))

    log = _event_log(cfg, out, resume)
    try:
        results = run_stream(model, stream, strategy, cfg.train_settings(), device=device,
                             checkpoint=save if ckpt is not None else None, checkpoint_every=cfg.checkpoint_every,
                             resume=resume, progress=cfg.progress, log=log, dist=d)
    finally:
        if log is not None:
            log.close()
    if d is not None:
        results["processes"] = d.world
    results = {"run_id": cfg.run_id(), "config": cfg.to_dict(), **results}
    if stream.info.get("data") is not None:
        results["data"] = stream.info["data"]
    if out is not None:
        from ..report import write_run_outputs

        results["title"] = f"{cfg.benchmark} ({cfg.scenario}-incremental), {cfg.strategy}"
        write_run_outputs(out, results)
        results["run_dir"] = str(out)
        ckpt.unlink(missing_ok=True)  # results.json is complete: the checkpoint has served its purpose
    if d is not None:
        d.close()  # the other ranks wait here for the folder to be complete
    return results


def follow(device: torch.device) -> dict:
    """A data-parallel run's rank > 0: wait for rank 0 to check and set up the run (its folder, a resume's
    checkpoint), then train alongside it without writing anything; returns this rank's results."""
    d = distributed.from_env(device)
    payload = distributed.announce(d, None)
    cfg = RunConfig.from_dict(payload["config"]).resolved()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = distributed.rank_device(d.rank, resolve_device(cfg.device))
    d.device = device
    stream = build_stream(cfg)
    resume = load_checkpoint(Path(payload["out"]) / CHECKPOINT_FILE) if payload["resume"] else None
    results = run_stream(seeded_model(cfg, stream), stream, build_strategy(cfg), cfg.train_settings(), device=device,
                         resume=resume, dist=d, checkpoint_every=cfg.checkpoint_every)  # the same NaN checks as rank 0
    d.close()
    return {"run_id": cfg.run_id(), "rank": d.rank, **results}


def _event_log(cfg: RunConfig, out: Path | None, resume: tuple | None):
    """events.jsonl in the run folder (appended to on resume), and TensorBoard's files in
    ``tensorboard/`` with ``--log tensorboard`` (purged past the checkpoint's step on resume)."""
    from ..train.events import EVENTS_FILE, Fanout, JsonLines, TensorBoard

    if out is None or cfg.log == "none":
        return None
    logs = [JsonLines(out / EVENTS_FILE)]
    if cfg.log == "tensorboard":
        P = resume[1]["progress"] if resume is not None else None
        purge = sum(P["steps_per_task"]) + P["step"] if P is not None else None
        logs.append(TensorBoard(out / "tensorboard", purge_step=purge))
    return Fanout(logs)


def _checkpoint_meta(record: dict, meta: Mapping[str, Any]) -> dict[str, Any]:
    config = {k: v for k, v in record.items() if k not in ("run_id", "config_version", "data")}
    return {"run_id": record["run_id"], "config": config, "data": record.get("data"), **meta}


def read_config(run_dir: Path, what: str = "--resume") -> RunConfig:
    """The resolved config of the run in ``run_dir`` (a version-1 flat config is converted)."""
    return RunConfig.from_dict(_read_record(run_dir, what), f"{run_dir / 'config.json'}").resolved()


def _read_record(run_dir: Path, what: str) -> dict:
    try:
        saved = folder.read_json(run_dir / "config.json", "run folder")
    except FileNotFoundError:
        raise UsageError(f"{what} {run_dir}: no config.json there; give the folder of a run started with lifelong run") from None
    if not isinstance(saved, dict):
        raise UsageError(f"{what} {run_dir}: config.json is not a JSON object; the run folder is damaged")
    return {k: v for k, v in saved.items() if k not in ("run_id", "data")}


def read_results(run_dir: Path) -> dict:
    """A finished run's results.json, checked: this run's id, an accuracy matrix and its metrics."""
    from ..report.files import results_problem

    path = run_dir / "results.json"
    results = folder.read_json(path, "run folder")
    problem = results_problem(results)
    if problem is not None:
        raise UsageError(f"{path} is damaged ({problem}); start the run again with --overwrite")
    return results


def resume(run_dir: str | Path, options: Mapping[str, Any] | None = None, *, allow_changes: bool = False) -> dict:
    """Continue the run in ``run_dir`` from its last checkpoint.

    ``options`` are flat config fields and strategy settings given again on the command line
    (:meth:`RunConfig.from_flat`): any that changes results and differs from the saved config is
    refused (naming the keys) unless ``allow_changes``; even then the stream, model and strategy
    (:data:`STRUCTURAL`) cannot change under a run. Nothing is written before the checkpoint has been
    verified (checksums, run id, config, data, structure) and loaded into scratch objects.
    """
    if distributed.follower():
        saved = folder.read_json(Path(run_dir) / "config.json", "run folder")
        return follow(resolve_device((options or {}).get("device") or saved.get("device") or "auto"))
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        _read_record(run_dir, "--resume")  # says what is missing
    with folder.locked(run_dir):
        folder.clean_temporaries(run_dir)
        folder.recover(run_dir)
        saved_cfg = read_config(run_dir)
        saved = folder.read_json(run_dir / "config.json", "run folder")
        folder.check_consistent(run_dir)
        cfg, changed = _resumed_config(run_dir, saved_cfg, options or {})
        if changed and not allow_changes:
            raise UsageError(
                f"--resume: options differ from the saved run in {'; '.join(changed.values())}; drop them, or pass "
                "--override-config to continue with the new values"
            )
        structural = [text for k, text in changed.items() if k in STRUCTURAL]
        if structural:
            raise UsageError(f"--resume --override-config cannot change {'; '.join(structural)} of a run under way: its "
                             "stream, model and strategy are in the checkpoint; start a new run (another --out)")
        if (run_dir / "results.json").exists():
            if not changed:
                return {**read_results(run_dir), "run_dir": str(run_dir)}
            raise UsageError(f"--resume {run_dir}: the run is finished (results.json); to train with other values start a "
                             "new run with another --out")
        tensors, meta = load_checkpoint(run_dir / CHECKPOINT_FILE)
        mid_task = isinstance(meta.get("progress"), dict) and meta["progress"].get("step") not in (0, None)
        if "optimizer" in changed and mid_task:
            raise UsageError(f"--resume --override-config cannot change {changed['optimizer']} in the middle of a task: "
                             "the checkpoint holds the optimizer's state (a task boundary starts a fresh one)")
        device = resolve_device(cfg.device)
        stream = build_stream(cfg)
        _check_checkpoint(run_dir, saved, saved_cfg, tensors, meta, stream)
        # the whole state, loaded into scratch objects: what the resumed run will do, minus the training
        restore(seeded_model(cfg, stream), build_strategy(cfg), cfg.train_settings(), (tensors, meta),
                torch.Generator(), torch.Generator(), "cpu", torch.Generator() if cfg.augment != "none" else None)
        record = config_record(cfg, stream.info.get("data"))
        if changed:  # all or nothing: journal, checkpoint under the new id, config.json
            folder.begin_override(run_dir, saved.get("run_id"), record["run_id"], record)
            kept = {k: meta[k] for k in ("progress", "optimizer") if k in meta}
            save_checkpoint(run_dir / CHECKPOINT_FILE, tensors, _checkpoint_meta(record, kept))
            folder.finish_override(run_dir, record)
        return _train(cfg, stream, device, run_dir, record, resume=(tensors, meta))


def _resumed_config(run_dir: Path, saved_cfg: RunConfig, options: Mapping[str, Any]) -> tuple[RunConfig, dict[str, str]]:
    options = {k: v for k, v in options.items() if k != "out"}
    strategy = options.get("strategy", saved_cfg.strategy)
    base = {f.name: getattr(saved_cfg, f.name) for f in dataclasses.fields(saved_cfg) if f.name != "settings"}
    base["settings"] = saved_cfg.settings if registry.check_name(strategy) == saved_cfg.strategy else None
    cfg = RunConfig.from_flat({**base, **options, "out": str(run_dir)}, "--resume: ").resolved()
    old, new = saved_cfg.flat(), cfg.flat()
    changed = {
        k: f"{k} (saved {old.get(k)!r}, given {new.get(k)!r})"
        for k in dict.fromkeys([*old, *new])
        if k not in NOT_IN_ID and old.get(k) != new.get(k)
    }
    return cfg, changed


def _check_checkpoint(run_dir: Path, saved: dict, cfg: RunConfig, tensors: dict, meta: dict, stream) -> None:
    """The checkpoint is this run's (run id, config, data) and its progress is within the run's bounds."""
    path = run_dir / CHECKPOINT_FILE
    if meta.get("run_id") != saved.get("run_id"):
        raise CheckpointError(f"{path} belongs to run {meta.get('run_id')!r}, config.json to {saved.get('run_id')!r}: "
                              "it is another run's checkpoint; put this run's back, or start again with --overwrite")
    theirs = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    ours = {k: v for k, v in saved.items() if k not in ("run_id", "config_version", "data")}
    differ = [k for k in sorted(set(ours) | set(theirs)) if k not in NOT_IN_ID and ours.get(k) != theirs.get(k)]
    if differ:
        raise CheckpointError(f"{path} was written with another config than config.json's (differing: "
                              f"{', '.join(differ[:5])}): it is not this run's checkpoint")
    data, recorded = stream.info.get("data"), saved.get("data")
    if recorded is not None and data is not None and recorded.get("md5") != data.get("md5"):
        diff = next(k for k in recorded.get("md5", {}) if recorded["md5"].get(k) != data["md5"].get(k))
        raise UsageError(f"--resume: the data found now ({cfg.data_dir or 'the default places'}) is not the data this run "
                         f"was trained on ({diff}: md5 {data['md5'].get(diff)}, the run's {recorded['md5'][diff]}); "
                         "give --data-dir the run's data")
    if recorded is not None and data is not None and "sha256" in recorded and recorded.get("sha256") != data.get("sha256"):
        where = f"--data {cfg.data_file}" if cfg.data_file else f"--stream {cfg.stream}"
        raise UsageError(f"--resume: the tasks {where} gives now are not the tasks this run was trained on (sha256 "
                         f"{str(data.get('sha256'))[:12]}…, the run's {str(recorded['sha256'])[:12]}…); put the run's "
                         "data back, or start a new run")
    if meta.get("data") != recorded:
        raise CheckpointError(f"{path} was written on other data than config.json records: it is not this run's")
    _check_progress(path, meta.get("progress"), cfg, stream)


def _check_progress(path: Path, P: Any, cfg: RunConfig, stream) -> None:
    """The progress record: required keys, types and ranges for this run's stream."""
    T, has_val = len(stream), stream[0].val is not None
    bad = f"checkpoint {path} has an invalid progress record"

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise CheckpointError(f"{bad}: {what}; delete it (the run restarts from the beginning)")

    need(isinstance(P, dict), "it is not an object")
    for key in ("task", "step", "steps_per_task", "R", "R_val", "timings", "partial_train_seconds", "elapsed_seconds"):
        need(key in P, f"{key!r} is missing")
    task, step = P["task"], P["step"]
    # task T, step 0: every task trained (the checkpoint after the last one), the results not written yet
    need(type(task) is int and 0 <= task <= T, f"task {task!r} is not in 0..{T}")
    need(type(step) is int and step >= 0, f"step {step!r} is not a count of steps")
    strategy = build_strategy(cfg)
    if task < T and not strategy.data_from_state:  # else: train_task checks it with the state loaded
        steps = cfg.iterations or cfg.epochs * math.ceil(
            sum(len(t.train) for t in strategy.training_tasks(stream, task)) / cfg.batch_size)
        need(step < steps, f"step {step} is past the {steps} steps of task {task + 1}")
    elif task == T:
        need(step == 0, f"step {step} after the last task")
    spt = P["steps_per_task"]
    need(isinstance(spt, list) and len(spt) == task and all(type(n) is int and n >= 1 for n in spt),
         f"steps_per_task must list {task} positive counts")

    def matrix(R, name: str) -> None:
        need(isinstance(R, list) and len(R) == T + 1 and all(isinstance(r, list) and len(r) == T for r in R),
             f"{name} must be {T + 1} rows of {T} accuracies")
        need(all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for r in R for v in r),
             f"{name} holds values outside [0, 1]")

    matrix(P["R"], "R")
    if has_val:
        matrix(P["R_val"], "R_val")
    else:
        need(P["R_val"] is None, "R_val is set for a run without a validation split")
    timings = P["timings"]
    need(isinstance(timings, dict) and set(timings) == {"train_seconds", "after_task_seconds", "eval_seconds"}
         and all(isinstance(v, list) and len(v) == task and all(isinstance(x, (int, float)) and x >= 0 for x in v)
                 for v in timings.values()), f"timings must hold {task} non-negative times each")
    for key in ("partial_train_seconds", "elapsed_seconds"):
        need(isinstance(P[key], (int, float)) and not isinstance(P[key], bool) and 0 <= P[key] < float("inf"),
             f"{key} is not a duration")
