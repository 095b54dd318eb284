"""The numbers the LAGNH paper reports, for side-by-side comparison with hashbench's results.

Cui, Zhu, Li, Cheng, Zhang. "Two-pronged Strategy: Lightweight Augmented Graph Network Hashing
for Scalable Image Retrieval". ACM MM 2021. Tables 3 (MAP@1000), 4 (seconds at 32 bits) and 5
(MAP of LAGNH variants) and the chosen hyper-parameters are shipped as package data
(``hashbench/data/paper_numbers.toml``).

The paper used MS-COCO and NUS-WIDE. Our ``coco`` and ``nuswide`` datasets are compared with
those; any other dataset (e.g. the embedded ``mosaic``) is shown beside the paper's MS-COCO
numbers. The paper's columns always name the paper's dataset ("paper (MS-COCO)"), and a
caption says when ours is different data.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources

#: The paper dataset an unrecognised dataset of ours is shown beside.
FALLBACK_PAPER_DATASET = "coco"
#: The method the paper proposes (drawn on top in figures).
PAPER_METHOD = "lagnh"


@cache
def paper_numbers() -> dict:
    """The parsed package-data file of the paper's numbers (read once)."""
    data = resources.files("hashbench").joinpath("data/paper_numbers.toml").read_bytes()
    return tomllib.loads(data.decode("utf-8"))


@dataclass(frozen=True)
class PaperDataset:
    """The paper dataset that one of our datasets is compared with."""

    key: str  # "coco" or "nuswide": the key in the paper numbers
    name: str  # the paper's name for it, e.g. "MS-COCO"
    same_data: bool  # True when our dataset is the paper's dataset

    @property
    def column_label(self) -> str:
        """Heading of the paper's columns, naming the paper's dataset: 'paper (MS-COCO)'."""
        return f"paper ({self.name})"


def paper_dataset(dataset: str) -> PaperDataset:
    """Which paper dataset our ``dataset`` is compared with (``mosaic`` -> MS-COCO, different data)."""
    names = paper_numbers()["datasets"]
    if dataset in names:
        return PaperDataset(dataset, names[dataset], True)
    return PaperDataset(FALLBACK_PAPER_DATASET, names[FALLBACK_PAPER_DATASET], False)


def method_order() -> list[str]:
    """The paper's Table 3 rows as hashbench method names, in the paper's order."""
    return list(paper_numbers()["methods"])


def method_display_name(method: str) -> str:
    """The paper's spelling of a method ('uh-bdnn' -> 'UH-BDNN'); other names unchanged."""
    return paper_numbers()["methods"].get(method, method)


def variant_order() -> list[str]:
    """The paper's Table 5 rows as LAGNH variant labels, in the paper's order."""
    return list(paper_numbers()["variants"])


def _value_at_bits(values: list[float] | None, n_bits: int) -> float | None:
    bits = paper_numbers()["bits"]
    if values is None or n_bits not in bits:
        return None
    return values[bits.index(n_bits)]


def paper_map(dataset: str, row: str, n_bits: int, *, table: str = "table3") -> float | None:
    """MAP@1000 the paper reports for a method (Table 3) or LAGNH variant (Table 5); None if absent."""
    per_row = paper_numbers()[table][paper_dataset(dataset).key]
    return _value_at_bits(per_row.get(row), n_bits)


def paper_seconds(dataset: str, method: str) -> tuple[float, float] | None:
    """(training, encoding) seconds at 32 bits from Table 4, or None for methods it does not list."""
    seconds = paper_numbers()["table4"][paper_dataset(dataset).key].get(method)
    return None if seconds is None else (seconds[0], seconds[1])


def paper_hyperparameters(dataset: str) -> dict[str, float]:
    """LAGNH's hyper-parameters chosen by the paper for (the paper counterpart of) ``dataset``."""
    return dict(paper_numbers()["hyperparameters"][paper_dataset(dataset).key])


def paper_training_epochs() -> int:
    """The number of training epochs the paper uses for LAGNH."""
    return int(paper_numbers()["training"]["epochs"])
