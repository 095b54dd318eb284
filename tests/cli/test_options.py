"""The shared command-line options."""

import argparse

import numpy as np
import pytest

from hashbench.cli.options import add_filters, key_value, key_values, topk_argument
from hashbench.errors import InvalidInputError


def test_key_values_read_json_then_python_literals_then_strings():
    assert key_values(["size=tiny", "n_train=50", "cell_probability=0.4", "flag=true"]) == {
        "size": "tiny", "n_train": 50, "cell_probability": 0.4, "flag": True,
    }  # fmt: skip
    assert key_value("lambdas=(1.0, 2.0)") == ("lambdas", (1.0, 2.0))
    assert key_value("widths=[1, 2]") == ("widths", [1, 2])
    assert key_value("shortcut=True") == ("shortcut", True)
    assert np.isclose(key_value("lr=1e-3")[1], 1e-3)
    assert key_value("name=a=b") == ("name", "a=b")


@pytest.mark.parametrize("text", ["size", "=tiny"])
def test_key_value_without_a_key_or_sign_is_named(text):
    with pytest.raises(InvalidInputError, match=r"--param .* KEY=VALUE"):
        key_value(text, "--param")


def test_filters_take_spaces_commas_and_their_type():
    parser = argparse.ArgumentParser()
    add_filters(parser, "methods", "bits")
    args = parser.parse_args(["--bits", "16,32", "64", "--methods", "itq", "lsh,sh"])
    assert args.bits == [16, 32, 64] and args.methods == ["itq", "lsh", "sh"]
    with pytest.raises(SystemExit):
        parser.parse_args(["--bits", "sixteen"])


def test_topk_is_a_number_or_all():
    assert topk_argument("100") == 100 and topk_argument("all") is None
    with pytest.raises(argparse.ArgumentTypeError):
        topk_argument("many")
