"""Run folders: build a run from its config, write the folder, resume it, and never lose or mix one.

Run folder (written atomically, file by file):
    config.json               the resolved config (nested), run id and data fingerprint, written before training
    checkpoint.safetensors    after every task and every checkpoint_every steps; removed at the end
    results.json              accuracy matrix, metrics, timings, peak memory, device, versions, seed
    accuracy_matrix.csv       R[i][j]: row 0 before training, row i after training task i
    accuracy_curves.png       accuracy on each task along the stream (as Fig. 2A of Kirkpatrick et al. 2017)
    accuracy_matrix.png       heatmap of R
    events.jsonl              the event log (lifelong.train.events)
    .lock                     held by the process running or resuming the run (its pid inside)

Guarantees (:mod:`lifelong.experiments.folder` has the mechanisms): one process per folder; every
file names the run id, and a folder whose files disagree is refused; ``--overwrite`` removes the old
run's files first; a resume loads everything it needs (config, data, the whole checkpoint into the
Learner that will train) before it writes anything, and a config change on resume is all-or-nothing.
The training itself is :func:`lifelong.train.train_stream` on a :class:`~lifelong.train.Learner`, which
knows nothing of this folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from .._io import atomic_write_json
from ..errors import DiskError, UsageError
from ..strategies import registry
from ..train import Learner, RunResult, distributed, resolve_device, train_stream
from ..train.checkpoint import CHECKPOINT_FILE, CheckpointError, load_checkpoint, read_header, save_checkpoint
from ..train.device import check_fits, reset_peak_memory
from ..train.learner import check_run
from . import folder
from .build import build_stream, seeded_model
from .config import NOT_IN_ID, ResolvedRun, RunConfig, flat_record

# What a run under way cannot change on resume: its stream, model, strategy and data order are in the
# checkpoint's tensors and progress. (Hyperparameters, training length and batch size can change.)
STRUCTURAL = ("benchmark", "scenario", "tasks", "angles", "split_groups", "class_units", "strategy", "model", "hidden",
              "pad", "mean", "std", "val_fraction", "train_samples", "shuffle_classes", "optimizer_state", "seed",
              "data_file", "stream", "units", "init", "eval_scenarios")


def config_record(cfg: ResolvedRun, data: dict | None = None) -> dict[str, Any]:
    """What config.json holds: the run id, the nested config and the data's fingerprint (what identifies
    the data set, wherever it is read from)."""
    record = {"run_id": cfg.run_id, **cfg.to_record()}
    if data is not None:
        record["data"] = data
    return record


def run_folder(cfg: ResolvedRun) -> Path:
    return Path(cfg.runtime.out) if cfg.runtime.out else Path("runs") / cfg.run_id


def interrupted(cfg: RunConfig) -> bool:
    """Whether ``cfg``'s folder holds this run interrupted: its config and checkpoint, no results."""
    cfg = cfg.resolve()
    out = run_folder(cfg)
    if not out.is_dir():
        return False
    ids = folder.identity(out)
    return ids["config.json"] == ids[CHECKPOINT_FILE] == cfg.run_id and ids["results.json"] is None


def run(cfg: RunConfig, *, overwrite: bool = False, write: bool = True) -> RunResult:
    """Run the experiment ``cfg`` describes and return its results (also written to the run folder).

    Everything that can be checked is checked before the folder is touched (config, device, data,
    the model's size). The folder then gets a checkpoint after every task and every
    ``checkpoint_every`` steps; it is removed once results.json is written. A folder holding
    another run is refused unless ``overwrite`` (which removes that run's files); a folder holding an
    interrupted run of this same config is refused unless ``overwrite`` too (resume it instead).
    """
    if distributed.follower():
        return follow(resolve_device(cfg.runtime.device))
    cfg = cfg.resolve()
    device = resolve_device(cfg.runtime.device)
    stream = build_stream(cfg)
    cfg = cfg.with_data(stream.info.get("data"))  # the run id covers the very data it trains on
    check_fits(cfg.model.parameter_count(stream.input_shape, stream.n_outputs), device)
    strategy = registry.build(cfg.strategy)
    check_run(seeded_model(cfg, stream), stream, strategy, cfg.train, device)  # before any file
    if cfg.runtime.log == "tensorboard":
        from ..train.events import check_tensorboard

        check_tensorboard()
    if not write:
        return _train(cfg, stream, device, None, None)
    out = run_folder(cfg)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot write the run folder {out}: {e.strerror or e}; choose another `out`") from None
    with folder.locked(out):
        folder.clean_temporaries(out)
        folder.recover(out)
        ids = folder.identity(out)
        others = {ids[k] for k in ids if ids[k] is not None} - {cfg.run_id}
        if others and not overwrite:
            raise UsageError(f"{out} holds another run ({sorted(others)[0]}); choose another `out` or pass `overwrite=True`")
        if ids["results.json"] == cfg.run_id and not overwrite:
            raise UsageError(f"{out} holds this run, finished (results.json): read it with `resume={out}`, or train it "
                             "again with `overwrite=True`")
        if ids[CHECKPOINT_FILE] == cfg.run_id and ids["results.json"] is None and not overwrite:
            raise UsageError(f"{out} holds an interrupted run of this config: continue it (`resume={out}`) or start it "
                             "again (`overwrite=True`)")
        folder.clear(out)
        record = config_record(cfg, stream.info.get("data"))
        _write_json(out / "config.json", record, out)
        return _train(cfg, stream, device, out, record)


def _write_json(path: Path, obj: Any, out: Path) -> None:
    try:
        atomic_write_json(path, obj)
    except OSError as e:
        raise UsageError(f"cannot write the run folder {out}: {e.strerror or e}; choose another `out`") from None


def learner_for(cfg: ResolvedRun, stream, device, dist=None) -> Learner:
    """The Learner of a run: its seeded model, its strategy, its training settings and seed."""
    return Learner(seeded_model(cfg, stream), registry.build(cfg.strategy), stream, settings=cfg.train, seed=cfg.seed,
                   device=device, dist=dist)


def _train(cfg: ResolvedRun, stream, device, out: Path | None, record: dict | None, resume: tuple | None = None,
           cl: Learner | None = None) -> RunResult:
    """Train (under the folder's lock when ``out``), write the outputs, remove the checkpoint. In a
    data-parallel run this is rank 0, which tells the other ranks what to train first (:func:`follow`)."""
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    d = distributed.from_env(device)
    if d is not None:
        device = d.device
        distributed.announce(d, {"config": cfg.to_record(), "out": None if out is None else str(out),
                                 "resume": resume is not None})
        cl = None  # each rank trains on its own device, in its own process group
    reset_peak_memory(device)
    if cl is None:
        cl = learner_for(cfg, stream, device, d)
        if resume is not None:
            cl.load_state_dict(resume)
    ckpt = out / CHECKPOINT_FILE if out is not None else None

    say = _say if not (cfg.runtime.progress or cfg.runtime.quiet) and (d is None or d.main) else None

    def save(tensors, meta) -> None:
        try:
            save_checkpoint(ckpt, tensors, _checkpoint_meta(record, meta))
        except OSError as e:  # a full disk: the write was atomic, the previous checkpoint is whole
            raise DiskError(f"cannot write {ckpt}: {e.strerror or e}; {_survived(ckpt)}: free some space, then "
                            f"continue with `resume={out}`") from None
        if say is not None:
            p = meta.get("progress") or {}
            where = f"task {p.get('task', 0) + 1}, step {p['step']}" if p.get("step") else f"after task {p.get('task')}"
            say(f"checkpoint ({where}) -> {ckpt}")

    log = _event_log(cfg, out, cl)
    if say is not None:  # no progress bar (no terminal, or --no-progress): a line per task
        from ..train.events import Fanout

        log = Fanout([x for x in (log, _task_lines(say, cl)) if x is not None])
    try:
        result = train_stream(cl, checkpoint=save if ckpt is not None else None, checkpoint_every=cfg.runtime.checkpoint_every,
                              progress=cfg.runtime.progress, log=log, resumed=resume is not None)
    finally:
        if log is not None:
            log.close()
    result.run_id, result.config = cfg.run_id, cfg.to_record()
    result.data = stream.info.get("data")
    if out is not None:
        from ..report import write_run_outputs

        result.title = f"{cfg.stream.benchmark} ({cfg.stream.scenario}-incremental), {cfg.strategy_name}"
        try:
            write_run_outputs(out, result.to_dict())
        except OSError as e:
            raise DiskError(f"cannot write the results into {out}: {e.strerror or e} ({e.filename or 'a file'}); "
                            f"{_survived(ckpt)}: free some space, then finish with `resume={out}`") from None
        result.run_dir = str(out)
        ckpt.unlink(missing_ok=True)  # results.json is complete: the checkpoint has served its purpose
    if d is not None:
        d.close()  # the other ranks wait here for the folder to be complete
    return result


def _say(text: str) -> None:
    import sys

    print(text, file=sys.stderr, flush=True)


def _task_lines(say, cl: Learner):
    """An event log that prints, for each task, its steps, seconds and the accuracy row so far."""
    T = len(cl.stream)

    def on(event: dict) -> None:
        if event.get("event") == "task":
            t = event["task"]
            row = " ".join(f"{100 * a:.1f}" if j <= t else "-" for j, a in enumerate(event["accuracy"]))
            say(f"task {t + 1}/{T} {event.get('name', '')!s}: {event['steps']} steps, "
                f"{event.get('train_seconds', 0.0):.3g} s; accuracy % [{row}]")

    return on


def _survived(ckpt: Path) -> str:
    """What a failed write left: the last checkpoint's position, in words."""
    try:
        p = read_header(ckpt).get("progress") or {}
    except (OSError, CheckpointError):
        return "no checkpoint was written yet (config.json is intact)"
    done, step = p.get("task"), p.get("step")
    where = f"after {done} task(s)" + (f" and {step} step(s) of the next" if step else "")
    return f"the last checkpoint ({where}) is intact"


def follow(device: torch.device) -> RunResult:
    """A data-parallel run's rank > 0: wait for rank 0 to check and set up the run (its folder, a resume's
    checkpoint), then train alongside it without writing anything; returns this rank's results."""
    d = distributed.from_env(device)
    payload = distributed.announce(d, None)
    cfg = RunConfig.from_record(payload["config"]).resolve()
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    d.device = distributed.rank_device(d.rank, resolve_device(cfg.runtime.device))
    stream = build_stream(cfg)
    cl = learner_for(cfg, stream, d.device, d)
    if payload["resume"]:
        cl.load_state_dict(load_checkpoint(Path(payload["out"]) / CHECKPOINT_FILE))
    result = train_stream(cl, checkpoint_every=cfg.runtime.checkpoint_every)  # the same NaN checks as rank 0
    d.close()
    result.run_id, result.rank = cfg.run_id, d.rank
    return result


def _event_log(cfg: ResolvedRun, out: Path | None, cl: Learner):
    """events.jsonl in the run folder (appended to on resume), and TensorBoard's files in
    ``tensorboard/`` with ``log='tensorboard'`` (purged past the checkpoint's step on resume)."""
    from ..train.events import EVENTS_FILE, Fanout, JsonLines, TensorBoard

    if out is None or cfg.runtime.log == "none":
        return None
    logs = [JsonLines(out / EVENTS_FILE)]
    if cfg.runtime.log == "tensorboard":
        task, step = cl.position
        purge = sum(cl.steps_per_task) + step if (task, step) != (0, 0) else None
        logs.append(TensorBoard(out / "tensorboard", purge_step=purge))
    return Fanout(logs)


def _checkpoint_meta(record: dict, meta: Mapping[str, Any]) -> dict[str, Any]:
    config = {k: v for k, v in record.items() if k not in ("run_id", "config_version", "data")}
    return {"run_id": record["run_id"], "config": config, "data": record.get("data"), **meta}


def read_config(run_dir: Path, what: str = "resume") -> ResolvedRun:
    """The resolved config of the run in ``run_dir`` (a config of 0.2 or 0.1 is converted), with the
    fingerprint of the data it recorded (its id then needs no data read)."""
    record = _read_record(run_dir, what)
    cfg = RunConfig.from_record(record, f"{run_dir / 'config.json'}").resolve()
    return cfg.with_data(record["data"]) if isinstance(record.get("data"), dict) else cfg


def _read_record(run_dir: Path, what: str) -> dict:
    try:
        saved = folder.read_json(run_dir / "config.json", "run folder")
    except FileNotFoundError:
        raise UsageError(f"{what} {run_dir}: no config.json there; give the folder of a run (one that `run` wrote)") from None
    if not isinstance(saved, dict):
        raise UsageError(f"{what} {run_dir}: config.json is not a JSON object; the run folder is damaged")
    return saved


def read_results(run_dir: Path) -> RunResult:
    """A finished run's results.json, checked: this run's id, an accuracy matrix and its metrics."""
    from ..report.files import results_problem

    path = run_dir / "results.json"
    results = folder.read_json(path, "run folder")
    problem = results_problem(results)
    if problem is not None:
        raise UsageError(f"{path} is damaged ({problem}); start the run again (`overwrite=True`)")
    return RunResult.from_dict(results, str(run_dir))


def resume(run_dir: str | Path, options: Mapping[str, Any] | None = None, *, override_config: bool = False) -> RunResult:
    """Continue the run in ``run_dir`` from its last checkpoint.

    ``options`` are flat config keys given again (:meth:`RunConfig.from_flat`): any that changes results
    and differs from the saved config is refused (naming the keys) unless ``override_config``; even then
    the stream, model and strategy (:data:`STRUCTURAL`) cannot change under a run. Nothing is written
    before the checkpoint has been verified (checksums, run id, config, data) and loaded into the
    Learner that goes on training.
    """
    if distributed.follower():  # the device from the saved config; a folder rank 0 refuses: it says why
        try:
            saved = folder.read_json(Path(run_dir) / "config.json", "run folder")
        except (OSError, UsageError):
            saved = {}
        device = (options or {}).get("device") or flat_record(saved if isinstance(saved, dict) else {}).get("device")
        return follow(resolve_device(device or "auto"))
    run_dir = Path(run_dir)
    out = (options or {}).get("out")
    if out is not None and Path(out).resolve() != run_dir.resolve():
        raise UsageError(f"`resume={run_dir}` continues the run in its own folder; `out={out}` would be another one: drop "
                         "`out` (to continue a copy elsewhere, copy the folder and resume the copy)")
    if not (run_dir / "config.json").is_file():
        _read_record(run_dir, "resume")  # says what is missing
    with folder.locked(run_dir):
        folder.clean_temporaries(run_dir)
        folder.recover(run_dir)
        saved_cfg = read_config(run_dir)
        saved = folder.read_json(run_dir / "config.json", "run folder")
        folder.check_consistent(run_dir)
        cfg, changed = _resumed_config(run_dir, saved_cfg, options or {})
        if changed and not override_config:
            raise UsageError(
                f"resume {run_dir}: options differ from the saved run in {'; '.join(changed.values())}; drop them, or "
                "pass `override_config=True` to continue with the new values"
            )
        structural = [text for k, text in changed.items() if k in STRUCTURAL]
        if structural:
            raise UsageError(f"resume {run_dir}: `override_config` cannot change {'; '.join(structural)} of a run under way: "
                             "its stream, model and strategy are in the checkpoint; start a new run (another `out`)")
        if (run_dir / "results.json").exists():
            if not changed:
                return read_results(run_dir)
            raise UsageError(f"resume {run_dir}: the run is finished (results.json); to train with other values start a "
                             "new run with another `out`")
        tensors, meta = load_checkpoint(run_dir / CHECKPOINT_FILE)
        mid_task = isinstance(meta.get("progress"), dict) and meta["progress"].get("step") not in (0, None)
        if "optimizer" in changed and mid_task:
            raise UsageError(f"resume {run_dir}: `override_config` cannot change {changed['optimizer']} in the middle of a task: "
                             "the checkpoint holds the optimizer's state (a task boundary starts a fresh one)")
        device = resolve_device(cfg.runtime.device)
        stream = build_stream(cfg)
        cfg = cfg.with_data(stream.info.get("data"))
        _check_checkpoint(run_dir, saved, saved_cfg, meta, stream)
        # the whole state, loaded into the Learner that trains on (one device per process: a data-parallel
        # run loads it again on each rank's)
        cl = learner_for(cfg, stream, device)
        cl.load_state_dict((tensors, meta), str(run_dir / CHECKPOINT_FILE))
        record = config_record(cfg, stream.info.get("data"))
        # a new id, all or nothing (journal, checkpoint under the new id, config.json): changed options, or a
        # folder of a version whose ids did not cover the data (0.2's, on data other than the published files)
        if changed or record["run_id"] != saved.get("run_id"):
            folder.begin_override(run_dir, saved.get("run_id"), record["run_id"], record)
            kept = {k: meta[k] for k in ("progress", "optimizer", "strategy") if k in meta}
            save_checkpoint(run_dir / CHECKPOINT_FILE, tensors, _checkpoint_meta(record, kept))
            folder.finish_override(run_dir, record)
        return _train(cfg, stream, device, run_dir, record, resume=(tensors, meta), cl=cl)


def _resumed_config(run_dir: Path, saved_cfg: ResolvedRun, options: Mapping[str, Any]) -> tuple[ResolvedRun, dict[str, str]]:
    options = {k: v for k, v in options.items() if k != "out"}
    cfg = RunConfig.from_flat({**options, "out": str(run_dir)}, f"resume {run_dir}: ", base=saved_cfg).resolve()
    old, new = saved_cfg.flat(), cfg.flat()
    changed = {
        k: f"{k} (saved {old.get(k)!r}, given {new.get(k)!r})"
        for k in dict.fromkeys([*old, *new])
        if k not in NOT_IN_ID and old.get(k) != new.get(k)
    }
    return cfg, changed


def _check_checkpoint(run_dir: Path, saved: dict, cfg: ResolvedRun, meta: dict, stream) -> None:
    """The checkpoint is this run's (run id, config, data)."""
    path = run_dir / CHECKPOINT_FILE
    if meta.get("run_id") != saved.get("run_id"):
        raise CheckpointError(f"{path} belongs to run {meta.get('run_id')!r}, config.json to {saved.get('run_id')!r}: "
                              "it is another run's checkpoint; put this run's back, or start again (`overwrite=True`)")
    theirs = flat_record(meta.get("config") if isinstance(meta.get("config"), dict) else {})
    ours = flat_record({k: v for k, v in saved.items() if k not in ("run_id", "data")})
    differ = [k for k in sorted(set(ours) | set(theirs), key=str)
              if k not in NOT_IN_ID and k not in ("run_id", "config_version") and ours.get(k) != theirs.get(k)]
    if differ:
        raise CheckpointError(f"{path} was written with another config than config.json's (differing: "
                              f"{', '.join(map(str, differ[:5]))}): it is not this run's checkpoint")
    data, recorded = stream.info.get("data"), saved.get("data")
    if recorded is not None and data is not None and recorded.get("md5") != data.get("md5"):
        diff = next(k for k in recorded.get("md5", {}) if recorded["md5"].get(k) != data["md5"].get(k))
        raise UsageError(f"resume {run_dir}: the data found now ({cfg.runtime.data_dir or 'the default places'}) is not the data "
                         f"this run was trained on ({diff}: md5 {data['md5'].get(diff)}, the run's {recorded['md5'][diff]}); "
                         "give `data_dir` the run's data")
    if recorded is not None and data is not None and "sha256" in recorded and recorded.get("sha256") != data.get("sha256"):
        where = (f"`data_file={cfg.stream.data_file}`" if cfg.stream.data_file
                 else f"`entry_point={cfg.stream.entry_point}`")
        raise UsageError(f"resume {run_dir}: the tasks {where} gives now are not the tasks this run was trained on (sha256 "
                         f"{str(data.get('sha256'))[:12]}…, the run's {str(recorded['sha256'])[:12]}…); put the run's "
                         "data back, or start a new run")
    if meta.get("data") != recorded:
        raise CheckpointError(f"{path} was written on other data than config.json records: it is not this run's")
