"""Registries of methods and datasets, and plugin loading.

Methods come from three places, all ending in the same registry:
- built-in modules under ``hashbench/methods/`` (each module imported on first use; a ``Hasher``
  subclass that sets ``name`` registers itself when its module is imported);
- installed packages exposing a ``Hasher`` subclass in the entry-point group ``hashbench.methods``;
- a single Python file given with ``--plugin path/to/my_method.py`` (or ``load_plugin``).
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from hashbench._validation import unknown_name_message
from hashbench.errors import InvalidInputError, UnknownNameError

ENTRY_POINT_GROUP = "hashbench.methods"
#: packages whose public modules register built-in methods and datasets when imported (by name:
#: the registry sits below them, and they import it to register)
BUILT_IN_PACKAGES = ("hashbench.methods", "hashbench.datasets")

_METHODS: dict[str, type] = {}
_DATASETS: dict[str, DatasetEntry] = {}
_discovered = False


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    build: Callable  # build(**options) -> HashingDataset
    description: str


def register_method(cls: type) -> type:
    """Register a Hasher subclass under ``cls.name`` (lower case, hyphens)."""
    name = cls.name
    if name != name.lower() or " " in name or "_" in name:
        raise InvalidInputError(f"method name {name!r} must be lower case with hyphens, e.g. 'uh-bdnn'")
    previous = _METHODS.get(name)
    if previous is not None and previous.__qualname__ != cls.__qualname__:
        raise InvalidInputError(f"method name {name!r} is taken by {previous.__module__}.{previous.__qualname__}")
    _METHODS[name] = cls
    return cls


def register_dataset(name: str, build: Callable, description: str) -> None:
    _DATASETS[name] = DatasetEntry(name, build, description)


def discover() -> None:
    """Import every built-in method and dataset module and every entry-point plugin (once)."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for package_name in BUILT_IN_PACKAGES:
        package = importlib.import_module(package_name)
        for module in pkgutil.iter_modules(package.__path__):
            if not module.name.startswith("_"):
                importlib.import_module(f"{package_name}.{module.name}")
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        entry.load()  # importing the class registers it


def load_plugin(path) -> None:
    """Import one Python file; the Hasher subclasses it defines register themselves."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"plugin file {str(path)!r} does not exist")
    module_name = f"hashbench_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # the plugin's own error, named with its file
        del sys.modules[module_name]
        raise InvalidInputError(
            f"plugin file {str(path)!r} failed to import: {type(error).__name__}: {error}"
        ) from error


def method_class(name: str) -> type:
    discover()
    if name not in _METHODS:
        raise UnknownNameError(unknown_name_message("method", name, _METHODS))
    return _METHODS[name]


def create_method(name: str, n_bits: int = 32, **params):
    """A new, unfitted Hasher: ``create_method("itq", n_bits=32, seed=0)``."""
    cls = method_class(name)
    try:
        return cls(n_bits=n_bits, **params)
    except TypeError as error:
        known = sorted(cls().get_params())
        raise UnknownNameError(f"{error}; hyper-parameters of {name!r}: {', '.join(known)}") from None


def list_methods() -> dict[str, type]:
    discover()
    return dict(sorted(_METHODS.items()))


def list_datasets() -> dict[str, DatasetEntry]:
    discover()
    return dict(sorted(_DATASETS.items()))


def dataset_entry(name: str) -> DatasetEntry:
    discover()
    if name not in _DATASETS:
        raise UnknownNameError(unknown_name_message("dataset", name, _DATASETS))
    return _DATASETS[name]
