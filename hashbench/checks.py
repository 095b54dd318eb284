"""The conformance suite every method passes, built-in or plugin: ``check_method(name_or_class)``.

Each check returns what it saw when it fails; ``check_method`` returns the list of failures (empty
when the method passes). The checks run on a small built-in dataset (``conformance_dataset``):
multi-label clustered non-negative features (the statistics of CNN activations), noisy aux
semantics and a labelled web split. Image methods run in frozen mode there (a code layer on the
features), since the data has no images. A method with a schedule runs its ``quick`` preset unless
a preset is given. A second set (``check_set``: :func:`hashbench.datasets.synthetic.fc7_like_dataset`
at 1,000 / 200 / 2,000 items and 256 features) has the statistics of fc7 features (58% zeros,
median cosine 0.54, variance over many directions) and nothing tuned on it: there the method
trains at its default settings, the paper preset, which is what the benchmark's tables run; a
method whose schedule passes at ``quick`` but collapses over the paper's is caught there.

The checks, in order:

- ``registered``: the registry lists the class under its ``name``; ``create_method`` builds it;
  it cites its paper;
- ``params``: ``get_params`` reflects ``__init__`` and survives ``sklearn.base.clone``;
- ``bad_input``: ``n_bits=0`` and encoding before ``fit`` raise hashbench's named errors;
- ``schedule``: a method with a schedule has ``paper`` and ``quick`` presets naming the same
  hyper-parameters, each an ``__init__`` argument; a method without one declares itself ``fast``;
- ``fit`` (fit and encode at the quick preset), then on the fitted model:
  ``budget`` (fit + encode within ``time_budget_s``), ``callback`` (epochs reported to the
  callback increase from 1, and every method with a schedule reports them), ``deterministic_encode``
  (encoding twice gives the same codes), ``per_item`` (a code depends only on its item: a shuffled
  database gets the shuffled codes), ``healthy_codes`` (at most 10% constant bits, at least 20%
  distinct codes, mean absolute bit correlation at most 0.9, the runner's limit) and
  ``beats_random`` (MAP@100 at least 0.05 above uniformly random codes);
- ``same_seed``: a second fit with the same seed gives byte-identical codes;
- ``feature_scale``: features multiplied by 1e-3 and by 1e3 train and encode without error
  (no divergence, no NaN);
- ``paper_preset``: fit at the default preset (``paper``; the other parameters as above) on the
  fc7-like check set; its database codes pass the limits of ``healthy_codes`` and beat random
  codes as in ``beats_random``; a method without presets trains its defaults. A method that
  declares ``paper_preset_affordable = False`` (a schedule of a fixed, large number of steps,
  which fewer items do not shorten) is not trained there: its quick preset stands for a
  different, shorter method (TBH's quick preset, 2,000 steps, left 15% distinct codes here).
"""

from __future__ import annotations

import functools
import time

import numpy as np
from sklearn.base import clone

from hashbench.codes import BinaryCodes
from hashbench.datasets.base import HashingDataset, Split
from hashbench.errors import HashbenchError, InvalidInputError, NotFittedError
from hashbench.health import DEGENERATE_CORRELATION, code_stats
from hashbench.metrics import evaluate
from hashbench.registry import list_methods, method_class

CHECK_BITS = 16
TIME_BUDGET_S = 120.0
MAX_CONSTANT_BITS = 0.1
MIN_DISTINCT_FRACTION = 0.2
MAX_MEAN_ABS_CORRELATION = DEGENERATE_CORRELATION
MIN_MAP_GAIN = 0.05
CHECK_TOPK = 100
FEATURE_SCALES = (1e-3, 1e3)
N_CLASSES, N_FEATURES, N_TAGS = 8, 64, 16
CHECK_SET_SIZES = {"n_train": 1000, "n_query": 200, "n_database": 2000, "n_web": 200, "n_features": 256}


# --- the data ----------------------------------------------------------------------------------
@functools.cache
def conformance_dataset(seed: int = 0) -> HashingDataset:
    """Train 600 / query 100 / database 1,200 items, 64-d features, 8 classes (1-2 per item),
    24-d aux (the labels as a noisy detector sees them, then 16 tags drawn per class; about 3
    non-zero entries per item, as COCO's detected objects) and a web split of 200 single-label
    items."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.5, 1.0, (N_CLASSES, N_FEATURES))
    tag_rates = rng.uniform(0.0, 0.2, (N_CLASSES, N_TAGS))

    def split(n: int, name: str, max_labels: int = 2) -> Split:
        labels = np.zeros((n, N_CLASSES), np.uint8)
        for row, count in enumerate(rng.integers(1, max_labels + 1, n)):
            labels[row, rng.choice(N_CLASSES, count, replace=False)] = 1
        mixed = labels @ centres / labels.sum(axis=1, keepdims=True)
        features = np.maximum(mixed + rng.normal(0.0, 1.0, mixed.shape), 0.0)
        # detections: 10% of the objects missed, 3% of the absent ones seen
        detected = np.where(labels == 1, rng.random(labels.shape) > 0.1, rng.random(labels.shape) < 0.03)
        tags = rng.random((n, N_TAGS)) < labels @ tag_rates / labels.sum(axis=1, keepdims=True)
        aux = np.hstack([detected, tags]).astype(np.float32)
        return Split(features.astype(np.float32), labels, aux, name=name)

    web = split(200, "web", max_labels=1)  # before the others: their draws do not depend on its size
    return HashingDataset(
        "conformance",
        split(600, "train"),
        split(100, "query"),
        split(1200, "database"),
        web=Split(web.features, web.labels, name="web"),
    )


@functools.cache
def check_set(seed: int = 0) -> HashingDataset:
    """The fc7-like check set: :func:`~hashbench.datasets.synthetic.fc7_like_dataset` at
    ``CHECK_SET_SIZES`` (10 classes, about 2 labels per item, aux and a web split)."""
    from hashbench.datasets.synthetic import fc7_like_dataset

    return fc7_like_dataset(**CHECK_SET_SIZES, seed=seed)


# --- the suite ---------------------------------------------------------------------------------
def check_method(method, *, time_budget_s: float = TIME_BUDGET_S, **params) -> list[str]:
    """Run every check on ``method`` (a registered name or a Hasher subclass) built with
    ``params``; return one line per failed check (``"check: what was seen"``), [] when all pass."""
    cls = method_class(method) if isinstance(method, str) else method
    params = check_settings(cls, params)
    dataset = conformance_dataset()
    failures = []

    def run(check, *args) -> None:
        try:
            problem = check(*args)
        except Exception as error:  # a check that crashes is a failed check, with what was raised
            problem = f"raised {type(error).__name__}: {error}"
        if problem:
            failures.append(f"{check.__name__.removeprefix('check_')}: {problem}")

    for check in (check_registered, check_params, check_bad_input, check_schedule):
        run(check, cls, params)
    try:
        fitted = FittedRun.make(cls, params, dataset)
    except Exception as error:
        return [*failures, f"fit: raised {type(error).__name__}: {error}"]
    fitted.budget_s = time_budget_s
    for check in (
        check_budget, check_callback, check_deterministic_encode, check_per_item, check_healthy_codes,
        check_beats_random, check_same_seed,
    ):  # fmt: skip
        run(check, fitted)
    run(check_feature_scale, cls, params, dataset)
    run(check_paper_preset, cls, params)
    return failures


def check_settings(cls: type, params: dict) -> dict:
    """``params`` with the check's defaults: the quick preset, frozen mode for image methods."""
    accepted = cls().get_params()
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise InvalidInputError(
            f"{cls.__name__} has no hyper-parameter {', '.join(unknown)}; it has {', '.join(sorted(accepted))}"
        )
    defaults = {"n_bits": CHECK_BITS}
    if "quick" in cls.presets:
        defaults["preset"] = "quick"
    if "frozen_backbone" in accepted:
        defaults["frozen_backbone"] = True
    return {**defaults, **params}


class FittedRun:
    """One fit at the check's settings with the epochs the callback saw, its timing and codes."""

    def __init__(self, cls, params, dataset, model, epochs, seconds, query, database):
        self.cls, self.params, self.dataset, self.model = cls, params, dataset, model
        self.epochs, self.seconds, self.query, self.database = epochs, seconds, query, database
        self.budget_s = TIME_BUDGET_S

    @classmethod
    def make(cls_, cls: type, params: dict, dataset: HashingDataset) -> FittedRun:
        epochs = []
        start = time.perf_counter()
        model = cls(**params).fit(dataset.train, callback=lambda epoch, hasher: epochs.append(epoch))
        query, database = model.encode(dataset.query), model.encode(dataset.database)
        return cls_(cls, params, dataset, model, epochs, time.perf_counter() - start, query, database)


def check_registered(cls: type, params: dict) -> str | None:
    name = getattr(cls, "name", None)
    if name is None:
        return f"{cls.__name__} sets no `name`, so it is not registered"
    if list_methods().get(name) is not cls:
        return f"the registry lists {list_methods().get(name)!r} under {name!r}, not {cls.__name__}"
    if not isinstance(method_class(name)(), cls):
        return f"create_method({name!r}) does not build a {cls.__name__}"
    if not cls.citation:
        return f"{cls.__name__} cites no paper (`citation` is empty)"
    return None


def check_params(cls: type, params: dict) -> str | None:
    method = cls(**params)
    given = method.get_params()
    if any(given[key] != value for key, value in params.items()):
        return f"get_params() does not return the arguments given to __init__: {given} vs {params}"
    if clone(method).get_params() != given:
        return "clone() changes the hyper-parameters"
    return None


def check_bad_input(cls: type, params: dict) -> str | None:
    train = conformance_dataset().train
    try:
        cls(**{**params, "n_bits": 0}).fit(train)
    except InvalidInputError as error:
        if "n_bits" not in str(error):
            return f"n_bits=0 raised an error that does not name n_bits: {error}"
    else:
        return "n_bits=0 was accepted"
    try:
        cls(**params).encode(train)
    except NotFittedError:
        return None
    return "encode before fit did not raise NotFittedError"


def check_schedule(cls: type, params: dict) -> str | None:
    if not cls.presets:
        return None if cls.fast else "no `presets` (paper and quick) and not declared `fast`"
    missing = {"paper", "quick"} - set(cls.presets)
    if missing:
        return f"presets lack {', '.join(sorted(missing))} (has {', '.join(sorted(cls.presets))})"
    keys = {name: set(values) for name, values in cls.presets.items()}
    if len({frozenset(k) for k in keys.values()}) > 1:
        return f"presets name different hyper-parameters: {keys}"
    defaults = cls().get_params()
    not_arguments = sorted(k for k in keys["paper"] if k not in defaults or defaults[k] is not None)
    if not_arguments:
        return f"preset keys {not_arguments} are not __init__ arguments defaulting to None"
    return None


def check_budget(run: FittedRun) -> str | None:
    if run.seconds > run.budget_s:
        return f"fit + encode took {run.seconds:.1f} s, over the {run.budget_s:.0f} s budget at {run.params}"
    return None


def check_callback(run: FittedRun) -> str | None:
    if run.cls.presets and not run.epochs:
        return "a method with a schedule never called the epoch callback"
    if run.epochs and run.epochs != list(range(1, len(run.epochs) + 1)):
        return f"callback epochs are not 1, 2, ...: {run.epochs[:10]}"
    return None


def check_deterministic_encode(run: FittedRun) -> str | None:
    if run.model.encode(run.dataset.query) != run.query:
        return "encoding the same query split twice gave different codes"
    return None


def check_per_item(run: FittedRun) -> str | None:
    order = np.random.default_rng(0).permutation(len(run.dataset.database))
    shuffled = run.model.encode(run.dataset.database.subset(order))
    changed = float((shuffled.packed != run.database.packed[order]).any(axis=1).mean())
    if changed:
        return f"{changed:.1%} of the database codes changed when the database was shuffled"
    return None


def check_healthy_codes(run: FittedRun) -> str | None:
    return health_problems(run.database)


def health_problems(codes: BinaryCodes) -> str | None:
    """What breaks the suite's limits on code health, or None."""
    stats = code_stats(codes)
    problems = []
    if stats["constant_bits"] > MAX_CONSTANT_BITS:
        problems.append(f"constant_bits={stats['constant_bits']:.2f} > {MAX_CONSTANT_BITS}")
    if stats["distinct_fraction"] < MIN_DISTINCT_FRACTION:
        problems.append(f"distinct_fraction={stats['distinct_fraction']:.3f} < {MIN_DISTINCT_FRACTION}")
    if stats["mean_abs_correlation"] > MAX_MEAN_ABS_CORRELATION:
        problems.append(f"mean_abs_correlation={stats['mean_abs_correlation']:.2f} > {MAX_MEAN_ABS_CORRELATION}")
    return "; ".join(problems) or None


def check_beats_random(run: FittedRun) -> str | None:
    return map_problem(run.query, run.database, run.dataset)


def map_problem(query_codes: BinaryCodes, database_codes: BinaryCodes, dataset: HashingDataset) -> str | None:
    """Whether MAP@100 falls short of random codes' by ``MIN_MAP_GAIN``, or None."""
    query, database = dataset.query, dataset.database
    scored = evaluate(query_codes, database_codes, query.labels, database.labels, topk=CHECK_TOPK).map
    floor = random_codes_map(query.labels, database.labels, query_codes.n_bits)
    if scored < floor + MIN_MAP_GAIN:
        return f"MAP@{CHECK_TOPK} {scored:.3f} is not {MIN_MAP_GAIN} above random codes' {floor:.3f}"
    return None


def random_codes_map(query_labels: np.ndarray, database_labels: np.ndarray, n_bits: int, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    query = BinaryCodes.from_bits(rng.integers(0, 2, (len(query_labels), n_bits)))
    database = BinaryCodes.from_bits(rng.integers(0, 2, (len(database_labels), n_bits)))
    return evaluate(query, database, query_labels, database_labels, topk=CHECK_TOPK).map


def check_same_seed(run: FittedRun) -> str | None:
    again = run.cls(**run.params).fit(run.dataset.train)
    if again.encode(run.dataset.database) != run.database:
        return f"two fits with seed={again.seed} gave different codes"
    return None


def check_feature_scale(cls: type, params: dict, dataset: HashingDataset) -> str | None:
    problems = []
    for scale in FEATURE_SCALES:
        train = scaled(dataset.train, scale)
        try:
            cls(**params).fit(train).encode(scaled(dataset.query, scale))
        except HashbenchError as error:
            problems.append(f"features x {scale:g}: {type(error).__name__}: {error}")
    return "; ".join(problems) or None


def scaled(split: Split, scale: float) -> Split:
    web = None if split.web is None else scaled(split.web, scale)
    return Split(split.features * np.float32(scale), split.labels, split.aux, split.images, split.name, web)


def check_paper_preset(cls: type, params: dict) -> str | None:
    dataset = check_set()
    settings = dict(params)
    if cls.presets:
        if not cls.paper_preset_affordable:
            return None
        settings["preset"] = "paper"
    model = cls(**settings).fit(dataset.train)
    query, database = model.encode(dataset.query), model.encode(dataset.database)
    problems = [problem for problem in (health_problems(database), map_problem(query, database, dataset)) if problem]
    if problems:
        preset = f"preset={settings['preset']!r} " if cls.presets else ""
        return f"{preset}on the fc7-like check set: " + "; ".join(problems)
    return None
