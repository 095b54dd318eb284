"""The mosaic build gives the same arrays whatever CPU kernels torch picks.

Each build runs in a fresh interpreter with torch's kernel dispatch pinned by environment
variables (``ATEN_CPU_CAPABILITY`` for ATen's vectorised kernels, ``ONEDNN_MAX_CPU_ISA`` for
oneDNN's convolutions), as on machines with other instruction sets. The same script also hashes
the plain float32 backbone's features of the same images, which do change with the kernels:
that shows the pinning takes effect, so equal fingerprints are not an accident of one kernel.
"""

import os
import subprocess
import sys

import pytest

SCRIPT = """
import hashlib, numpy as np, torch, hashbench as hb
ds = hb.load_dataset("mosaic", size="tiny", n_train=60, n_query=20, n_database=100, n_web=20, cache=False)
images = ds.train.images.load(np.arange(len(ds.train)))
with torch.no_grad():
    floats = ds.train.images.backbone()(torch.from_numpy(images).float() / 255).numpy()
print(ds.fingerprint, hashlib.sha256(floats.tobytes()).hexdigest())
"""
KERNELS = {
    "native": {},
    "aten-avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "onednn-avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "scalar": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"},
}


def build_under(variables: dict) -> tuple[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], env={**env, **variables}, capture_output=True, text=True, check=True
    )
    fingerprint, float_hash = result.stdout.split()
    return fingerprint, float_hash


@pytest.mark.slow
def test_fingerprint_is_the_same_under_every_kernel_choice():
    builds = {name: build_under(variables) for name, variables in KERNELS.items()}
    assert len({fingerprint for fingerprint, _ in builds.values()}) == 1, builds
    # The float network's bits differ under at least one pinning on CPUs with AVX-512; on a CPU
    # without it every pinning may run the same kernels, and the check above is then weaker.
    print({name: float_hash[:16] for name, (_, float_hash) in builds.items()})
