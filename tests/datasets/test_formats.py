import h5py
import numpy as np
import pytest
import scipy.io

import hashbench as hb
from hashbench.datasets.formats import canonical_key
from hashbench.errors import InvalidInputError

SIZES = {"train": 30, "query": 8, "database": 40}


def make_arrays(seed=0, width=12, n_classes=5, n_aux=7):
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in SIZES.items():
        arrays[f"{split}_features"] = rng.normal(size=(n, width)).astype(np.float32)
        arrays[f"{split}_labels"] = (rng.random((n, n_classes)) < 0.4).astype(np.uint8)
        arrays[f"{split}_aux"] = (rng.random((n, n_aux)) < 0.3).astype(np.float32)
    return arrays


def assert_matches(dataset, arrays):
    for split in SIZES:
        for kind in ("features", "labels", "aux"):
            np.testing.assert_array_equal(getattr(getattr(dataset, split), kind), arrays[f"{split}_{kind}"])


def test_npz_with_names(tmp_path):
    arrays = make_arrays()
    np.savez(tmp_path / "mine.npz", **arrays, label_names=np.array(list("abcde")), aux_names=np.array(list("pqrstuv")))
    dataset = hb.load_dataset(tmp_path / "mine.npz")
    assert_matches(dataset, arrays)
    assert dataset.name == "mine" and dataset.label_names == list("abcde") and dataset.aux_names[0] == "p"


def test_save_then_load_round_trip(tmp_path, micro):
    path = hb.save_dataset(micro, tmp_path / "copy")
    assert path.suffix == ".npz"
    loaded = hb.load_dataset(str(path))
    for name, split in micro.splits().items():
        other = getattr(loaded, name)
        np.testing.assert_array_equal(split.features, other.features)
        np.testing.assert_array_equal(split.labels, other.labels)
        assert other.images is None
    assert loaded.label_names == micro.label_names and loaded.info["params"] == micro.info["params"]


def test_save_with_images_keeps_pixels_and_backbone(tmp_path, micro):
    loaded = hb.load_dataset(hb.save_dataset(micro, tmp_path / "with-images.npz", images=True))
    np.testing.assert_array_equal(loaded.query.images.load([0, 1]), micro.query.images.load([0, 1]))
    model = loaded.query.images.backbone()
    reference = micro.query.images.backbone()
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        assert a.detach().numpy().tobytes() == b.detach().numpy().tobytes()


def test_folder_of_npy(tmp_path):
    arrays = make_arrays()
    for key, value in arrays.items():
        np.save(tmp_path / f"{key}.npy", value)
    assert_matches(hb.load_dataset(tmp_path), arrays)


def test_mat_v5_with_short_names_and_transposed_storage(tmp_path):
    arrays = make_arrays()
    short = {"tr": "train", "te": "query", "db": "database"}
    contents = {}
    for s, split in short.items():
        contents[f"I_{s}"] = arrays[f"{split}_features"].T  # stored (d, n)
        contents[f"L_{s}"] = arrays[f"{split}_labels"]
        contents[f"T_{s}"] = arrays[f"{split}_aux"].T
    scipy.io.savemat(tmp_path / "data.mat", contents)
    dataset = hb.load_dataset(tmp_path / "data.mat")
    assert_matches(dataset, arrays)
    assert "train_features" in dataset.info["transposed"] and "train_labels" not in dataset.info["transposed"]


def test_mat_v73_through_h5py(tmp_path):
    arrays = make_arrays()
    names = {"train": "XTrain", "query": "XQuery", "database": "XDatabase"}
    with h5py.File(tmp_path / "data73.mat", "w") as file:
        for split, key in names.items():
            # MATLAB v7.3 writes column-major arrays: h5py sees them with the axes reversed.
            file[key] = arrays[f"{split}_features"].T
            file[key.replace("X", "L", 1)] = arrays[f"{split}_labels"].T
            file[key.replace("X", "T", 1)] = arrays[f"{split}_aux"].T
    dataset = hb.load_dataset(tmp_path / "data73.mat")
    assert_matches(dataset, arrays)
    assert "transposed" not in dataset.info


def test_official_lagnh_key_names(tmp_path):
    arrays = make_arrays()
    official = {"train": "train", "query": "val", "database": "retrieval"}
    renamed = {}
    for split, prefix in official.items():
        for kind, word in (("features", "feature"), ("labels", "label"), ("aux", "tag")):
            renamed[f"{prefix}_{word}"] = arrays[f"{split}_{kind}"]
    np.savez(tmp_path / "official.npz", **renamed)
    assert_matches(hb.load_dataset(tmp_path / "official.npz"), arrays)


def test_hashnet_list_files(tmp_path):
    arrays = make_arrays()
    for split, stem in (("train", "train"), ("query", "test"), ("database", "database")):
        lines = [f"images/{stem}_{i}.jpg " + " ".join(map(str, row)) for i, row in enumerate(arrays[f"{split}_labels"])]
        (tmp_path / f"{stem}.txt").write_text("\n".join(lines) + "\n")
        np.save(tmp_path / f"{stem}.npy", arrays[f"{split}_features"])
        np.save(tmp_path / f"{stem}_aux.npy", arrays[f"{split}_aux"])
    dataset = hb.load_dataset(tmp_path)
    assert_matches(dataset, arrays)
    assert dataset.info["image_paths"]["query"][1] == "images/test_1.jpg"


def test_list_file_with_bad_labels(tmp_path):
    (tmp_path / "train.txt").write_text("a.jpg 0 1\nb.jpg 1 x\n")
    with pytest.raises(InvalidInputError, match=r"train.txt:2"):
        hb.load_dataset(tmp_path)


@pytest.mark.parametrize(
    "key, canonical",
    [
        ("I_tr", "train_features"),
        ("L_te", "query_labels"),
        ("T_db", "database_aux"),
        ("LTrain", "train_labels"),
        ("retrieval_tag", "database_aux"),
        ("test_data", "query_features"),
        ("web_labels", "web_labels"),
        ("something_else", None),
    ],
)
def test_key_aliases(key, canonical):
    assert canonical_key(key) == canonical


def damaged(change):
    arrays = make_arrays()
    change(arrays)
    return arrays


@pytest.mark.parametrize(
    "arrays, message",
    [
        (damaged(lambda a: a.pop("query_labels")), r"missing 'query_labels'; keys present: database_aux"),
        (damaged(lambda a: a.update(train_labels=a["train_labels"][:-3])), r"row counts differ within the train split"),
        (damaged(lambda a: a.update(database_features=a["database_features"][:, :5])), r"features widths differ"),
        (damaged(lambda a: a["query_features"].__setitem__((2, 3), np.nan)), r"query features contains NaN"),
        (damaged(lambda a: a["query_features"].__setitem__((0, 0), np.inf)), r"NaN or inf"),
        (damaged(lambda a: a["database_labels"].__setitem__((0, 0), 2)), r"database labels must hold only 0 and 1"),
        (
            damaged(
                lambda a: a.update(
                    train_features=a["train_features"][:0],
                    train_labels=a["train_labels"][:0],
                    train_aux=a["train_aux"][:0],
                )
            ),
            r"train features has zero rows",
        ),
    ],
    ids=["missing-key", "row-counts", "widths", "nan", "inf", "labels-not-binary", "zero-rows"],
)
def test_invalid_data_is_rejected_with_a_clear_message(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(InvalidInputError, match=message):
        hb.load_dataset(tmp_path / "bad.npz")


def test_two_keys_for_one_array_are_rejected(tmp_path):
    arrays = make_arrays()
    np.savez(tmp_path / "twice.npz", **arrays, I_tr=arrays["train_features"])
    with pytest.raises(InvalidInputError, match="'I_tr' both name 'train_features'"):
        hb.load_dataset(tmp_path / "twice.npz")


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(InvalidInputError, match="does not exist"):
        hb.load_dataset(tmp_path / "absent.npz")
    (tmp_path / "data.csv").write_text("1,2\n")
    with pytest.raises(InvalidInputError, match="unsupported file type"):
        hb.load_dataset(tmp_path / "data.csv")


def test_builder_options_are_rejected_for_files_but_data_dir_is_ignored(tmp_path):
    np.savez(tmp_path / "mine.npz", **make_arrays())
    assert len(hb.load_dataset(tmp_path / "mine.npz", data_dir=tmp_path).train) == SIZES["train"]
    with pytest.raises(InvalidInputError, match="size"):
        hb.load_dataset(tmp_path / "mine.npz", size="tiny")
