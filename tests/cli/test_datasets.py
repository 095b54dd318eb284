import numpy as np
from matplotlib.image import imread

from hashbench.cli import main
from hashbench.cli.datasets import describe_text, sample_annotations
from tests.conftest import MICRO

SPLITS = ("train", "query", "database")


def micro_arguments():
    return [item for key, value in MICRO.items() for item in ("-o", f"{key}={value}")]


def test_describe_prints_statistics_and_writes_the_sample_png(micro, micro_dir, tmp_path, capsys):
    out = tmp_path / "samples.png"
    code = main(["datasets", "describe", "mosaic", "--data-dir", str(micro_dir), "--out", str(out), *micro_arguments()])
    printed = capsys.readouterr().out
    assert code == 0
    assert "database      100     1024     10    10" in printed
    assert "ankle boot" in printed and "precision" in printed and "mean row norm" in printed
    stats = micro.info["feature_statistics"]
    assert f"feature statistics of the train split ({len(micro.train)} items" in printed
    assert f"effective rank {stats['effective_rank']:.2f}" in printed
    assert f"pairwise cosine median {stats['median_cosine']:.3f}" in printed
    picture = imread(out)
    assert picture.shape[0] > 500 and picture.std() > 0.05


def test_describe_a_file_without_images(micro, tmp_path, capsys):
    from hashbench import save_dataset

    path = save_dataset(micro, tmp_path / "features-only.npz")
    assert main(["datasets", "describe", str(path)]) == 0
    assert "no sample picture written" in capsys.readouterr().out


def test_describe_stores_the_statistics_of_a_users_file(micro, tmp_path):
    from hashbench import load_dataset, save_dataset

    path = save_dataset(micro, tmp_path / "features.npz")
    dataset = load_dataset(path)
    del dataset.info["feature_statistics"]  # saved with the file's info; describe computes them anew
    describe_text(dataset)
    assert dataset.info["feature_statistics"] == micro.info["feature_statistics"]


def test_describe_a_file_with_images_only(micro, tmp_path, capsys):
    arrays = {f"{s}_images": getattr(micro, s).images.load(np.arange(len(getattr(micro, s)))) for s in SPLITS}
    arrays.update({f"{s}_labels": getattr(micro, s).labels for s in SPLITS})
    np.savez(tmp_path / "images-only.npz", **arrays)
    assert main(["datasets", "describe", str(tmp_path / "images-only.npz"), "--out", str(tmp_path / "s.png")]) == 0
    printed = capsys.readouterr().out
    assert "features:\n  none stored (images only)" in printed
    assert "feature statistics: none, the train split stores no features (images only)" in printed


def test_describe_a_file_with_one_training_item(micro, tmp_path, capsys):
    arrays = {f"{s}_{k}": getattr(getattr(micro, s), k) for s in SPLITS for k in ("features", "labels")}
    arrays["train_features"], arrays["train_labels"] = arrays["train_features"][:1], arrays["train_labels"][:1]
    np.savez(tmp_path / "one.npz", **arrays)
    assert main(["datasets", "describe", str(tmp_path / "one.npz")]) == 0
    assert "feature statistics: none (feature statistics need at least 2 items" in capsys.readouterr().out


def test_sample_annotations_mark_wrong_detections(micro):
    split = micro.database
    wrong = np.flatnonzero((split.aux.astype(bool) & ~split.labels.astype(bool)).any(1))[0]
    true, aux = sample_annotations(micro, split, [wrong])[0]
    assert "!" in aux and "detected" not in aux
    assert true.split(", ") == [micro.label_names[c] for c in np.flatnonzero(split.labels[wrong])]


def test_describe_reports_bad_options_without_traceback(micro_dir, capsys):
    assert main(["datasets", "describe", "mosaic", "--data-dir", str(micro_dir), "-o", "size=huge"]) == 2
    assert "unknown size 'huge'" in capsys.readouterr().err
