"""Run matrices: TOML files that name the cells of a benchmark.

A matrix file has optional ``[defaults]`` and one or more ``[[experiment]]`` tables::

    [defaults]                     # every key optional; applies to every experiment
    datasets = ["mosaic"]          # registered names or .npz paths; or tables, see below
    bits = [16, 32]
    seeds = [0]
    protocol = "official"          # official | deephash | tie_aware
    topk = 1000
    device = "cpu"                 # cpu | cuda | cuda:N | auto
    executor = "local"             # local | processes | ray | slurm
    workers = 2                    # parallel workers of the "processes" executor
    threads = 1                    # CPU threads of each cell (0: torch's default, one per core)
    timeout_s = 3600               # per cell; omitted = no limit
    record_epochs = []             # epochs after which MAP is recorded (iterative methods)
    common_params = {}             # hyper-parameters given to every method that has them
    [defaults.executor_options]    # executor settings, see hashbench.running.executors

    [[experiment]]
    name = "table3"
    role = "main"                  # what reports use the cells for (default "main"; see ROLES)
    methods = ["lsh", "itq", { method = "lagnh", label = "no-att", params = { attention = false } },
               { method = "lagnh", params = { lambda1 = [0.1, 1, 10] } }]

An experiment's ``role`` tells the reports what its cells are for, whatever the experiment is
called: ``main`` (the comparison of Tables 3 and 4 and Figure 2), ``timing`` (Table 4 only),
``ablation`` (Table 5's variants), ``epochs`` (Figure 3) or ``sensitivity`` (Figure 4).

Every ``[defaults]`` key may be overridden inside an experiment. ``methods = "all"`` means every
registered method, plugins included. In ``params`` a list value is a grid axis (one cell per
value; several lists give their Cartesian product); to pass a list as one value, wrap it:
``hidden = [[1024, 512]]``. ``common_params`` (e.g. ``{ preset = "quick" }``) reaches only the
methods whose ``get_params()`` has that name, and a method's own ``params`` win over it.
``dataset_params = { nuswide = { preset = "nuswide" } }`` in a method entry overrides its
params on the datasets so labelled (a paper's per-dataset settings).

A dataset entry is a name or path, or a table ``{ name = "mosaic", size = "tiny", label = "...",
optional = true }``: keys other than ``name``, ``label`` and ``optional`` are options passed to
``hashbench.load_dataset``; ``label`` names the dataset in results (default: the name, or the
file's stem for a path, with the options appended); an ``optional`` dataset that cannot be loaded
is skipped at run time with a one-line note (e.g. prepared COCO features that are not there).

``threads`` fixes the CPU threads torch uses in each cell: a float sum split over more threads
adds in another order, so a method trained with 2 threads gives (slightly) different codes than
with 1; the default 1 makes a cell's numbers independent of the machine's core count (``workers``
of the ``processes`` executor then use the cores), 0 leaves torch's default of one per core.

Each cell's method seed is derived from the matrix seed and the cell's axes (method,
hyper-parameters, dataset, bits), never from the experiment or label, so the same computation
gets the same seed wherever it appears; dataset splits are fixed by the dataset alone.
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from hashbench._validation import check_choice, unknown_name_message
from hashbench.errors import InvalidInputError, UnknownNameError
from hashbench.metrics import PROTOCOLS
from hashbench.running.cell import DEFAULT_ROLE, Cell

EXECUTORS = ("local", "processes", "ray", "slurm")
SETTINGS_DEFAULTS = {
    "datasets": ["mosaic"],
    "bits": [32],
    "seeds": [0],
    "protocol": "official",
    "topk": 1000,
    "device": "cpu",
    "executor": "local",
    "workers": 2,
    "threads": 1,
    "timeout_s": None,
    "record_epochs": [],
    "common_params": {},
    "executor_options": {},
}
EXPERIMENT_KEYS = ("name", "description", "methods", "role")
ROLES = ("main", "timing", "ablation", "epochs", "sensitivity")
METHOD_KEYS = ("method", "label", "params", "dataset_params")
DATASET_KEYS = ("name", "label", "optional")
TOP_LEVEL_KEYS = ("defaults", "experiment", "description")


@dataclass(frozen=True)
class DatasetSpec:
    source: str
    label: str
    options: dict
    optional: bool


@dataclass(frozen=True)
class MethodSpec:
    method: str
    label: str
    params: dict  # values that are lists are grid axes
    dataset_params: dict = field(default_factory=dict)  # dataset label -> params overriding them there


@dataclass(frozen=True)
class Experiment:
    name: str
    methods: tuple[MethodSpec, ...]
    settings: dict  # every key of SETTINGS_DEFAULTS, resolved
    description: str = ""
    role: str = DEFAULT_ROLE

    def cells(self) -> list[Cell]:
        s = self.settings
        cells = []
        for spec in self.methods:
            for dataset in s["datasets"]:
                for params in expand_grid({**spec.params, **spec.dataset_params.get(dataset.label, {})}):
                    for n_bits in s["bits"]:
                        for seed in s["seeds"]:
                            cells.append(
                                Cell(
                                    experiment=self.name,
                                    label=spec.label,
                                    method=spec.method,
                                    params=params,
                                    dataset=dataset.label,
                                    n_bits=n_bits,
                                    seed=seed,
                                    protocol=s["protocol"],
                                    topk=s["topk"],
                                    device=s["device"],
                                    timeout_s=s["timeout_s"],
                                    record_epochs=tuple(s["record_epochs"]),
                                    dataset_source=dataset.source,
                                    dataset_options=dataset.options,
                                    dataset_optional=dataset.optional,
                                    role=self.role,
                                )
                            )
        return cells


def expand_grid(params: dict) -> list[dict]:
    """One dict per point of the grid spanned by the list-valued entries of ``params``."""
    names = sorted(params)
    axes = [params[n] if isinstance(params[n], list) else [params[n]] for n in names]
    return [dict(zip(names, values)) for values in itertools.product(*axes)]


@dataclass(frozen=True)
class Matrix:
    """The experiments of a matrix file; ``cells`` expands them, narrowed by optional filters."""

    experiments: tuple[Experiment, ...]
    path: str = ""

    def experiment(self, name: str) -> Experiment:
        for experiment in self.experiments:
            if experiment.name == name:
                return experiment
        raise UnknownNameError(unknown_name_message("experiment", name, [e.name for e in self.experiments]))

    def with_seeds(self, seeds) -> Matrix:
        """The same matrix with every experiment run at ``seeds`` instead of its own."""
        seeds = [check_int(seed, "a seed", minimum=0) for seed in seeds]
        experiments = tuple(replace(e, settings={**e.settings, "seeds": seeds}) for e in self.experiments)
        return replace(self, experiments=experiments)

    def cells(self, experiments=None, methods=None, datasets=None, bits=None, seeds=None) -> list[Cell]:
        """Cells of the chosen experiments whose method (name or label), dataset, bits and seed
        are among the given ones (None = all). A filter value that matches no cell is an error."""
        chosen = self.experiments if experiments is None else [self.experiment(n) for n in experiments]
        cells = [cell for experiment in chosen for cell in experiment.cells()]
        filters = {
            "method": (methods, lambda c: {c.method, c.label}),
            "dataset": (datasets, lambda c: {c.dataset, c.dataset_source}),
            "bits": (bits, lambda c: {c.n_bits}),
            "seed": (seeds, lambda c: {c.seed}),
        }
        for kind, (wanted, values_of) in filters.items():
            if wanted is None:
                continue
            wanted = set(wanted)
            available = set().union(*(values_of(c) for c in cells)) if cells else set()
            missing = wanted - available
            if missing:
                raise InvalidInputError(
                    f"{kind} filter {sorted(missing, key=str)} matches no cell of the chosen experiments "
                    f"(available: {', '.join(map(str, sorted(available, key=str))) or 'none'})"
                )
            cells = [c for c in cells if values_of(c) & wanted]
        return cells


# --- loading and validation ----------------------------------------------------------------------
def load_config(path) -> Matrix:
    """Parse and validate a matrix file; errors name the file, the place and the valid choices."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"config file {str(path)!r} does not exist")
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except tomllib.TOMLDecodeError as error:
        raise InvalidInputError(f"{path}: not valid TOML: {error}") from None
    try:
        return parse_config(document, base_dir=path.parent, name=str(path))
    except InvalidInputError as error:
        raise type(error)(f"{path}: {error}") from None


def parse_config(document: dict, *, base_dir: Path = Path("."), name: str = "") -> Matrix:
    """Build a Matrix from an already parsed TOML document (see the module docstring)."""
    check_keys(document, TOP_LEVEL_KEYS, "top-level key")
    defaults = document.get("defaults", {})
    check_table(defaults, "[defaults]")
    check_keys(defaults, SETTINGS_DEFAULTS, "key in [defaults]")
    experiments = document.get("experiment", [])
    if not isinstance(experiments, list) or not experiments:
        raise InvalidInputError("the config defines no experiment; add at least one [[experiment]] table")
    parsed = [parse_experiment(e, defaults, base_dir, i) for i, e in enumerate(experiments)]
    names = [e.name for e in parsed]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidInputError(f"experiment names must be unique; repeated: {', '.join(duplicates)}")
    return Matrix(tuple(parsed), name)


def parse_experiment(table, defaults: dict, base_dir: Path, index: int) -> Experiment:
    check_table(table, f"[[experiment]] #{index + 1}")
    name = table.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"[[experiment]] #{index + 1} needs a name (a non-empty string)")
    where = f"experiment {name!r}"
    check_keys(table, (*EXPERIMENT_KEYS, *SETTINGS_DEFAULTS), f"key in {where}")
    if "methods" not in table:
        raise InvalidInputError(f'{where} has no methods; give a list of method names or "all"')
    raw = {**SETTINGS_DEFAULTS, **defaults, **{k: v for k, v in table.items() if k in SETTINGS_DEFAULTS}}
    settings = parse_settings(raw, base_dir, where)
    methods = parse_methods(table["methods"], settings["common_params"], where)
    role = check_choice(table.get("role", DEFAULT_ROLE), ROLES, f"role of {where}")
    return Experiment(name, methods, settings, str(table.get("description", "")), role)


def parse_settings(raw: dict, base_dir: Path, where: str) -> dict:
    settings = dict(raw)
    settings["datasets"] = [parse_dataset(d, base_dir, where) for d in as_list(raw["datasets"], "datasets", where)]
    labels = [d.label for d in settings["datasets"]]
    if len(set(labels)) != len(labels):
        raise InvalidInputError(f"{where}: datasets must have distinct labels, got {labels}")
    settings["bits"] = [check_int(b, f"{where}: bits", minimum=1) for b in as_list(raw["bits"], "bits", where)]
    settings["seeds"] = [check_int(s, f"{where}: seeds", minimum=0) for s in as_list(raw["seeds"], "seeds", where)]
    settings["record_epochs"] = sorted(
        {
            check_int(e, f"{where}: record_epochs", minimum=1)
            for e in as_list(raw["record_epochs"], "record_epochs", where)
        }
    )
    settings["topk"] = check_int(raw["topk"], f"{where}: topk", minimum=1)
    settings["workers"] = check_int(raw["workers"], f"{where}: workers", minimum=1)
    settings["threads"] = check_int(raw["threads"], f"{where}: threads", minimum=0)
    check_choice(raw["protocol"], PROTOCOLS, f"protocol in {where}")
    check_choice(raw["executor"], EXECUTORS, f"executor in {where}")
    settings["device"] = check_device(raw["device"], where)
    timeout = raw["timeout_s"]
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise InvalidInputError(f"{where}: timeout_s must be a positive number of seconds, got {timeout!r}")
    check_table(raw["common_params"], f"{where}: common_params")
    check_table(raw["executor_options"], f"{where}: executor_options")
    return settings


def parse_dataset(entry, base_dir: Path, where: str) -> DatasetSpec:
    if isinstance(entry, str):
        entry = {"name": entry}
    check_table(entry, f"{where}: dataset entry")
    if not isinstance(entry.get("name"), str):
        raise InvalidInputError(
            f'{where}: a dataset table needs name = "..." (a registered name or a path), got {entry}'
        )
    options = {k: v for k, v in entry.items() if k not in DATASET_KEYS}
    source = resolve_dataset_source(entry["name"], base_dir)
    optional = entry.get("optional", False)
    if not isinstance(optional, bool):
        raise InvalidInputError(f"{where}: dataset option 'optional' must be true or false, got {optional!r}")
    if not optional:
        check_dataset_exists(source, where)
    label = entry.get("label") or dataset_label(entry["name"], options)
    return DatasetSpec(source, label, options, optional)


def resolve_dataset_source(name: str, base_dir: Path) -> str:
    """Registered names stay as they are; a relative path is found from the working directory
    first, then from the config file's folder."""
    if not looks_like_path(name):
        return name
    path = Path(name).expanduser()
    if not path.is_absolute() and not path.exists() and (base_dir / path).exists():
        path = base_dir / path
    return str(path.resolve())


def looks_like_path(name: str) -> bool:
    return "/" in name or "\\" in name or Path(name).suffix != ""


def check_dataset_exists(source: str, where: str) -> None:
    if looks_like_path(source):
        if not Path(source).exists():
            raise InvalidInputError(f"{where}: dataset file {source!r} does not exist")
        return
    from hashbench.registry import list_datasets

    known = list_datasets()
    if source not in known:
        raise UnknownNameError(f"{where}: " + unknown_name_message("dataset", source, known))


def dataset_label(name: str, options: dict) -> str:
    base = Path(name).stem if looks_like_path(name) else name
    if not options:
        return base
    return base + "[" + ",".join(f"{k}={options[k]}" for k in sorted(options)) + "]"


def parse_methods(entries, common_params: dict, where: str) -> tuple[MethodSpec, ...]:
    from hashbench.registry import list_methods

    registered = list_methods()
    if entries == "all":
        entries = list(registered)
    entries = as_list(entries, "methods", where)
    if not entries:
        raise InvalidInputError(f"{where}: methods is empty")
    specs, accepted_anywhere = [], set()
    for entry in entries:
        if isinstance(entry, str):
            entry = {"method": entry}
        check_table(entry, f"{where}: method entry")
        check_keys(entry, METHOD_KEYS, f"key of a method entry in {where}")
        name = entry.get("method")
        if not isinstance(name, str):
            raise InvalidInputError(f'{where}: a method table needs method = "name", got {entry}')
        if name not in registered:
            raise UnknownNameError(f"{where}: " + unknown_name_message("method", name, registered))
        accepted = registered[name]().get_params()
        tunable = [p for p in accepted if p not in ("n_bits", "seed", "device")]
        params = entry.get("params", {})
        check_table(params, f"{where}: params of {name!r}")
        check_keys(params, tunable, f"hyper-parameter of {name!r} in {where}")
        dataset_params = entry.get("dataset_params", {})
        check_table(dataset_params, f"{where}: dataset_params of {name!r}")
        for dataset, overrides in dataset_params.items():
            check_table(overrides, f"{where}: dataset_params.{dataset} of {name!r}")
            check_keys(overrides, tunable, f"hyper-parameter of {name!r} in {where} (dataset_params.{dataset})")
        shared = {k: v for k, v in common_params.items() if k in accepted}
        label = entry.get("label", name)
        if not isinstance(label, str) or not label:
            raise InvalidInputError(f"{where}: label of {name!r} must be a non-empty string, got {label!r}")
        specs.append(MethodSpec(name, label, {**shared, **params}, dataset_params))
        accepted_anywhere.update(tunable)
    for key in common_params:
        if key not in accepted_anywhere:
            message = unknown_name_message("common_params key", key, accepted_anywhere)
            raise UnknownNameError(f"{where}: no method of this experiment accepts it: {message}")
    return tuple(specs)


# --- small checks --------------------------------------------------------------------------------
def check_keys(table: dict, valid, kind: str) -> None:
    for key in table:
        if key not in valid:
            raise UnknownNameError(unknown_name_message(kind, key, valid))


def check_table(value, what: str) -> None:
    if not isinstance(value, dict):
        raise InvalidInputError(f"{what} must be a table ({{ key = value, ... }}), got {value!r}")


def as_list(value, key: str, where: str) -> list:
    if isinstance(value, list):
        return value
    if isinstance(value, (str, int, dict)) and not isinstance(value, bool):
        return [value]
    raise InvalidInputError(f"{where}: {key} must be a list, got {value!r}")


def check_int(value, what: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInputError(f"{what} must be integers >= {minimum}, got {value!r}")
    return value


def check_device(device, where: str) -> str:
    valid = device in ("cpu", "cuda", "auto") or (
        isinstance(device, str) and device.startswith("cuda:") and device[5:].isdigit()
    )
    if not valid:
        raise InvalidInputError(f"{where}: device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}")
    return device
