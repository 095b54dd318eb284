"""Clocks and memory probes for the runner.

On CUDA, kernels run asynchronously: a clock read right after a call would only time the launch.
Every clock read here therefore calls ``torch.cuda.synchronize()`` first when the work runs on a
CUDA device. Peak memory is the process' resident set size (reset at the start of each cell where
Linux allows it) and, on CUDA, torch's maximum allocated bytes.
"""

from __future__ import annotations

import resource
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch


def uses_cuda(device: str) -> bool:
    """True when ``device`` ("cpu", "cuda", "cuda:N", "auto") resolves to a CUDA device here."""
    return torch.cuda.is_available() and (device == "auto" or str(device).startswith("cuda"))


def clock(device: str) -> float:
    """``time.perf_counter()``, after waiting for queued CUDA work when ``device`` is CUDA."""
    if uses_cuda(device):
        torch.cuda.synchronize()
    return time.perf_counter()


class Stopwatch:
    """Accumulates seconds over ``with stopwatch.running():`` blocks, and can leave out
    stretches inside them (``with stopwatch.paused():``), e.g. the MAP probes of the epoch
    callback during training."""

    def __init__(self, device: str):
        self.device = device
        self.seconds = 0.0
        self._started = None

    @contextmanager
    def running(self):
        self._started = clock(self.device)
        try:
            yield self
        finally:
            self.seconds += clock(self.device) - self._started
            self._started = None

    @contextmanager
    def paused(self):
        if self._started is None:
            yield self
            return
        self.seconds += clock(self.device) - self._started
        try:
            yield self
        finally:
            self._started = clock(self.device)

    def elapsed(self) -> float:
        """Seconds so far, the running stretch included."""
        running = clock(self.device) - self._started if self._started is not None else 0.0
        return self.seconds + running


def warm_up_device(device: str) -> None:
    """Create the CUDA context and a first allocation before any clock starts, so that the
    one-time driver start-up (often seconds) is not charged to the first timed step."""
    if uses_cuda(device):
        target = torch.device("cuda") if device == "auto" else torch.device(device)
        torch.ones(1, device=target).sum().item()
        torch.cuda.synchronize()


# --- memory --------------------------------------------------------------------------------------
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_memory(device: str) -> float | None:
    """Start a new peak-RSS window (Linux: writing 5 to clear_refs resets VmHWM) and reset torch's
    CUDA peak counter, so each cell reports its own peak even when cells share a process. Returns
    the resident memory (MB) at the window's start, None where it cannot be read: what the process
    already held (torch, the dataset, what earlier cells left), which the peak includes."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        pass  # not Linux, or not permitted: the peak then covers the process' lifetime
    if uses_cuda(device):
        torch.cuda.reset_peak_memory_stats()
    return _status_mb("VmRSS:")


def peak_memory(device: str, start_rss_mb: float | None = None) -> dict:
    """``{"peak_rss_mb": ..., "start_rss_mb": ..., "cuda_max_allocated_mb": ... or None}`` since the
    last reset, whose returned value is ``start_rss_mb``."""
    cuda = torch.cuda.max_memory_allocated() / 2**20 if uses_cuda(device) else None
    return {
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "start_rss_mb": None if start_rss_mb is None else round(start_rss_mb, 1),
        "cuda_max_allocated_mb": None if cuda is None else round(cuda, 1),
    }


def _status_mb(field: str) -> float | None:
    """A memory field of /proc/self/status in MB; None where there is no such file or field."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024  # reported in kB
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    peak = _status_mb("VmHWM:")
    if peak is not None:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, kB elsewhere
