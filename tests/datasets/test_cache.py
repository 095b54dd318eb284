import os
import shutil

import numpy as np
import pytest

import hashbench as hb
from hashbench.datasets import mosaic
from hashbench.datasets.cache import read_npz_whole, resolve_data_dir, write_npz_atomic
from tests.conftest import MICRO


def _cache_file(directory):
    (path,) = directory.glob("mosaic-*.npz")
    return path


def test_second_load_reads_the_cache(micro, micro_dir, monkeypatch):
    def no_build(params):
        raise AssertionError("rebuilt although the cache file is valid")

    monkeypatch.setattr(mosaic, "_build_arrays", no_build)
    again = hb.load_dataset("mosaic", data_dir=micro_dir, **MICRO)
    assert again.train.features.tobytes() == micro.train.features.tobytes()
    assert again.info["cache_file"] == str(_cache_file(micro_dir))


def test_parameters_key_the_cache(micro, micro_dir, monkeypatch):
    built = []
    monkeypatch.setattr(mosaic, "_build_arrays", lambda params: built.append(params) or 1 / 0)
    with pytest.raises(ZeroDivisionError):
        hb.load_dataset("mosaic", data_dir=micro_dir, **{**MICRO, "seed": 7})
    assert built and built[0]["seed"] == 7


@pytest.mark.parametrize("damage", ["truncate", "flip-byte"])
def test_damaged_cache_is_rebuilt_with_a_warning(micro, micro_dir, tmp_path, monkeypatch, damage):
    good = _cache_file(micro_dir)
    path = tmp_path / good.name
    content = bytearray(good.read_bytes())
    if damage == "truncate":
        content = content[: len(content) // 2]
    else:
        content[len(content) // 2] ^= 0xFF
    path.write_bytes(bytes(content))
    builds = []
    monkeypatch.setattr(mosaic, "_build_arrays", lambda params: builds.append(params) or read_npz_whole(good))
    with pytest.warns(RuntimeWarning, match="rebuilding"):
        rebuilt = hb.load_dataset("mosaic", data_dir=tmp_path, **MICRO)
    assert len(builds) == 1 and rebuilt.train.features.tobytes() == micro.train.features.tobytes()
    assert hb.load_dataset("mosaic", data_dir=tmp_path, **MICRO).info["cache_file"] == str(path)
    assert len(builds) == 1  # the rewritten file is whole


def test_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHBENCH_DATA_DIR", str(tmp_path / "from-env"))
    assert resolve_data_dir() == tmp_path / "from-env"
    assert resolve_data_dir(tmp_path / "explicit") == tmp_path / "explicit"
    monkeypatch.delenv("HASHBENCH_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_dir() == tmp_path / "xdg" / "hashbench"
    assert (tmp_path / "xdg" / "hashbench").is_dir()


def test_environment_variable_selects_the_cache(micro, micro_dir, tmp_path, monkeypatch):
    shutil.copy(_cache_file(micro_dir), tmp_path)
    monkeypatch.setenv("HASHBENCH_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(mosaic, "_build_arrays", lambda params: 1 / 0)
    assert hb.load_dataset("mosaic", **MICRO).info["cache_file"] == str(_cache_file(tmp_path))


def test_atomic_write_leaves_no_temporary_file_on_failure(tmp_path):
    class Unsaveable:
        def __array__(self, *args, **kwargs):
            raise RuntimeError("cannot convert")

    with pytest.raises(RuntimeError):
        write_npz_atomic(tmp_path / "x.npz", {"a": Unsaveable()})
    assert os.listdir(tmp_path) == []
    write_npz_atomic(tmp_path / "x.npz", {"a": np.arange(3)})
    assert os.listdir(tmp_path) == ["x.npz"]


def test_cache_files_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_npz_atomic(tmp_path / "x.npz", {"a": np.arange(3)})
    finally:
        os.umask(old)
    assert (tmp_path / "x.npz").stat().st_mode & 0o777 == 0o644
