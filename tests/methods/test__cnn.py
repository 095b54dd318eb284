"""What the image-based deep hashers (DeepBit, SSDH, SADH, GreedyHash, Bi-half) share beyond every
method's contracts: image and frozen modes, their inputs, presets, errors."""

import numpy as np
import pytest
import torch

import hashbench as hb
from hashbench.datasets.base import Split
from hashbench.errors import InvalidInputError
from hashbench.methods import _cnn
from hashbench.methods._cnn import CNNHasher, standardisation
from hashbench.methods.bihalf import BiHalf
from hashbench.methods.cibhash import CIBHash
from hashbench.methods.deepbit import DeepBit
from hashbench.methods.greedyhash import GreedyHash
from hashbench.methods.sadh import SADH
from hashbench.methods.ssdh import SSDH
from tests.methods.image_checks import DrawingTrunkBackbone, NaNBackbone, TinyBackbone, TrunkBackbone, image_split

real_load = _cnn.load_images

SMALL = {
    DeepBit: {"epochs": 2, "rotation_epochs": 1, "batch_size": 32},
    SSDH: {"epochs": 2, "batch_size": 32, "alpha": 0.5},  # the 4-class images leave few pairs beyond 2 sigma
    SADH: {"outer_iterations": 2, "epochs": 1, "batch_size": 32, "n_anchors": 24, "admm_iterations": 20},
    GreedyHash: {"epochs": 2, "batch_size": 32},
    BiHalf: {"epochs": 2, "batch_size": 32, "lr_step_epochs": 1},
}
FIRST_TERM = {
    DeepBit: "quantization",
    SSDH: "pairwise",
    SADH: "regression",
    GreedyHash: "similarity",
    BiHalf: "similarity",
}
METHODS = pytest.mark.parametrize("cls", list(SMALL), ids=lambda cls: cls.name)
MODES = pytest.mark.parametrize("frozen", [False, True], ids=["images", "frozen"])


def small(cls, **overrides):
    """Image mode unless ``frozen_backbone`` is given (GreedyHash and Bi-half default to frozen)."""
    return cls(**{"n_bits": 8, "frozen_backbone": False, **SMALL[cls], **overrides})


@METHODS
@MODES
def test_codes_have_the_asked_shape_and_are_deterministic(cls, frozen, one_thread):
    train, query = image_split(96, seed=0), image_split(40, seed=1)
    first = small(cls, seed=3, frozen_backbone=frozen).fit(train)
    again = small(cls, seed=3, frozen_backbone=frozen).fit(train)
    codes = first.encode(query)
    assert codes.n_bits == 8 and len(codes) == 40
    np.testing.assert_array_equal(codes.unpack(), again.encode(query).unpack())
    np.testing.assert_array_equal(codes.unpack(), first.encode(query).unpack())


@METHODS
def test_image_mode_fine_tunes_the_backbone_and_frozen_mode_trains_the_code_layer_only(cls, one_thread):
    train = image_split(64)
    tuned = small(cls, backbone_lr=1e-3).fit(train)
    fixed = small(cls, backbone_lr=0).fit(train)
    frozen = small(cls, frozen_backbone=True).fit(train)
    backbone_size = sum(p.numel() for p in TinyBackbone().parameters())
    assert tuned.n_parameters() == fixed.n_parameters() == {"code_layer": 16 * 8 + 8, "backbone": backbone_size}
    assert frozen.n_parameters() == {"code_layer": 16 * 8 + 8}
    start = TinyBackbone().state_dict()

    def backbone_changed(method):
        return [
            not np.array_equal(start[k], v.detach().numpy()) for k, v in method.network_.backbone.state_dict().items()
        ]

    assert any(backbone_changed(tuned)) and not any(backbone_changed(fixed))


@METHODS
def test_image_mode_without_images_suggests_frozen_mode(cls):
    features_only = image_split(32, images=False)
    with pytest.raises(hb.InvalidInputError, match="frozen_backbone=True"):
        small(cls).fit(features_only)


@METHODS
def test_frozen_mode_needs_no_images_but_features(cls, one_thread):
    method = small(cls, frozen_backbone=True).fit(image_split(64, images=False))
    assert method.encode(image_split(20, seed=2, images=False)).n_bits == 8
    with pytest.raises(hb.InvalidInputError, match=r"frozen_backbone=True.*no"):
        small(cls, frozen_backbone=True).fit(image_split(32, features=False))


@METHODS
def test_image_mode_works_without_stored_features(cls, one_thread):
    method = small(cls).fit(image_split(64, features=False))
    assert method.encode(image_split(20, seed=2, features=False)).n_bits == 8


@METHODS
def test_presets_set_schedules_and_explicit_arguments_win(cls):
    quick = cls.presets["quick"]
    assert set(quick) == set(cls.presets["paper"])
    # quick schedules are shorter; they may take larger steps
    assert all(quick[k] <= cls.presets["paper"][k] for k in quick if k not in ("batch_size", "lr", "fine_tune"))
    explicit = {**{k: v for k, v in SMALL[cls].items() if k not in quick}, "n_bits": 8, "epochs": 1}
    method = cls(preset="quick", **explicit).fit(image_split(32))
    assert {k: method.settings_[k] for k in quick} == {**quick, "epochs": 1}
    with pytest.raises(hb.InvalidInputError, match="preset"):
        cls(preset="fast").fit(image_split(32))
    with pytest.raises(hb.InvalidInputError, match="batch_size"):
        cls(batch_size=0).fit(image_split(32))


@METHODS
def test_nan_during_training_names_the_epoch_and_the_term(cls, one_thread):
    train = image_split(64, backbone=NaNBackbone)
    with pytest.raises(hb.TrainingDivergedError, match=f"'{FIRST_TERM[cls]}'.*epoch 1"):
        small(cls).fit(train)


@METHODS
def test_epoch_callback_sees_an_encodable_model(cls, one_thread):
    train, seen = image_split(64), []
    method = small(cls, frozen_backbone=True)
    method.fit(train, callback=lambda epoch, hasher: seen.append((epoch, hasher.encode(train).n_bits)))
    assert [epoch for epoch, _ in seen] == list(range(1, len(method.history_) + 1))
    assert all(bits == 8 for _, bits in seen)


def test_paper_preset_trains_longer_where_the_release_does_and_explicit_epochs_win():
    split = image_split(32)
    assert GreedyHash(n_bits=16)._resolve_settings(split)["epochs"] == 300
    assert GreedyHash(n_bits=32)._resolve_settings(split)["epochs"] == 60
    assert GreedyHash(n_bits=16, epochs=5)._resolve_settings(split)["epochs"] == 5
    assert GreedyHash(n_bits=16, preset="quick")._resolve_settings(split)["epochs"] == 10


def test_standardisation_centres_and_brings_features_to_unit_rms():
    features = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    shift, scale = standardisation(features, centre=True)
    torch.testing.assert_close(shift, torch.tensor([2.0, 4.0]))
    assert ((features - shift) * scale).square().mean().item() == pytest.approx(1.0)
    shift, scale = standardisation(features, centre=False)
    assert shift.abs().sum() == 0 and scale == pytest.approx(1 / np.sqrt(12.5))
    shift, scale = standardisation(features, centre=True, per_row=True)
    assert ((features - shift) * scale).square().sum(dim=1).mean().item() == pytest.approx(1.0)
    for constant in (torch.ones(3, 2), torch.full((3, 2), float("nan"))):
        with pytest.raises(hb.InvalidInputError, match="do not vary"):
            standardisation(constant, centre=True)


def test_standardisation_over_row_blocks_matches_the_whole_array_in_float64():
    features = torch.randn(2 * _cnn.STATISTICS_ROWS + 7, 5, generator=torch.Generator().manual_seed(0)) * 3 + 1
    whole = features.double()
    shift, scale = standardisation(features, centre=True)
    torch.testing.assert_close(shift, whole.mean(dim=0).float())
    assert scale == pytest.approx(1 / float((whole - whole.mean(dim=0)).square().mean().sqrt()), rel=1e-12)


@METHODS
@pytest.mark.parametrize("scale", [2.0**-10, 2.0**10])
def test_frozen_codes_do_not_depend_on_the_feature_scale(cls, scale, one_thread):
    # the code layer reads centred features of unit RMS norm; a power-of-two scale keeps them bitwise equal
    train, query = image_split(96, images=False), image_split(40, seed=1, images=False)
    codes = small(cls, frozen_backbone=True).fit(train).encode(query)
    scaled = [Split(s.features * np.float32(scale), s.labels, name=s.name) for s in (train, query)]
    assert small(cls, frozen_backbone=True).fit(scaled[0]).encode(scaled[1]) == codes


def test_code_layer_reads_centred_features_of_unit_rms_norm(one_thread):
    train = image_split(96, images=False)
    method = small(SADH, frozen_backbone=True).fit(train)
    network = method.network_
    centred = (torch.as_tensor(train.features) - network.input_shift) * network.input_scale
    assert float(centred.pow(2).sum(dim=1).mean()) == pytest.approx(1.0, rel=1e-4)
    assert float(centred.mean(dim=0).abs().max()) < 1e-5


@METHODS
def test_backbone_trains_at_its_own_rate(cls, one_thread):
    method = small(cls, lr=0.03, backbone_lr=0.002).fit(image_split(64))
    groups = method.updates_[0].optimiser.param_groups
    initial = [g.get("initial_lr", g["lr"]) for g in groups]
    assert initial == [0.03, 0.002]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in method.network_.backbone.parameters()}
    with pytest.raises(hb.InvalidInputError, match="backbone_lr"):
        small(cls, backbone_lr=-0.002).fit(image_split(32))
    fixed = small(cls, lr=0.03, backbone_lr=0).fit(image_split(64))
    assert [g.get("initial_lr", g["lr"]) for g in fixed.updates_[0].optimiser.param_groups] == [0.03]


@pytest.mark.parametrize("cls", [DeepBit, SADH], ids=lambda cls: cls.name)
def test_a_fixed_backbone_runs_once_per_dataset_and_trains_as_on_images(cls, monkeypatch, one_thread):
    train, query = image_split(96, backbone=TrunkBackbone), image_split(40, seed=1, backbone=TrunkBackbone)
    calls = []
    original = TrunkBackbone.forward_trunk
    monkeypatch.setattr(TrunkBackbone, "forward_trunk", lambda self, x: calls.append(len(x)) or original(self, x))
    cached = small(cls, seed=2, backbone_lr=0).fit(train)
    codes = cached.encode(query)
    trunk_passes = sum(calls)
    small(cls, seed=3, backbone_lr=0).fit(train).encode(query)
    # DeepBit's rotated images cannot be cached: one pass over them per rotation epoch
    rotated = len(train) * SMALL[cls].get("rotation_epochs", 0)
    # at most one pass per split and mode (train for training and perhaps in eval mode, query in
    # eval mode), and a second fit on the same data reuses them
    assert trunk_passes <= 2 * len(train) + len(query) + rotated
    assert sum(calls) == trunk_passes + rotated
    monkeypatch.setattr(CNNHasher, "_fixed", lambda self, part: False)  # images every batch
    uncached = small(cls, seed=2, backbone_lr=0).fit(train)
    np.testing.assert_array_equal(codes.unpack(), uncached.encode(query).unpack())
    assert sum(calls) > trunk_passes + 3 * len(train)


@pytest.mark.parametrize("cls", [DeepBit, SADH], ids=lambda cls: cls.name)
def test_filling_the_cache_inside_a_fit_leaves_the_codes_unchanged(cls, one_thread):
    # the first fit on a dataset computes the cache, building a backbone; later fits read it
    train = image_split(96, backbone=DrawingTrunkBackbone)
    query = image_split(40, seed=1, backbone=DrawingTrunkBackbone)
    first = small(cls, seed=2, backbone_lr=0).fit(train).encode(query)
    again = small(cls, seed=2, backbone_lr=0).fit(train).encode(query)
    np.testing.assert_array_equal(first.unpack(), again.unpack())


def test_augmented_training_images_are_not_cached(monkeypatch, one_thread):
    train = image_split(64, backbone=TrunkBackbone)
    seen = []
    monkeypatch.setattr(
        _cnn, "load_images", lambda split, idx, device: seen.append(len(idx)) or real_load(split, idx, device)
    )
    CIBHash(n_bits=8, epochs=1, batch_size=32).fit(train)
    assert sum(seen) >= 2 * len(train) // 2  # the training batches' images (the eval outputs come from the cache)


def test_fine_tuning_the_top_keeps_the_trunk_and_reads_it_from_the_cache(monkeypatch, one_thread):
    train = image_split(64, backbone=TrunkBackbone)
    calls = []
    original = TrunkBackbone.forward_trunk
    monkeypatch.setattr(TrunkBackbone, "forward_trunk", lambda self, x: calls.append(len(x)) or original(self, x))
    method = small(SSDH, fine_tune="top", epochs=3).fit(train)
    start = TrunkBackbone()
    trunk_changed = [
        not torch.equal(a, b) for a, b in zip(start.layers.parameters(), method.network_.backbone.layers.parameters())
    ]
    top_changed = [
        not torch.equal(a, b) for a, b in zip(start.top.parameters(), method.network_.backbone.top.parameters())
    ]
    assert not any(trunk_changed) and all(top_changed)
    assert sum(calls) == len(train)  # the trunk once: three epochs and the codes' threshold read it
    query = image_split(40, seed=1, backbone=TrunkBackbone)
    codes = method.encode(query)
    method.encode(query)
    assert sum(calls) == len(train) + 2 * len(query)  # a split only encoded goes through the trunk each time
    assert _cnn.cached_outputs(query, "trunk", torch.device("cpu")) is None  # and its outputs are not kept
    with monkeypatch.context() as images_every_time:
        images_every_time.setattr(CNNHasher, "_fixed", lambda self, part: False)
        np.testing.assert_array_equal(codes.unpack(), method.encode(query).unpack())
    with pytest.raises(InvalidInputError, match="fine_tune"):
        small(SSDH, fine_tune="middle").fit(train)
    whole = small(SSDH, fine_tune="top", backbone_lr=1e-3).fit(image_split(32))  # TinyBackbone declares no trunk
    assert all(p.requires_grad for p in whole.network_.backbone.parameters())


def test_eval_outputs_read_a_cached_trunk_and_do_not_cache_one(monkeypatch, one_thread):
    calls = []
    original = TrunkBackbone.forward_trunk
    monkeypatch.setattr(TrunkBackbone, "forward_trunk", lambda self, x: calls.append(len(x)) or original(self, x))
    cpu = torch.device("cpu")
    for backbone in (TrunkBackbone, TinyBackbone):  # TinyBackbone declares no trunk: the whole network on images
        split = image_split(40, backbone=backbone)
        with torch.no_grad():
            expected = split.images.backbone().eval()(real_load(split, np.arange(len(split)), cpu))
        calls.clear()
        every = np.arange(len(split))
        torch.testing.assert_close(torch.from_numpy(_cnn.frozen_outputs(split, "eval", cpu).rows(every)), expected)
        assert _cnn.cached_outputs(split, "trunk", cpu) is None  # the wider trunk outputs are not kept
        if backbone is TrunkBackbone:
            assert calls == [40]
            other = image_split(40, backbone=backbone)  # its trunk cached first, as a training split's is
            _cnn.frozen_outputs(other, "trunk", cpu)
            from_trunk = _cnn.frozen_outputs(other, "eval", cpu).rows(every)
            assert calls == [40, 40]  # the eval outputs read the cached trunk
            np.testing.assert_array_equal(from_trunk, _cnn.frozen_outputs(split, "eval", cpu).rows(every))
