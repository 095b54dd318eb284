import json
import subprocess
import sys

import numpy as np
import pytest

import hashbench as hb
from hashbench.cli import main


def test_help_lists_the_commands():
    out = subprocess.run(
        [sys.executable, "-m", "hashbench.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("list", "evaluate", "run", "report", "plot", "reproduce", "datasets", "prepare"):
        assert command in out


def test_list_shows_methods_with_capabilities(capsys):
    assert main(["list", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert set(listing["methods"]) == set(hb.list_methods())
    for info in listing["methods"].values():
        assert info["input"] in ("features", "images") and isinstance(info["uses_aux"], bool)


def test_list_loads_a_plugin_file(tmp_path, capsys):
    plugin = tmp_path / "cli_plugin.py"
    plugin.write_text(
        "import hashbench as hb\n"
        "class CliPlugin(hb.Hasher):\n"
        "    name = 'cli-plugin'\n"
        "    citation = 'Nobody, Nowhere 2026'\n"
        "    def _fit(self, train, callback): pass\n"
        "    def _encode(self, split): return split.features[:, :self.n_bits]\n"
    )
    assert main(["--plugin", str(plugin), "list"]) == 0
    assert "cli-plugin" in capsys.readouterr().out


@pytest.fixture
def saved_codes(tmp_path):
    rng = np.random.default_rng(0)
    q_bits, db_bits = rng.integers(0, 2, (5, 12)), rng.integers(0, 2, (40, 12))
    q_labels, db_labels = rng.integers(0, 2, (5, 3)), rng.integers(0, 2, (40, 3))
    hb.BinaryCodes.from_bits(q_bits).save(tmp_path / "q.codes.npz")
    np.save(tmp_path / "db.npy", db_bits * 2 - 1)  # plain +-1 array
    np.save(tmp_path / "ql.npy", q_labels)
    np.save(tmp_path / "dbl.npy", db_labels)
    expected = hb.evaluate(q_bits, db_bits, q_labels, db_labels, topk=10)
    return tmp_path, expected


def evaluate_argv(path, *options: str) -> list[str]:
    """``hashbench evaluate`` on the saved codes and labels, with ``options``."""
    codes = [str(path / "q.codes.npz"), str(path / "db.npy")]
    return ["evaluate", *codes, "--labels", str(path / "ql.npy"), str(path / "dbl.npy"), *options]


def test_evaluate_saved_codes_matches_the_api(saved_codes, capsys):
    path, expected = saved_codes
    argv = evaluate_argv(path, "--topk", "10", "--json")
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["map"] == pytest.approx(expected.map)


@pytest.mark.parametrize(
    "extra, message",
    [(["--topk", "0"], "topk"), (["--protocol", "nonsense"], "protocol"), (["--ties", "random"], "ties")],
)
def test_evaluate_bad_arguments_print_one_line_not_a_traceback(saved_codes, capsys, extra, message):
    path, _ = saved_codes
    argv = evaluate_argv(path, *extra)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("hashbench: error:") and message in err and "Traceback" not in err


def test_evaluate_conventions_and_map_at_all(saved_codes, capsys):
    path, _ = saved_codes
    argv = evaluate_argv(path, "--topk", "all", "--normalise", "min-r-k", "--ties", "expected", "--json")
    assert main(argv) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["topk"], record["normalise"], record["ties"], record["no_relevant"]) == (
        40,
        "min-r-k",
        "expected",
        "skip",
    )
    assert record["map_range"][0] <= record["map"] <= record["map_range"][1]


def test_evaluate_missing_codes_file(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nope.npz"), str(tmp_path / "nope.npz"), "--labels", "mosaic"]) == 2
    assert "does not exist" in capsys.readouterr().err
