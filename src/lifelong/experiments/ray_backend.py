"""A sweep's runs as Ray tasks (``lifelong sweep --backend ray``), on this machine or a Ray cluster.

Each job is one Ray Core task that runs :func:`~lifelong.experiments.executor.run_job` on the job's
config, exactly as the local pool does: the same run ids, the same folders, the same ``results.json``;
a finished run is skipped before anything is sent to Ray, an interrupted one resumes from its checkpoint
in the task. Ray Core, not Ray Tune: the grid, the run ids, the skipping and the selection are the
sweep's own, and what the sweep needs from Ray is only "run this function with C CPUs and G GPUs
somewhere"; Tune's trial folders, searchers and its own resuming would duplicate (and fight) them.

Decisions, for users of Ray:

- ``address`` None starts a new local Ray with every core (or joins the one this process already
  started with ``ray.init``, which is how the tests give it 2 CPUs; or the one ``RAY_ADDRESS`` names),
  never a cluster Ray would otherwise find by itself; ``auto`` (the cluster ``ray start`` made here) or
  ``ray://host:10001`` joins a cluster. A Ray the backend started is shut down when the sweep ends; one it joined is left running.
- ``cpus_per_run`` (default 1) is what Ray reserves per run and the run's PyTorch threads (its integer
  part, at least 1) unless the config sets ``threads``; ``gpus_per_run`` may be fractional (0.25: four
  runs share a GPU). With no GPU requested a run's ``--device auto`` means the CPU (Ray hides the GPUs
  from the task); with one, ``auto`` is the GPU Ray assigned. A request larger than the cluster's
  resources is refused before any task is sent (else Ray waits for it forever).
- Runs write their folders themselves, from wherever Ray places them: on a cluster of several machines
  the sweep folder (and a relative ``--data-dir``) must be on a file system every node mounts at the same
  path, and lifelong installed on every node. Each task works in the driver's working directory and sees
  the driver's ``LIFELONG_*`` environment variables. A path missing on a node fails that run with a
  message that says so, and the next sweep tries it again.
- Ctrl-C cancels the tasks; a driver killed outright (SIGKILL) takes its tasks with it, since Ray ends
  a dead driver's tasks (and a local Ray it started, but for two idle agent processes that stay until
  ``ray stop``). Each run stays resumable from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence

from ..errors import UsageError

__all__ = ["RayBackend"]


def _ray():
    try:
        import ray
    except ImportError:
        raise UsageError("`backend=ray` needs Ray: pip install 'lifelong[ray]' (or use the default `backend=local`)") from None
    return ray


def _lifelong_env() -> dict:
    return {k: v for k, v in os.environ.items() if k.startswith("LIFELONG_")}


def run_in_task(cfg, threads: int, cwd: str, env: dict) -> dict:
    """The body of one Ray task: the driver's working directory and LIFELONG_* variables, then the run."""
    import socket

    from .executor import run_job

    if not os.path.isdir(cwd):
        return {"status": "failed", "error": "UsageError",
                "message": f"the sweep's working directory {cwd} does not exist on node {socket.gethostname()}: "
                           "Ray runs need a file system every node mounts at the same path"}
    os.chdir(cwd)
    os.environ.update(env)
    return run_job(cfg, threads)


def _address_form(address: str) -> bool:
    """Whether ``address`` has a form Ray takes: auto, local, host:port or ray://host:port."""
    import re

    if address in ("auto", "local"):
        return True
    return bool(re.fullmatch(r"(ray://)?(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):[0-9]{1,5}", address))


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A ``host:port`` (or ``ray://host:port``) that nothing answers on is a one-line error now, not
    minutes of Ray's own retries; ``auto`` and other forms are left to Ray."""
    import socket

    hostport = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return
    except OSError as e:
        reason = e.strerror or type(e).__name__
    raise UsageError(f"`address={address}`: nothing answers there ({reason}); start a cluster with 'ray start --head', "
                     "pass its address (or auto), or leave `address` out for a local Ray")


@dataclasses.dataclass
class RayBackend:
    """Run a sweep's jobs as Ray tasks; see the module docstring for what each field means."""

    address: str | None = None
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0

    def __post_init__(self) -> None:
        for name in ("cpus_per_run", "gpus_per_run"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v < 0 or v == float("inf"):
                raise UsageError(f"`{name}` must be a number >= 0, got {v!r}")
            if abs(v * 10_000 - round(v * 10_000)) > 1e-6 * max(1.0, v):
                raise UsageError(f"`{name}={v:g}`: Ray reserves resources in steps of 0.0001; give a multiple of it")
        if self.address is not None and not _address_form(self.address):
            raise UsageError(f"`address={self.address}` is not a Ray address: give host:port (e.g. 10.0.0.5:6379), "
                             "ray://host:port, or auto (the cluster 'ray start' made here)")
        if self.cpus_per_run == 0 and self.gpus_per_run == 0:
            raise UsageError("`cpus_per_run=0` with no `gpus_per_run` reserves nothing: give each run at least some CPU")
        if self.gpus_per_run > 1 and self.gpus_per_run != int(self.gpus_per_run):
            raise UsageError(f"`gpus_per_run={self.gpus_per_run}`: above 1 it must be a whole number of GPUs")
        self._started = self._connected = False

    in_process = False  # runs train in Ray's worker processes

    def describe(self) -> dict:
        return {"name": "ray", "address": self.address, "cpus_per_run": self.cpus_per_run,
                "gpus_per_run": self.gpus_per_run}

    def connect(self):
        """Ray, initialized: joined (``address``, or a Ray this process started) or started here."""
        ray = _ray()
        if self._connected:
            return ray
        if not ray.is_initialized():
            if self.address:
                _check_reachable(self.address)
            env = _lifelong_env()
            try:
                # no --address: a new local Ray ("local"), never whichever cluster Ray would find on its
                # own (the last `ray start`, or another process's Ray); RAY_ADDRESS still names one to join
                ray.init(address=self.address or os.environ.get("RAY_ADDRESS") or "local", include_dashboard=False,
                         log_to_driver=False, runtime_env={"env_vars": env} if self.address and env else None)
            except ValueError as e:  # an address Ray cannot parse, after all
                raise UsageError(f"`address={self.address}`: Ray refused it ({str(e).splitlines()[0][:200]})") from None
            except ConnectionError as e:
                raise UsageError(f"`address={self.address}`: cannot reach a Ray cluster there ({e}); "
                                 "start one with 'ray start --head' or leave `address` out for a local Ray") from None
            self._started = True
        have = ray.cluster_resources()
        for what, need, key in (("CPUs", self.cpus_per_run, "CPU"), ("GPUs", self.gpus_per_run, "GPU")):
            if need > have.get(key, 0):
                self.close()
                raise UsageError(f"`{what[:3].lower()}s_per_run={need:g}`: the Ray cluster has {have.get(key, 0):g} "
                                 f"{what}; ask for at most that per run")
        self._connected = True
        return ray

    def close(self) -> None:
        if self._started:
            _ray().shutdown()
        self._started = self._connected = False

    def __enter__(self) -> "RayBackend":
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()  # a Ray this backend started; one it joined is left running

    def run(self, todo: Sequence, finish: Callable) -> None:
        if not todo:
            return
        ray = self.connect()
        threads = max(1, int(self.cpus_per_run))
        task = ray.remote(run_in_task).options(num_cpus=self.cpus_per_run, num_gpus=self.gpus_per_run,
                                               name="lifelong-run")
        cwd, env = os.getcwd(), _lifelong_env()
        pending = {}
        for job in todo:
            cfg = job.cfg.replace(progress=False)
            if self.gpus_per_run == 0 and cfg.runtime.device == "auto":
                cfg = cfg.replace(device="cpu")  # what auto means in a task that holds no GPU
            pending[task.remote(cfg, threads, cwd, env)] = job
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    job = pending.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except Exception as e:  # noqa: BLE001 - the task's worker died (killed, out of memory)
                        outcome = {"status": "failed", "error": type(e).__name__,
                                   "message": f"Ray task failed: {str(e).splitlines()[0] if str(e) else repr(e)}"}
                    finish(job, outcome)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
