import numpy as np
import pytest
import torch

import hashbench as hb
from hashbench.datasets.base import Split
from hashbench.errors import InvalidInputError, TrainingDivergedError, UnknownNameError
from hashbench.methods.lagnh import LAGNH, PRESETS

SMALL = dict(n_bits=8, preset="quick", epochs=1, batch_size=64, hidden=32, proj_dim=16)


def make_split(n=160, d=16, c=5, seed=0, name="train"):
    """Clusters in feature space whose aux semantics are the cluster label plus some noise tags."""
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, c, n)
    features = rng.normal(0, 3, (c, d))[cluster] + rng.normal(0, 1, (n, d))
    labels = np.eye(c, dtype=np.uint8)[cluster]
    aux = np.clip(labels + (rng.random((n, c)) < 0.1), 0, 1)
    return Split(features.astype(np.float32), labels, aux.astype(np.float32), name=name)


@pytest.fixture(scope="module")
def train():
    return make_split()


@pytest.fixture(scope="module")
def published(train):
    """The published configuration, fitted once for the tests that only read it."""
    return fitted(train)


def fitted(train, **options):
    return LAGNH(**{**SMALL, **options}).fit(train)


def signs(model, split):
    return model.encode(split).to_signs()


def test_registered_and_codes_have_the_asked_shape(train):
    model = hb.create_method("lagnh", **SMALL).fit(train)
    assert isinstance(model, LAGNH)
    assert signs(model, train).shape == (len(train), 8)
    assert set(model.n_parameters()) == {"generator", "discriminator"}


def test_preset_fills_unset_values_and_explicit_values_win(train):
    model = fitted(train, lambda3=0.5)
    quick = PRESETS["quick"]
    settings = model.settings_
    assert (settings["lambda1"], settings["lambda3"], settings["epochs"], settings["batch_size"]) == (
        quick["lambda1"],
        0.5,
        1,
        64,
    )
    n_train = range(10_000)  # only its length is read
    default = LAGNH()._resolve_settings(n_train)
    assert default == LAGNH(preset="coco")._resolve_settings(n_train) | {"preset": "paper"}
    assert (default["epochs"], default["batch_size"], default["hidden"], default["lambda3"]) == (300, 1024, 1024, 1.0)
    quick = LAGNH(preset="quick")._resolve_settings(n_train)
    assert (quick["epochs"], quick["batch_size"], quick["hidden"], quick["lr"]) == (65, 1024, 512, 1e-4)
    nus = LAGNH(preset="nuswide")._resolve_settings(n_train)
    assert (nus["batch_size"], nus["hidden"], nus["lambda3"]) == (2048, 2048, 0.1)


def test_variants_resolve_their_own_defaults(train, published):
    paper, released = published, fitted(train, variant="released")
    resolved = [tuple(m.settings_[k] for k in ("mu", "sigma", "dropout", "generator_steps")) for m in (paper, released)]
    assert resolved == [(1.0, "quantile", 0.0, 1), (0.0, 1.0, 0.5, 5)]
    assert released.rules_.graph_norm == "row" and paper.rules_.graph_norm == "symmetric"


@pytest.mark.parametrize(
    "option, value",
    [
        ("variant", "official"),
        ("preset", "coco2014"),
        ("gcn_graph", "both"),
        ("recon_target", "S"),
        ("encode_mode", "x"),
    ],
)
def test_unknown_choice_names_the_option_and_the_valid_values(train, option, value):
    with pytest.raises(UnknownNameError, match=option) as error:
        fitted(train, **{option: value})
    assert "Known:" in str(error.value)


@pytest.mark.parametrize(
    "option, value",
    [
        ("lambda1", -1.0),
        ("sigma", 0.0),
        ("sigma", "mean"),
        ("sigma", True),
        ("bandwidth_quantile", 0.0),
        ("bandwidth_quantile", 1.0),
        ("bandwidth_quantile", "0.1"),
        ("dropout", 1.0),
        ("epochs", 0),
        ("lr", 0.0),
    ],
)
def test_bad_numbers_are_rejected_by_name(train, option, value):
    with pytest.raises(InvalidInputError, match=option):
        fitted(train, **{option: value})


ABLATIONS = [
    dict(use_aux=False),
    dict(attention=False),
    dict(gcn_graph="visual"),
    dict(gcn_graph="aux"),
    dict(recon_target="augmented"),
    dict(recon_target="visual"),
    dict(recon_target="inner-product"),
    dict(recon_target="features"),
    dict(variant="released"),
    dict(sigma="median"),
    dict(sigma=1.0),
]


@pytest.mark.parametrize("ablation", ABLATIONS, ids=lambda a: "-".join(f"{k}={v}" for k, v in a.items()))
def test_each_ablation_changes_the_computation(train, published, ablation):
    changed = fitted(train, **ablation)
    published_loss = {k: v for k, v in published.history_[0].items() if k in ("recons", "gan", "quan")}
    changed_loss = {k: v for k, v in changed.history_[0].items() if k in ("recons", "gan", "quan")}
    assert published_loss != changed_loss
    # real outputs, not codes: after one epoch the paper variant's codes may still coincide
    assert not np.allclose(published._encode(train), changed._encode(train))


def test_no_aux_ablation_resolves_every_aux_graph_to_the_visual_one(train):
    model = fitted(train, use_aux=False, recon_target="inner-product")
    assert (model.attention_, model.gcn_graph_, model.recon_graph_) == (False, "visual", "visual")
    assert "cl" not in model.history_[0]
    with pytest.raises(InvalidInputError, match="gcn_graph='aux'"):
        fitted(train, use_aux=False, gcn_graph="aux")


def test_no_aux_ablation_never_reads_aux(train):
    garbage = Split(train.features, train.labels, np.random.default_rng(1).random(train.aux.shape), name="train")
    without = Split(train.features, train.labels, None, name="train")
    codes = signs(fitted(train, use_aux=False), train)
    assert np.array_equal(codes, signs(fitted(garbage, use_aux=False), without))
    assert np.array_equal(codes, signs(fitted(without, use_aux=False), garbage))


@pytest.mark.parametrize("variant", ["paper", "released"])
def test_inductive_codes_do_not_depend_on_batch_mates(train, variant):
    model = fitted(train, variant=variant)
    everything = signs(model, train)
    order = np.random.default_rng(0).permutation(len(train))[:37]
    assert np.array_equal(signs(model, train.subset(order)), everything[order])
    assert np.array_equal(signs(model, train.subset(order[:1])), everything[order[:1]])


def test_batch_mode_codes_depend_on_file_order():
    split = make_split(n=600)
    model = fitted(split, encode_mode="batch")
    order = np.random.default_rng(0).permutation(len(split))
    in_order = signs(model, split)[order]
    shuffled = signs(model, split.subset(order))
    assert not np.array_equal(in_order, shuffled)


def one_batch_losses(model, split):
    from hashbench.methods.lagnh import discriminator_loss

    net, critic = model.networks_["generator"], model.networks_["discriminator"]
    net.train()
    x = torch.as_tensor(split.features)
    y = torch.as_tensor(split.aux) if model.use_aux else None
    out = net(x, y)
    terms = model.generator_losses(out, x, y)
    terms["discriminator"] = discriminator_loss(critic, torch.randn(len(x), model.n_bits), out.z.detach())
    return terms, net, critic


@pytest.mark.parametrize("options", [dict(), dict(variant="released"), dict(recon_target="features")])
def test_gradient_flows_from_every_loss_term_alone(train, options):
    model = fitted(train, **options)
    terms, net, critic = one_batch_losses(model, train)
    assert set(terms) == {"gan", "recons", "quan", "cl", "discriminator"}
    for term, loss in terms.items():
        trained = critic if term == "discriminator" else net
        trained.zero_grad()
        loss.backward(retain_graph=True)
        grads = {name: p.grad for name, p in trained.named_parameters()}
        assert any(g is not None and g.abs().sum() > 0 for g in grads.values()), term
        if term != "discriminator":
            # every term reaches the graph network's output layer, and through it the projection
            assert grads["gc2.weight"].abs().sum() > 0, term
            assert grads["project_x.weight"].abs().sum() > 0, term


def test_missing_aux_is_an_error_naming_aux(train):
    without = Split(train.features, train.labels, None, name="train")
    with pytest.raises(InvalidInputError, match="aux"):
        fitted(without)


def test_missing_aux_at_encode_is_an_error_naming_aux(train, published):
    without = Split(train.features, train.labels, None, name="query")
    with pytest.raises(InvalidInputError, match="aux"):
        published.encode(without)


def test_aux_width_at_encode_must_match_fit(train, published):
    model = published
    wider = Split(train.features, None, np.ones((len(train), 7), np.float32), name="query")
    with pytest.raises(InvalidInputError, match="5-d aux"):
        model.encode(wider)


@pytest.mark.parametrize("options", [dict(), dict(variant="released"), dict(gcn_graph="aux")])
def test_all_zero_aux_rows_give_finite_losses_and_outputs(train, options):
    aux = train.aux.copy()
    aux[::3] = 0
    split = Split(train.features, train.labels, aux, name="train")
    model = fitted(split, **options)
    assert all(np.isfinite(v) for v in model.history_[0].values())
    for mode in ("inductive", "batch"):
        assert np.isfinite(model.set_params(encode_mode=mode)._encode(split)).all()


def test_diverging_loss_stops_with_epoch_and_term(train):
    huge = Split(train.features * np.float32(1e36), train.labels, train.aux, name="train")
    with pytest.raises(TrainingDivergedError, match=r"epoch 1") as error:
        fitted(huge)
    assert any(term in str(error.value) for term in ("'gan'", "'recons'", "'quan'", "'cl'", "'discriminator'"))


def test_callback_sees_an_encodable_model_after_each_epoch(train):
    seen = []
    LAGNH(**{**SMALL, "epochs": 2}).fit(train, callback=lambda epoch, m: seen.append((epoch, signs(m, train).shape)))
    assert seen == [(1, (len(train), 8)), (2, (len(train), 8))]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda(train):
    model = fitted(train, device="cuda")
    assert all(p.is_cuda for p in model.networks_["generator"].parameters())
    assert signs(model, train).shape == (len(train), 8)
