import subprocess
import sys


def test_a_worker_process_flushes_subnormals_in_every_torch_thread():
    # what a Ray or Slurm worker runs first: the cell's preparation, before any torch work
    script = (
        "import torch; from hashbench.running.cell import Cell; "
        "from hashbench.running.worker import CellTask, prepare_worker; "
        "prepare_worker(CellTask(Cell('e', 'lsh', 'lsh', {}, 'toy', 8, 0), out_dir='.', epoch_bars=False)); "
        "torch.set_num_threads(2); x = torch.full((1 << 16,), 1e-40); print(int((x * 1.0).count_nonzero()))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "0"  # flushed in both threads' halves of the product


def test_releasing_freed_memory_collects_cycles_from_before_and_after_it():
    # in its own process: the release freezes the surviving objects, which pytest's should not be
    script = """
import weakref
from hashbench.running.worker import release_freed_memory
class Node: pass
def cycle():
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a
kept = cycle(); earlier = weakref.ref(kept)
release_freed_memory()  # kept survives it, so it is frozen
later = weakref.ref(cycle())
release_freed_memory()
del kept
release_freed_memory(everything=True)
print(later() is None, earlier() is None)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["True", "True"]
