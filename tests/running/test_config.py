import pytest

from hashbench.errors import InvalidInputError, UnknownNameError
from hashbench.registry import list_methods
from hashbench.running.cell import Cell
from hashbench.running.config import load_config, parse_config
from tests.running.toy_methods import write_config, write_toy_dataset


@pytest.fixture
def toy_npz(tmp_path):
    return write_toy_dataset(tmp_path / "toy.npz")


def matrix_of(tmp_path, text):
    return load_config(write_config(tmp_path / "m.toml", text))


def test_expansion_defaults_grid_and_labels(tmp_path, toy_npz):
    matrix = matrix_of(
        tmp_path,
        f"""
[defaults]
datasets = ["{toy_npz}"]
bits = [8, 16]
seeds = [0, 1]
[[experiment]]
name = "grid"
methods = ["lsh", {{ method = "toy-projection", label = "slow", params = {{ n_epochs = [1, 2, 3], sleep_s = 0.5 }} }}]
[[experiment]]
name = "other"
bits = 12
methods = [{{ method = "toy-projection", params = {{ n_epochs = 2 }} }}]
""",
    )
    cells = matrix.cells()
    assert len(cells) == (1 + 3) * 2 * 2 + 1 * 1 * 2
    grid = [c for c in cells if c.label == "slow"]
    assert sorted({c.params["n_epochs"] for c in grid}) == [1, 2, 3]
    assert all(c.params["sleep_s"] == 0.5 and c.method == "toy-projection" for c in grid)
    assert {c.label for c in cells if c.method == "lsh"} == {"lsh"}  # label defaults to the method
    assert {c.n_bits for c in cells if c.experiment == "other"} == {12}
    assert {c.dataset for c in cells} == {"toy"}
    assert len({c.id for c in cells}) == len(cells)


def test_filters_narrow_and_reject_values_that_match_nothing(tmp_path, toy_npz):
    matrix = matrix_of(
        tmp_path,
        f"""
[defaults]
datasets = ["{toy_npz}"]
bits = [8, 16]
seeds = [0, 1]
[[experiment]]
name = "a"
methods = ["lsh", {{ method = "toy-projection", label = "toy" }}]
[[experiment]]
name = "b"
methods = ["itq"]
""",
    )
    cells = matrix.cells(experiments=["a"], methods=["toy"], bits=[16], seeds=[1])
    assert [(c.experiment, c.label, c.n_bits, c.seed) for c in cells] == [("a", "toy", 16, 1)]
    assert len(matrix.cells(methods=["lsh", "itq"], datasets=["toy"])) == 8
    with pytest.raises(InvalidInputError, match=r"bits filter \[64\] matches no cell.*available: 16, 8"):
        matrix.cells(bits=[64])
    with pytest.raises(UnknownNameError, match=r"unknown experiment 'c'.*Known: a, b"):
        matrix.cells(experiments=["c"])


def test_ids_are_stable_and_seeds_follow_the_axes_not_the_experiment(tmp_path, toy_npz):
    text = f"""
[defaults]
datasets = ["{toy_npz}"]
bits = [8, 16]
[[experiment]]
name = "a"
methods = ["lsh"]
[[experiment]]
name = "b"
methods = [{{ method = "lsh", label = "again" }}, {{ method = "toy-projection", params = {{ n_epochs = [1, 2] }} }}]
"""
    first, second = matrix_of(tmp_path, text).cells(), matrix_of(tmp_path, text).cells()
    assert [c.id for c in first] == [c.id for c in second]
    lsh_a, lsh_b = first[0], first[2]
    assert (lsh_a.n_bits, lsh_b.n_bits) == (8, 8) and lsh_a.id != lsh_b.id
    assert lsh_a.method_seed == lsh_b.method_seed and lsh_a.computation_id == lsh_b.computation_id
    assert first[0].method_seed != first[1].method_seed  # 8 vs 16 bits
    toy = [c for c in first if c.method == "toy-projection" and c.n_bits == 8]
    assert toy[0].method_seed != toy[1].method_seed  # params are an axis
    assert all(0 <= c.method_seed < 2**31 for c in first)


def test_unknown_method_key_and_hyper_parameter_name_the_valid_choices(tmp_path, toy_npz):
    base = f'[defaults]\ndatasets = ["{toy_npz}"]\n'
    with pytest.raises(UnknownNameError, match=r"unknown method 'itk'. Did you mean 'itq'\?.*lsh"):
        matrix_of(tmp_path, base + '[[experiment]]\nname = "x"\nmethods = ["itk"]\n')
    with pytest.raises(UnknownNameError, match=r"key in \[defaults\] 'bitz'. Did you mean 'bits'\?.*seeds"):
        matrix_of(tmp_path, base + 'bitz = [8]\n[[experiment]]\nname = "x"\nmethods = ["lsh"]\n')
    with pytest.raises(UnknownNameError, match=r"key in experiment 'x' 'seed'. Did you mean 'seeds'"):
        matrix_of(tmp_path, base + '[[experiment]]\nname = "x"\nseed = [1]\nmethods = ["lsh"]\n')
    with pytest.raises(
        UnknownNameError, match=r"hyper-parameter of 'toy-projection'.*'n_epoch'. Did you mean 'n_epochs'"
    ):
        matrix_of(
            tmp_path,
            base + '[[experiment]]\nname = "x"\nmethods = [{method = "toy-projection", params = {n_epoch = 2}}]\n',
        )
    with pytest.raises(InvalidInputError, match=r"m.toml: .*protocol"):
        matrix_of(tmp_path, base + 'protocol = "offical"\n[[experiment]]\nname = "x"\nmethods = ["lsh"]\n')


@pytest.mark.parametrize(
    "fragment, message",
    [
        ("bits = [0]", "bits must be integers >= 1"),
        ('topk = "all"', "topk must be integers >= 1"),
        ('device = "gpu"', "device must be 'cpu', 'cuda', 'cuda:N' or 'auto'"),
        ('executor = "dask"', "unknown executor in experiment 'x' 'dask'"),
        ("timeout_s = -1", "timeout_s must be a positive number"),
        ("threads = -1", "threads must be integers >= 0"),
        ('datasets = ["missing.npz"]', "dataset file .*missing.npz' does not exist"),
        ('datasets = ["mosiac"]', "unknown dataset 'mosiac'. Did you mean 'mosaic'"),
    ],
)
def test_invalid_settings(tmp_path, toy_npz, fragment, message):
    with pytest.raises(InvalidInputError, match=message):
        matrix_of(tmp_path, f'[[experiment]]\nname = "x"\nmethods = ["lsh"]\n{fragment}\n')


def test_bad_documents(tmp_path):
    with pytest.raises(InvalidInputError, match="not valid TOML"):
        matrix_of(tmp_path, "[[experiment]\n")
    with pytest.raises(InvalidInputError, match="defines no experiment"):
        matrix_of(tmp_path, "[defaults]\nbits = [8]\n")
    with pytest.raises(InvalidInputError, match="repeated: a"):
        parse_config({"experiment": [{"name": "a", "methods": ["lsh"]}] * 2})
    with pytest.raises(InvalidInputError, match="does not exist"):
        load_config(tmp_path / "none.toml")


def test_all_methods_plugins_included_and_common_params_reach_only_methods_that_have_them(tmp_path, toy_npz):
    matrix = matrix_of(
        tmp_path,
        f"""
[defaults]
datasets = ["{toy_npz}"]
common_params = {{ preset = "quick", sleep_s = 0.25 }}
[[experiment]]
name = "all"
methods = "all"
""",
    )
    cells = {c.method: c for c in matrix.cells()}
    assert set(cells) == set(list_methods()) and "toy-projection" in cells
    assert cells["toy-projection"].params == {"sleep_s": 0.25}
    assert cells["lsh"].params == {}
    for name, cls in list_methods().items():
        assert ("preset" in cells[name].params) == ("preset" in cls().get_params())


def test_dataset_tables_options_labels_optional_and_per_dataset_params(tmp_path, toy_npz):
    matrix = matrix_of(
        tmp_path,
        f"""
[defaults]
datasets = ["{toy_npz}", {{ name = "{toy_npz}", size = "tiny" }}, {{ name = "not-there.npz", label = "far", optional = true }}]
[[experiment]]
name = "x"
methods = [{{ method = "toy-projection", params = {{ n_epochs = 1 }}, dataset_params = {{ far = {{ n_epochs = [2, 3] }} }} }}]
""",
    )
    cells = matrix.cells()
    assert [(c.dataset, c.dataset_options, c.dataset_optional, c.params["n_epochs"]) for c in cells] == [
        ("toy", {}, False, 1),
        ("toy[size=tiny]", {"size": "tiny"}, False, 1),
        ("far", {}, True, 2),
        ("far", {}, True, 3),
    ]
    assert cells[0].dataset_source == toy_npz


def test_list_values_wrapped_in_a_list_are_single_values():
    matrix = parse_config(
        {
            "experiment": [
                {
                    "name": "x",
                    "datasets": ["mosaic"],
                    "methods": [{"method": "toy-projection", "params": {"n_epochs": [[1, 2]]}}],
                }
            ]
        }
    )
    assert [c.params for c in matrix.cells()] == [{"n_epochs": [1, 2]}]


def test_cell_spec_is_json_ready():
    cell = Cell("e", "l", "lsh", {"a": 1}, "toy", 8, 0, record_epochs=(1, 2))
    spec = cell.spec()
    assert spec["method_seed"] == cell.method_seed and spec["record_epochs"] == [1, 2]
    assert set(spec) >= {
        "experiment",
        "label",
        "method",
        "params",
        "dataset",
        "n_bits",
        "seed",
        "protocol",
        "topk",
        "device",
    }


def test_role_defaults_to_main_and_is_validated(tmp_path, toy_npz):
    matrix = matrix_of(
        tmp_path,
        f"""
[defaults]
datasets = ["{toy_npz}"]
[[experiment]]
name = "any-name"
methods = ["lsh"]
[[experiment]]
name = "sweep"
role = "sensitivity"
methods = ["lsh"]
""",
    )
    assert [c.spec()["role"] for c in matrix.cells()] == ["main", "sensitivity"]
    with pytest.raises(UnknownNameError, match=r"unknown role of experiment 'x' 'mian'. Did you mean 'main'"):
        parse_config({"experiment": [{"name": "x", "role": "mian", "methods": ["lsh"]}]})


def test_shipped_configs():
    quick = load_config("configs/quick.toml")
    cells = quick.cells()
    assert {c.method for c in cells} == set(list_methods())
    assert {c.n_bits for c in cells} == {16, 32} and {c.dataset for c in cells} == {"mosaic"}
    paper = load_config("configs/paper.toml")
    roles = {e.name: e.role for e in paper.experiments}
    assert roles == {"table3": "main", "table3-deep": "main", "table4": "timing", "table5": "ablation",
                     "figure3": "epochs", "figure4": "sensitivity", "beyond": "main"}  # fmt: skip
    main = paper.cells(experiments=["table3", "table3-deep"], datasets=["mosaic"])
    assert {c.method for c in main} >= {"lsh", "sklsh", "sh", "pcah", "itq", "sgh", "uh-bdnn", "deepbit", "ssdh", "sadh",
                                        "tbh", "lagnh"}  # fmt: skip
    seeds = {m: sorted({c.seed for c in main if c.method == m}) for m in ("itq", "lagnh", "deepbit")}
    assert seeds == {"itq": [0, 1, 2], "lagnh": [0, 1, 2], "deepbit": [0]}
    assert {c.role for c in main} == {"main"} and {c.spec()["role"] for c in main} == {"main"}
    beyond = paper.cells(experiments=["beyond"], datasets=["mosaic"])
    assert {c.method for c in beyond} >= {"lsh", "itq", "lagnh", "greedyhash", "bihalf", "cibhash"}
    assert {c.n_bits for c in beyond} == {16, 32, 64, 128}
    variants = {c.label for c in paper.cells(experiments=["table5"])}
    assert variants == {
        "no-aux",
        "no-att",
        "only-Sv",
        "only-Sa",
        "recons-ZtZ",
        "recons-feat",
        "recons-S",
        "recons-Sv",
        "recons-Sa",
    }
    figure3 = paper.cells(experiments=["figure3"], datasets=["mosaic"])
    assert [(c.n_bits, c.params["epochs"], c.record_epochs[-1]) for c in figure3] == [(32, 1000, 1000)]
    figure4 = paper.cells(experiments=["figure4"], datasets=["mosaic"])
    assert len(figure4) == 27 and {len(c.params) for c in figure4} == {1}
    health = load_config("configs/health.toml").cells()
    deep = {name for name, cls in list_methods().items() if "preset" in cls().get_params()}
    assert {c.method for c in health} == deep | {"lsh", "itq"}
    assert {(c.dataset, c.dataset_options.get("features", "fc7")) for c in health} == {
        ("mosaic", "fc7"), ("mosaic-pooled", "pooled"), ("mosaic-tags", "fc7")}  # fmt: skip


def test_common_params_that_no_method_accepts_are_an_error_with_a_suggestion(tmp_path):
    base = '[defaults]\ndatasets = ["mosaic"]\n[[experiment]]\nname = "x"\nmethods = ["lsh", "tbh"]\n'
    with pytest.raises(
        UnknownNameError,
        match=r"experiment 'x'.*no method of this experiment accepts.*'presett'. Did you mean 'preset'",
    ):
        matrix_of(tmp_path, base + 'common_params = { presett = "quick" }\n')
    cells = matrix_of(tmp_path, base + 'common_params = { preset = "quick" }\n').cells()
    assert {c.method: c.params for c in cells} == {"lsh": {}, "tbh": {"preset": "quick"}}  # given where accepted


def test_a_cell_round_trips_through_its_record_spec(toy_npz):
    cell = Cell(
        experiment="e",
        label="l",
        method="lsh",
        params={"a": 1},
        dataset="toy",
        n_bits=8,
        seed=2,
        protocol="deephash",
        topk=50,
        device="cpu",
        timeout_s=9.0,
        record_epochs=(1, 3),
        dataset_source=toy_npz,
    )
    spec = {**cell.spec(), "dataset_source": toy_npz}
    again = Cell.from_spec(spec)
    assert again == cell and again.id == cell.id and again.method_seed == cell.method_seed
    rescored = Cell.from_spec(spec, protocol="official")
    assert rescored.protocol == "official" and rescored.computation_id == cell.computation_id
    assert set(cell.axes()) <= set(spec)
