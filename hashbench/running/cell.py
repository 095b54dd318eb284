"""A cell: one method with fixed hyper-parameters on one dataset, code length and seed, the unit
the runner runs, the store files and the reports read back.

A cell's ``id`` and ``computation_id`` are short hashes of its fields in canonical JSON, so they
are the same on every machine and in every Python session; records carry the cell's ``spec``,
from which ``Cell.from_spec`` rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

DEFAULT_ROLE = "main"


@dataclass(frozen=True)
class Cell:
    """One unit of work: a method with fixed hyper-parameters on one dataset, code length and seed.

    ``dataset`` is the name results use; ``dataset_source`` (a registered name or a file path)
    and ``dataset_options`` are what ``hashbench.load_dataset`` receives.
    """

    experiment: str
    label: str
    method: str
    params: dict
    dataset: str
    n_bits: int
    seed: int
    protocol: str = "official"
    topk: int = 1000
    device: str = "cpu"
    timeout_s: float | None = None
    record_epochs: tuple[int, ...] = ()
    dataset_source: str = ""
    dataset_options: dict = field(default_factory=dict)
    dataset_optional: bool = False
    role: str = DEFAULT_ROLE  # what reports use the cell for; not part of its identity

    @property
    def id(self) -> str:
        """Stable short hash of the cell: its experiment and label plus what it computes.

        Protocol and topk are left out: they only change the scoring of the saved codes, so the
        runner rescores a finished cell instead of retraining it when they change.
        """
        return short_hash({"experiment": self.experiment, "label": self.label, "computation": self.computation_id})

    def axes(self) -> dict:
        """What the cell computes, the fields its codes depend on (JSON-able); experiment, label,
        protocol, top-k and time limit are not among them."""
        return {
            "method": self.method,
            "params": self.params,
            "dataset": self.dataset,
            "dataset_options": self.dataset_options,
            "n_bits": self.n_bits,
            "seed": self.seed,
            "device": self.device,
            "record_epochs": list(self.record_epochs),
        }

    @property
    def computation_id(self) -> str:
        """Short hash of what the cell computes (not its experiment or label): cells of several
        experiments with the same computation_id give the same codes, so they are run once."""
        return short_hash(self.axes())

    @property
    def method_seed(self) -> int:
        """The seed handed to the method: derived from the matrix seed and the cell's axes (but
        not the device or the epochs recorded, so that those leave the codes unchanged, nor the
        options that say where data lives, so that moving a file leaves them unchanged too)."""
        axes = self.axes()
        axes["dataset_options"] = {k: v for k, v in self.dataset_options.items() if k not in LOCATION_OPTIONS}
        digest = short_hash({key: axes[key] for key in SEED_AXES}, length=8)
        return int(digest, 16) % 2**31

    def spec(self) -> dict:
        """The JSON-able description stored in the cell's record (``Cell.from_spec`` reads it back)."""
        return {
            "experiment": self.experiment,
            "role": self.role,
            "label": self.label,
            **self.axes(),
            "method_seed": self.method_seed,
            "protocol": self.protocol,
            "topk": self.topk,
            "timeout_s": self.timeout_s,
        }

    @classmethod
    def from_spec(cls, spec: dict, **changes) -> Cell:
        """The cell a record's ``spec`` describes (records also store ``dataset_source``), with
        ``changes`` applied (e.g. another protocol)."""
        fields = {key: spec[key] for key in (*CELL_KEYS, "dataset_source") if key in spec}
        fields["record_epochs"] = tuple(fields.get("record_epochs", ()))
        return cls(**{**fields, **changes})

    def describe(self) -> str:
        params = f" {canonical_json(self.params)}" if self.params else ""
        return f"{self.experiment}/{self.label}{params} on {self.dataset} at {self.n_bits} bits, seed {self.seed}"


SEED_AXES = ("method", "params", "dataset", "dataset_options", "n_bits", "seed")
#: dataset options naming where the data lives rather than what it is: a validation view's base
#: dataset (its label already names it) and a cache folder
LOCATION_OPTIONS = ("dataset", "data_dir")
#: the fields of a spec that are Cell fields
CELL_KEYS = (
    "experiment", "role", "label", "method", "params", "dataset", "dataset_options", "n_bits", "seed", "protocol",
    "topk", "device", "timeout_s", "record_epochs",
)  # fmt: skip


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def short_hash(value, length: int = 12) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:length]
