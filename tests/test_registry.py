import re
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

import hashbench as hb
from hashbench import registry
from hashbench.errors import InvalidInputError, UnknownNameError

DOC = Path(__file__).parents[1] / "docs" / "adding-a-method.md"


def test_unknown_method_lists_known_and_suggests_closest():
    with pytest.raises(UnknownNameError, match=r"Did you mean 'test-mean-threshold'.*Known:"):
        import tests.test_hasher  # noqa: F401  (registers the toy methods)

        hb.create_method("test-mean-treshold")


def test_unknown_hyper_parameter_lists_valid_ones():
    import tests.test_hasher  # noqa: F401

    with pytest.raises(UnknownNameError, match="offset"):
        hb.create_method("test-mean-threshold", n_bits=4, offsett=1)


def test_unknown_dataset_is_named():
    with pytest.raises(UnknownNameError, match="unknown dataset 'no-such-data'"):
        hb.load_dataset("no-such-data")


def test_method_names_must_be_lower_case_with_hyphens():
    with pytest.raises(InvalidInputError, match="lower case with hyphens"):

        class Bad(hb.Hasher):
            name = "Bad_Name"


def test_documented_plugin_registers_fits_encodes_and_evaluates(tmp_path, clustered_split):
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    plugin = tmp_path / "my_method.py"
    plugin.write_text(code)
    hb.load_plugin(plugin)
    assert "random-projection" in hb.list_methods()
    m = hb.create_method("random-projection", n_bits=16, seed=3).fit(clustered_split)
    codes = m.encode(clustered_split)
    assert codes.n_bits == 16 and len(codes) == len(clustered_split)
    assert codes == hb.create_method("random-projection", n_bits=16, seed=3).fit(clustered_split).encode(
        clustered_split
    )
    scores = hb.evaluate(codes, codes, clustered_split.labels, clustered_split.labels, topk=50)
    assert 0.5 < scores.map <= 1.0  # four well-separated clusters


def test_missing_plugin_file():
    with pytest.raises(InvalidInputError, match="does not exist"):
        hb.load_plugin("no/such/plugin.py")


def test_entry_point_plugins_are_discovered(tmp_path, monkeypatch):
    package = tmp_path / "ep_plugin_pkg.py"
    package.write_text(
        "import hashbench as hb\n"
        "class EntryPointHasher(hb.Hasher):\n"
        "    name = 'entry-point-hasher'\n"
        "    def _fit(self, train, callback): pass\n"
        "    def _encode(self, split): return split.features[:, :self.n_bits]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = EntryPoint(
        name="entry-point-hasher", value="ep_plugin_pkg:EntryPointHasher", group=registry.ENTRY_POINT_GROUP
    )
    monkeypatch.setattr(registry, "entry_points", lambda group: [entry] if group == registry.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(registry, "_discovered", False)
    assert "entry-point-hasher" in hb.list_methods()
    sys.modules.pop("ep_plugin_pkg", None)
