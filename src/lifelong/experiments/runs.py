"""Run folders: build a run from its config, write the folder, resume it.

Run folder (written atomically, file by file):
    config.json               the resolved config and run id, written before training starts
    checkpoint.safetensors    after every task and every --checkpoint-every steps; removed at the end
    results.json              accuracy matrix, metrics, timings, peak memory, device, versions, seed
    accuracy_matrix.csv       R[i][j]: row 0 before training, row i after training task i
    accuracy_curves.png       accuracy on each task along the stream (as Fig. 2A of Kirkpatrick et al. 2017)
    accuracy_matrix.png       heatmap of R

The training itself is :func:`lifelong.train.run_stream`, which knows nothing of this folder; the
stream, model and strategy a config describes are built by :mod:`lifelong.experiments.build`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping

import torch

from .._io import atomic_write_json
from ..errors import UsageError
from ..strategies import registry
from ..train import resolve_device, run_stream
from ..train.device import check_fits
from ..train.checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from .build import build_strategy, build_stream, parameter_count, seeded_model
from .config import CONFIG_VERSION, NOT_IN_ID, RunConfig


def config_record(cfg: RunConfig) -> dict[str, Any]:
    """What config.json holds: the run id, the config format and the resolved config."""
    return {"run_id": cfg.run_id(), "config_version": CONFIG_VERSION, **cfg.to_dict()}


def prepare_run_dir(cfg: RunConfig, overwrite: bool = False) -> Path:
    """Create the run folder and write config.json; refuse a folder that holds a different run."""
    out = Path(cfg.out) if cfg.out else Path("runs") / cfg.run_id()
    previous = out / "config.json"
    try:
        if previous.exists() and not overwrite:
            old = json.loads(previous.read_text()).get("run_id")
            if old != cfg.run_id():
                raise UsageError(f"{out} holds another run ({old}); choose another --out or pass --overwrite")
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "config.json", config_record(cfg))
    except (OSError, json.JSONDecodeError, AttributeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise UsageError(f"cannot write the run folder {out}: {reason}; choose another --out") from None
    return out


def run(cfg: RunConfig, *, overwrite: bool = False, write: bool = True, _resume: tuple | None = None) -> dict:
    """Run the experiment ``cfg`` describes and return its results (also written to the run folder).

    The run folder gets a checkpoint (``checkpoint.safetensors``) after every task and every
    ``cfg.checkpoint_every`` steps; it is removed once results.json is written.
    """
    cfg = cfg.resolved()
    device = resolve_device(cfg.device)  # an unavailable device fails before the folder is touched
    stream = build_stream(cfg)
    check_fits(parameter_count(cfg, stream.input_shape, stream.n_outputs), device)
    out = prepare_run_dir(cfg, overwrite) if write else None
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    model = seeded_model(cfg, stream)
    strategy = build_strategy(cfg)
    ckpt = out / CHECKPOINT_FILE if out is not None else None
    record = config_record(cfg)

    def save(tensors, meta) -> None:
        save_checkpoint(ckpt, tensors, {"run_id": record["run_id"], "config": cfg.to_dict(), **meta})

    results = run_stream(model, stream, strategy, cfg.train_settings(), device=device,
                         checkpoint=save if ckpt is not None else None, checkpoint_every=cfg.checkpoint_every,
                         resume=_resume, progress=cfg.progress)
    results = {"run_id": record["run_id"], "config": cfg.to_dict(), **results}
    if out is not None:
        from ..report import write_run_outputs

        results["title"] = f"{cfg.benchmark} ({cfg.scenario}-incremental), {cfg.strategy}"
        write_run_outputs(out, results)
        results["run_dir"] = str(out)
        ckpt.unlink(missing_ok=True)  # results.json is complete: the checkpoint has served its purpose
    return results


def read_config(run_dir: Path, what: str = "--resume") -> RunConfig:
    """The resolved config of the run in ``run_dir`` (a version-1 flat config is converted)."""
    try:
        saved = json.loads((run_dir / "config.json").read_text())
    except FileNotFoundError:
        raise UsageError(f"{what} {run_dir}: no config.json there; give the folder of a run started with lifelong run") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{what} {run_dir}: cannot read config.json ({e}); the run folder is damaged") from None
    if not isinstance(saved, dict):
        raise UsageError(f"{what} {run_dir}: config.json is not a JSON object; the run folder is damaged")
    saved.pop("run_id", None)
    return RunConfig.from_dict(saved, f"{run_dir / 'config.json'}").resolved()


def resume(run_dir: str | Path, options: Mapping[str, Any] | None = None, *, allow_changes: bool = False) -> dict:
    """Continue the run in ``run_dir`` from its last checkpoint.

    ``options`` are flat config fields and strategy settings given again on the command line
    (:meth:`RunConfig.from_flat`): any that changes results and differs from the saved config is
    refused (naming the keys) unless ``allow_changes``.
    """
    run_dir = Path(run_dir)
    saved_cfg = read_config(run_dir)
    options = {k: v for k, v in (options or {}).items() if k != "out"}
    strategy = options.get("strategy", saved_cfg.strategy)
    base = {f.name: getattr(saved_cfg, f.name) for f in dataclasses.fields(saved_cfg) if f.name != "settings"}
    base["settings"] = saved_cfg.settings if registry.check_name(strategy) == saved_cfg.strategy else None
    cfg = RunConfig.from_flat({**base, **options, "out": str(run_dir)}, "--resume: ").resolved()
    old, new = saved_cfg.flat(), cfg.flat()
    changed = [
        f"{k} (saved {old.get(k)!r}, given {new.get(k)!r})"
        for k in dict.fromkeys([*old, *new])
        if k not in NOT_IN_ID and old.get(k) != new.get(k)
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
