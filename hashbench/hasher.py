"""The ``Hasher`` base class: one interface for every hashing method.

Conventions follow scikit-learn: ``__init__`` only stores its arguments (so ``get_params``,
``set_params``, ``sklearn.base.clone`` and ``Pipeline`` work), ``fit`` learns and returns
``self``, learned attributes end in ``_``. A subclass declares its hyper-parameters as explicit
keyword arguments of ``__init__`` and implements two hooks:

- ``_fit(train: Split, callback)``: learn from the training split (never its labels); an iterative
  method calls ``callback(epoch, self)`` after each epoch (the base marks the model fitted first);
- ``_encode(split: Split) -> array``: real-valued outputs (n, n_bits); the base class binarises
  them by sign (0 -> +1), so a method that thresholds elsewhere (e.g. at the mean) subtracts that
  threshold first.

A subclass that sets ``name`` is registered under it as soon as its module is imported.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator

from hashbench._validation import check_choice, check_positive_int
from hashbench.codes import BinaryCodes
from hashbench.datasets.base import Split
from hashbench.errors import InvalidInputError, NotFittedError

INPUT_KINDS = ("features", "images")


class Hasher(BaseEstimator):
    name: ClassVar[str]
    input_kind: ClassVar[str] = "features"
    uses_aux: ClassVar[bool] = False
    citation: ClassVar[str] = ""
    #: largest code length the method supports for a given feature width; None = no limit
    max_bits_per_feature: ClassVar[int | None] = None
    #: named training schedules (see ``TorchHasher``); a method with a schedule has "paper" and "quick"
    presets: ClassVar[dict[str, dict]] = {}
    #: a method without a schedule declares that it fits in seconds at the scale of the benchmarks
    fast: ClassVar[bool] = False
    #: the conformance suite trains the default (paper) preset on its fc7-like check set; a method
    #: whose paper schedule takes more than a few minutes there even on 1,000 items (a fixed,
    #: large number of steps) sets False, and that check is then left out
    paper_preset_affordable: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            from hashbench.registry import register_method

            check_choice(cls.input_kind, INPUT_KINDS, "input_kind")
            register_method(cls)

    def __init__(self, n_bits: int = 32, *, seed: int = 0, device: str = "cpu"):
        self.n_bits = n_bits
        self.seed = seed
        self.device = device

    # --- public API ------------------------------------------------------------------------------
    def fit(self, train, y=None, *, callback=None) -> Hasher:
        """Learn from ``train`` (a Split, or a plain (n, d) feature matrix); return self.

        ``callback(epoch, hasher)``, if given, is called after each training epoch of iterative
        methods (epochs counted from 1), so a runner can record MAP along training.
        ``y`` is ignored; it exists for scikit-learn pipelines.
        """
        split = as_split(train, "train")
        check_positive_int(self.n_bits, "n_bits")
        self._check_inputs(split, fitting=True)
        if len(split) < 2:
            raise InvalidInputError(f"{type(self).__name__} needs at least 2 training rows, got {len(split)}")
        if self._reads() == "features" or split.features is not None:
            self.n_features_in_ = split.features.shape[1] if split.features is not None else None
        if self.uses_aux:
            self.n_aux_in_ = split.aux.shape[1]
        self._fit(split, None if callback is None else self._fitted_callback(callback))
        self.is_fitted_ = True
        return self

    def _fitted_callback(self, callback):
        """``callback`` called with this model marked fitted, so it can encode mid-training."""

        def on_epoch(epoch: int, hasher) -> None:
            self.is_fitted_ = True
            callback(epoch, hasher)

        return on_epoch

    def encode(self, split) -> BinaryCodes:
        """Binary codes of every item of ``split`` (a Split or a plain feature matrix).

        Deterministic for a fitted hasher: the same item always gets the same code.
        """
        if not getattr(self, "is_fitted_", False):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet; call fit(train) before encode")
        split = as_split(split, "encode input")
        self._check_inputs(split, fitting=False)
        codes = BinaryCodes.from_real(self._encode(split))
        if codes.n_bits != self.n_bits:
            raise RuntimeError(f"{type(self).__name__} produced {codes.n_bits} bits instead of {self.n_bits}")
        return codes

    def fit_encode(self, train) -> BinaryCodes:
        return self.fit(train).encode(train)

    def transform(self, X) -> np.ndarray:
        """scikit-learn transformer interface: codes as a (n, n_bits) int8 array of -1/+1."""
        return self.encode(X).to_signs()

    def fit_transform(self, X, y=None) -> np.ndarray:
        return self.fit(X).transform(X)

    @property
    def method_name(self) -> str:
        """The registered ``name``, or the class name of a subclass that is not registered."""
        return getattr(self, "name", type(self).__name__)

    # --- hooks for subclasses --------------------------------------------------------------------
    def _fit(self, train: Split, callback) -> None:
        raise NotImplementedError

    def _encode(self, split: Split):
        raise NotImplementedError

    def _reads(self) -> str:
        """What this instance learns from: ``input_kind``, unless a setting changes it (an image
        method run on precomputed features with a frozen backbone reads "features")."""
        return self.input_kind

    def _rng(self) -> np.random.Generator:
        """A fresh generator from ``seed``: every random choice in fit derives from it."""
        return np.random.default_rng(self.seed)

    # --- checks ----------------------------------------------------------------------------------
    def _check_inputs(self, split: Split, *, fitting: bool) -> None:
        cls = type(self).__name__
        if self._reads() == "features" and split.features is None:
            raise InvalidInputError(f"{cls} learns from features, but the {split.name} split has none")
        if self._reads() == "images" and split.images is None:
            raise InvalidInputError(
                f"{cls} fine-tunes a CNN on images, but the {split.name} split has none; use "
                "frozen_backbone=True (a head on the precomputed features) or a dataset with images"
            )
        if self.uses_aux and split.aux is None:
            raise InvalidInputError(f"{cls} needs auxiliary semantics (aux), but the {split.name} split has none")
        if split.features is not None and self.max_bits_per_feature is not None:
            limit = self.max_bits_per_feature * split.features.shape[1]
            if self.n_bits > limit:
                raise InvalidInputError(
                    f"{cls} supports at most {limit} bits for {split.features.shape[1]}-d features, "
                    f"got n_bits={self.n_bits}"
                )
        if fitting:
            return
        expected = getattr(self, "n_features_in_", None)
        if expected is not None and split.features is not None and split.features.shape[1] != expected:
            raise InvalidInputError(
                f"{cls} was fitted on {expected}-d features, but the {split.name} split has "
                f"{split.features.shape[1]}-d features"
            )
        expected_aux = getattr(self, "n_aux_in_", None)
        if expected_aux is not None and split.aux.shape[1] != expected_aux:
            raise InvalidInputError(
                f"{cls} was fitted on {expected_aux}-d aux semantics, but the {split.name} split has "
                f"{split.aux.shape[1]}-d aux"
            )


def as_split(data, name: str) -> Split:
    """A Split as it is, or a plain (n, d) feature matrix wrapped into one."""
    if isinstance(data, Split):
        return data
    return Split(features=np.asarray(data), name=name)
