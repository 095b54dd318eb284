import time

import numpy as np
import pytest
import torch

from hashbench.running import timing


def test_stopwatch_leaves_out_paused_stretches(monkeypatch):
    now = [100.0]  # a clock the test advances by hand, so the machine's load cannot move the result
    monkeypatch.setattr(time, "perf_counter", lambda: now[0])
    watch = timing.Stopwatch("cpu")
    with watch.running():
        now[0] += 0.05
        with watch.paused():
            now[0] += 0.2
        now[0] += 0.05
    assert watch.seconds == pytest.approx(0.1)
    with watch.running():
        now[0] += 0.02
        assert watch.elapsed() == pytest.approx(0.12)
    assert watch.seconds == pytest.approx(0.12)


def test_clock_synchronizes_cuda_only_for_cuda_work(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: calls.append(a))
    timing.clock("cpu")
    assert calls == []
    for device in ("cuda", "cuda:1", "auto"):
        timing.clock(device)
    assert len(calls) == 3
    watch = timing.Stopwatch("cuda")
    with watch.running(), watch.paused():
        pass
    assert len(calls) == 7  # start, pause, resume, stop


def test_peak_memory_sees_a_large_allocation_above_what_the_process_held_at_the_start():
    start = timing.reset_peak_memory("cpu")
    before = timing.peak_memory("cpu", start)
    block = np.ones(200 * 2**20 // 8)  # 200 MB, touched
    after = timing.peak_memory("cpu", start)
    del block
    assert after["peak_rss_mb"] - before["peak_rss_mb"] > 150
    assert 0 < after["start_rss_mb"] <= before["peak_rss_mb"] and after["peak_rss_mb"] - after["start_rss_mb"] > 150
    assert after["cuda_max_allocated_mb"] is None
    assert timing.peak_memory("cpu")["start_rss_mb"] is None  # no start given
