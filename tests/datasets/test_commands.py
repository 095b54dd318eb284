import numpy as np
import pytest
from matplotlib.image import imread

from hashbench.cli import main
from hashbench.datasets.commands import parse_options, sample_annotations
from hashbench.errors import InvalidInputError

from .conftest import MICRO


def micro_arguments():
    return [item for key, value in MICRO.items() for item in ("-o", f"{key}={value}")]


def test_describe_prints_statistics_and_writes_the_sample_png(micro, micro_dir, tmp_path, capsys):
    out = tmp_path / "samples.png"
    code = main(["datasets", "describe", "mosaic", "--data-dir", str(micro_dir), "--out", str(out), *micro_arguments()])
    printed = capsys.readouterr().out
    assert code == 0
    assert "database      100      256     10    10" in printed
    assert "ankle boot" in printed and "precision" in printed and "mean row norm" in printed
    picture = imread(out)
    assert picture.shape[0] > 500 and picture.std() > 0.05


def test_describe_a_file_without_images(micro, tmp_path, capsys):
    from hashbench import save_dataset

    path = save_dataset(micro, tmp_path / "features-only.npz")
    assert main(["datasets", "describe", str(path)]) == 0
    assert "no sample picture written" in capsys.readouterr().out


def test_sample_annotations_mark_wrong_detections(micro):
    split = micro.database
    wrong = np.flatnonzero((split.aux.astype(bool) & ~split.labels.astype(bool)).any(1))[0]
    true, aux = sample_annotations(micro, split, [wrong])[0]
    assert "!" in aux and "detected" not in aux
    assert true.split(", ") == [micro.label_names[c] for c in np.flatnonzero(split.labels[wrong])]


def test_parse_options():
    assert parse_options(["size=tiny", "n_train=50", "cell_probability=0.4"]) == {
        "size": "tiny", "n_train": 50, "cell_probability": 0.4,
    }
    with pytest.raises(InvalidInputError, match="KEY=VALUE"):
        parse_options(["size"])


def test_describe_reports_bad_options_without_traceback(micro_dir, capsys):
    assert main(["datasets", "describe", "mosaic", "--data-dir", str(micro_dir), "-o", "size=huge"]) == 2
    assert "unknown size 'huge'" in capsys.readouterr().err
