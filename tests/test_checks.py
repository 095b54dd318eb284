"""The conformance suite: every registered method passes it, and it catches what it promises to."""

import re
from pathlib import Path

import numpy as np
import pytest

import hashbench as hb
from hashbench.checks import check_paper_preset, check_set, conformance_dataset, health_problems, random_codes_map
from hashbench.cli import main

ROOT = Path(__file__).parents[1]
DOC = ROOT / "docs" / "adding-a-method.md"
CONSTANT_PLUGIN = Path(__file__).parent / "plugins" / "constant_codes.py"
COLLAPSING_PLUGIN = Path(__file__).parent / "plugins" / "collapsing_paper_preset.py"

#: methods whose four quick fits take minutes on 2 cores: checked by `pytest -m slow` (and `hashbench check`)
SLOW_CHECKS = {"tbh", "lagnh", "greedyhash", "bihalf", "cibhash", "wsih", "uh-bdnn"}


def builtin_methods() -> list:
    """Every method hashbench registers itself (plugins the tests load are checked on their own)."""
    params = []
    for name, cls in hb.list_methods().items():
        if not cls.__module__.startswith("hashbench.methods."):
            continue
        params.append(pytest.param(name, marks=[pytest.mark.slow] if name in SLOW_CHECKS else []))
    return params


def documented_plugin(tmp_path, class_name: str) -> Path:
    """The code block of docs/adding-a-method.md that defines ``class_name``, as a plugin file."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    (code,) = [block for block in blocks if f"class {class_name}(" in block]
    path = tmp_path / f"{class_name.lower()}.py"
    path.write_text(code)
    return path


@pytest.mark.parametrize("name", builtin_methods())
def test_every_builtin_method_passes(name):
    assert hb.check_method(name) == []


def test_lagnh_passes_at_a_schedule_cheap_enough_for_every_test_run():
    """The paper's own method in the default run. Explicit ``epochs`` and ``hidden`` hold for both
    of the suite's fits, so its paper-preset step runs the paper's loss weights at this schedule; the
    full check (quick preset, then the paper preset) is the slow one above."""
    assert hb.check_method("lagnh", epochs=80, hidden=128) == []


@pytest.mark.slow
def test_lagnh_passes_at_the_paper_preset():
    assert hb.check_method("lagnh", preset="paper", time_budget_s=1200) == []


@pytest.mark.parametrize(
    "class_name, name",
    [
        ("RandomProjection", "random-projection"),
        pytest.param("TinyAutoencoder", "tiny-autoencoder", marks=pytest.mark.slow),
    ],
)
def test_documented_plugins_pass(tmp_path, class_name, name):
    hb.load_plugin(documented_plugin(tmp_path, class_name))
    assert hb.check_method(name) == []


def test_constant_codes_fail_naming_constant_bits_and_random_level_map():
    hb.load_plugin(CONSTANT_PLUGIN)
    failures = hb.check_method("constant-codes")
    assert [f.split(":")[0] for f in failures] == ["healthy_codes", "beats_random", "paper_preset"]
    assert "constant_bits=1.00" in failures[0] and "distinct_fraction" in failures[0]
    assert "fc7-like check set" in failures[2] and "constant_bits=1.00" in failures[2]


def test_a_default_preset_that_collapses_fails_though_quick_is_healthy():
    hb.load_plugin(COLLAPSING_PLUGIN)
    failures = hb.check_method("collapsing-paper-preset")
    assert [f.split(":")[0] for f in failures] == ["paper_preset"]
    assert "preset='paper'" in failures[0] and "mean_abs_correlation=1.00 > 0.9" in failures[0]
    cls = hb.list_methods()["collapsing-paper-preset"]

    class Unaffordable(cls):  # declares its paper schedule unaffordable: the fc7-like check leaves it out
        paper_preset_affordable = False

    assert check_paper_preset(Unaffordable, {"n_bits": 16, "preset": "quick"}) is None


def test_healthy_codes_fail_on_bits_that_copy_each_other():
    rng = np.random.default_rng(0)
    split = rng.random((500, 1)) < 0.5
    copies = split ^ (rng.random((500, 64)) < 0.015)  # every bit the same split, 1.5% of it flipped
    problem = health_problems(hb.BinaryCodes.from_bits(copies))
    assert "mean_abs_correlation" in problem and "distinct_fraction" not in problem and "constant" not in problem


def test_check_set_has_fc7_like_statistics():
    from hashbench.datasets.statistics import feature_statistics

    dataset = check_set()
    stats = feature_statistics(dataset.train)
    assert (len(dataset.train), len(dataset.query), len(dataset.database)) == (1000, 200, 2000)
    assert 0.45 < stats["median_cosine"] < 0.6 and 0.5 < stats["zero_fraction"] < 0.65
    assert check_set() is dataset


def test_each_contract_is_caught(monkeypatch):
    """A method breaking one contract at a time fails exactly that check."""
    from hashbench.methods.lsh import LSH

    class Unregistered(LSH):  # no `name` of its own, so the registry lists LSH under "lsh"
        pass

    assert any(f.startswith("registered:") for f in hb.check_method(Unregistered))

    class SlowLSH(LSH):
        pass

    assert [f.split(":")[0] for f in hb.check_method(SlowLSH, time_budget_s=0.0)] == ["registered", "budget"]


def test_random_codes_floor_is_the_mean_label_overlap_rate():
    # random codes rank at random: AP@k then estimates the fraction of relevant database items
    dataset = conformance_dataset()
    relevant = (dataset.query.labels @ dataset.database.labels.T > 0).mean()
    assert random_codes_map(dataset.query.labels, dataset.database.labels, 16) == pytest.approx(relevant, abs=0.04)


def test_conformance_data_is_multi_label_with_sparse_aux_and_a_web_split():
    dataset = conformance_dataset()
    assert (len(dataset.train), len(dataset.query), len(dataset.database), len(dataset.train.web)) == (
        600,
        100,
        1200,
        200,
    )
    assert 1.0 < dataset.train.labels.sum(axis=1).mean() < 2.0
    assert 2.0 < dataset.train.aux.sum(axis=1).mean() < 4.0
    assert (dataset.train.features >= 0).all() and (dataset.train.features == 0).mean() > 0.1
    assert conformance_dataset() is dataset  # built once per process


def test_unknown_method_and_unknown_parameter_are_named():
    with pytest.raises(hb.InvalidInputError, match=r"unknown method 'itqq'.*'itq'"):
        hb.check_method("itqq")
    with pytest.raises(hb.InvalidInputError, match="no hyper-parameter n_iterations"):
        hb.check_method("itq", n_iterations=3)


def run_cli(capsys, *args):
    """``hashbench ARGS`` in this process: (exit status, stdout, stderr)."""
    status = main(list(args))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_cli_check_exit_codes_and_failures_one_per_line(capsys):
    status, out, _ = run_cli(capsys, "check", "lsh")
    assert status == 0 and "lsh: all checks passed" in out
    status, out, _ = run_cli(capsys, "--plugin", str(CONSTANT_PLUGIN), "check", "constant-codes", "--param", "seed=3")
    assert status == 1
    failed = [line.split(":")[0] for line in out.splitlines()[:-1]]
    assert failed == ["FAIL healthy_codes", "FAIL beats_random", "FAIL paper_preset"]


def test_cli_check_errors_are_one_line(tmp_path, capsys):
    status, _, err = run_cli(capsys, "check", "itqq")
    assert status == 2 and err.strip().startswith("hashbench: error: unknown method 'itqq'")
    broken = tmp_path / "broken.py"
    broken.write_text("import numpy\nraise RuntimeError('half-written plugin')\n")
    status, _, err = run_cli(capsys, "--plugin", str(broken), "check", "anything")
    assert status == 2 and "broken.py" in err and "RuntimeError: half-written plugin" in err
    assert len(err.strip().splitlines()) == 1
    status, _, err = run_cli(capsys, "check", "itq", "--param", "n_iter")
    assert status == 2 and "KEY=VALUE" in err
