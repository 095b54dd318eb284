"""What a record says about where it ran: package versions, the source tree's commit, the host
and the device, and the clock in ISO 8601."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import socket
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import torch

from hashbench.running.timing import uses_cuda

VERSIONED_PACKAGES = ("hashbench", "torch", "torchvision", "numpy", "scipy", "scikit-learn", "pandas")


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def environment(device: str) -> dict:
    return {**static_environment(), "device_name": device_name(device)}


@functools.cache
def static_environment() -> dict:
    versions = {}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    commit, dirty = git_state()
    return {
        "hostname": socket.gethostname(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "git_commit": commit,
        "git_dirty": dirty,
    }


def git_state() -> tuple[str | None, bool | None]:
    """The commit of the source tree hashbench runs from, and whether it has local changes."""
    root = Path(__file__).resolve().parents[2]

    def git(*args):
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return None, None
        status = git("status", "--porcelain", "--untracked-files=no")
        return head.stdout.strip(), bool(status.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        return None, None


@functools.cache
def device_name(device: str) -> str:
    if uses_cuda(device):
        index = torch.device("cuda" if device == "auto" else device).index
        return torch.cuda.get_device_name(index or 0)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"
