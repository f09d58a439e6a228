"""Devices: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"`` to a torch.device, with a
one-line error when the device is not there; peak memory of a run on it."""

from __future__ import annotations

import os
import resource
import sys

import torch

from ..errors import UsageError

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


def check_device_name(spec: str) -> None:
    """A UsageError unless ``spec`` has the form of a device name (whether it is present is checked when
    a run starts, by :func:`resolve_device`)."""
    s = str(spec).strip().lower()
    if s in ("auto", "cpu", "cuda", "mps") or (s.startswith("cuda:") and s[5:].isdigit()):
        return
    raise UsageError(f"unknown device {spec!r}: choose one of {', '.join(DEVICES)}", params=("device",))


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The device ``spec`` names. ``auto``: the first CUDA GPU if there is one, else the CPU (never
    MPS, whose kernels do not all match the CPU's; ask for it by name)."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise UsageError("device='mps': this machine has no MPS (Apple GPU) backend; use device='cpu'",
                             params=("device",))
        return torch.device("mps")
    if spec == "cuda" or spec.startswith("cuda:"):
        index = 0
        if spec != "cuda":
            tail = spec.split(":", 1)[1]
            if not tail.isdigit():
                raise UsageError(f"device={spec}: expected cuda:N with N a GPU index, e.g. cuda:0", params=("device",))
            index = int(tail)
        if not torch.cuda.is_available():
            raise UsageError(f"device={spec}: no CUDA GPU is available here (torch {torch.__version__}, "
                             f"CUDA build: {torch.version.cuda or 'none'}); use device='cpu'", params=("device",))
        if index >= torch.cuda.device_count():
            raise UsageError(f"device={spec}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                             f"indices 0..{torch.cuda.device_count() - 1}", params=("device",))
        return torch.device("cuda", index)
    raise UsageError(f"unknown device {spec!r}: choose one of {', '.join(DEVICES)}", params=("device",))


def memory_bytes(device: torch.device) -> int | None:
    """The memory a run on ``device`` can use at most: the GPU's, or the machine's RAM; None if unknown."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.mem_get_info(device)[1])
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError, RuntimeError):
        return None


def check_fits(n_parameters: int, device: torch.device, copies: int = 8, what: str = "the model") -> None:
    """A UsageError when ``copies`` float32 copies of ``n_parameters`` (parameters, gradients, optimizer
    moments, a strategy's importances and anchors) cannot fit in the device's memory."""
    need, have = 4 * copies * n_parameters, memory_bytes(device)
    if have is not None and need > have:
        raise UsageError(
            f"{what} would have {n_parameters:,} parameters: about {need / 1e9:,.1f} GB with their gradients, "
            f"optimizer and strategy state, more than the {have / 1e9:,.1f} GB of {device}; use smaller `hidden` widths",
            params=("hidden",))


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_device_memory(device: torch.device) -> int | None:
    """Peak bytes allocated on a CUDA device since the last reset; None on other devices."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return None


def peak_rss_bytes() -> int:
    """Peak resident memory of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)
