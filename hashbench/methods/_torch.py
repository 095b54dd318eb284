"""The training loop every torch method shares: settings, seeding, device, epochs of mini-batches,
NaN detection, progress, loss history and the runner's epoch callback.

:class:`TorchHasher` owns ``fit``. In order it

1. resolves the settings (``settings_``, every hyper-parameter's value in force): a
   hyper-parameter left None takes the value of the named preset (``presets[preset]``,
   ``preset="paper"`` by default and ``"quick"`` for short runs), one given explicitly wins;
   then they are validated;
2. seeds torch (layer initialisation draws from its global generator) and makes ``generator_``,
   from which every later random choice (data order, priors, noise) is drawn;
3. calls ``_build(train)``: the method creates its networks (listed in ``networks_``, on
   ``device_``) and prepares the training data it needs (the split itself is ``_train`` while
   fitting);
4. calls ``_updates()``: the optimisers, each with the objective it minimises (one Adam over all
   parameters at ``lr`` minimising the sum of the loss terms, unless the method says otherwise);
5. runs ``_n_epochs()`` epochs with a progress bar (tqdm; ``TQDM_DISABLE=1`` silences it). An
   epoch is ``_epoch(epoch)``: by default mini-batches of ``settings_["batch_size"]`` rows over the
   training items, each ``_batch_step(rows)``: the loss terms ``_loss_terms(rows)`` (a dict of
   named scalars), then one step of every update. A non-finite term stops training with an error
   naming the epoch and the term, before any step uses it. Methods whose schedule is not epochs
   of mini-batches (alternations, stages, a count of steps) override ``_epoch`` alone, and
   ``_steps(batches, step, epoch)`` runs the steps of any sequence of batches;
6. keeps each epoch's mean loss terms in ``history_`` and, when the runner passed a callback,
   calls ``_ready_to_encode(train)`` then ``callback(epoch, self)`` with a model that encodes.

A method therefore writes ``presets``, ``_build`` and ``_loss_terms`` (and ``_encode``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from hashbench._validation import check_choice, check_positive_int
from hashbench.errors import InvalidInputError, NotFittedError, TrainingDivergedError
from hashbench.hasher import Hasher

#: settings every method checks the same way when it has them
POSITIVE_INT_SETTINGS = ("epochs", "batch_size")
POSITIVE_FLOAT_SETTINGS = ("lr",)
#: rows per block of the float64 sums over the training items (feature statistics), so that no
#: float64 copy of all of them is made
STATISTICS_ROWS = 1024


_subnormals_flushed_in_process = False


def flush_subnormals_in_process() -> None:
    """Flush subnormal floats (below about 1e-38) to zero on the CPU for the rest of the process.

    Adam's running squared gradients of nearly inactive units sink into the subnormal range late in
    training, and arithmetic on subnormals takes a microcoded path many times slower: TBH's quick
    fit is much slower without the flush, with the same codes. The flag belongs to each thread, and
    the threads of torch's CPU pool take it from the thread that starts them, so the command line
    and each worker process call this first, before torch starts that pool. Fitting alone flushes
    only in the calling thread (``TorchHasher._fitting``)."""
    global _subnormals_flushed_in_process
    torch.set_flush_denormal(True)
    _subnormals_flushed_in_process = True


def resolve_device(device: str) -> torch.device:
    """``"auto"`` picks CUDA when torch sees it; asking for CUDA without one is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise InvalidInputError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(f"device={device!r} was asked for, but torch sees no CUDA device")
    return resolved


def check_finite_losses(terms: dict[str, float], epoch: int, method: str) -> None:
    for term, value in terms.items():
        if not np.isfinite(value):
            raise TrainingDivergedError(
                f"{method}: loss term {term!r} became {value} at epoch {epoch}; training stopped "
                "(try a smaller learning rate or check the input features)"
            )


def check_finite_terms(terms: dict[str, torch.Tensor], epoch: int, method: str) -> None:
    """Per-step form of :func:`check_finite_losses` on loss tensors (one device sync when all are finite)."""
    if not torch.isfinite(torch.stack([value.detach() for value in terms.values()])).all():
        check_finite_losses({key: float(value.detach()) for key, value in terms.items()}, epoch, method)


def check_positive_number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not value > 0:
        raise InvalidInputError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Update:
    """One step of ``optimiser`` per mini-batch on ``objective(loss_terms)``."""

    optimiser: torch.optim.Optimizer
    objective: Callable[[dict[str, torch.Tensor]], torch.Tensor]

    def step(self, terms: dict[str, torch.Tensor]) -> None:
        optimiser_step(self.optimiser, self.objective(terms))


class TorchHasher(Hasher):
    """Base class of the torch methods (see the module docstring)."""

    #: preset name -> {hyper-parameter: value}; every preset names the same hyper-parameters,
    #: each of which is an ``__init__`` argument whose default is None
    presets: ClassVar[dict[str, dict]] = {}

    # --- the loop --------------------------------------------------------------------------------
    def _fit(self, train, callback) -> None:
        self.settings_ = self._resolve_settings(train)
        self.device_ = resolve_device(self.device)
        torch.manual_seed(self.seed)
        self.generator_ = torch.Generator().manual_seed(self.seed)
        self.history_ = []
        with self._fitting(train):
            self._build(train)
            self.updates_ = self._updates()
            for epoch in tqdm(
                range(1, self._n_epochs() + 1), desc=self.method_name, unit="epoch", leave=False, disable=None
            ):
                self._run_epoch(epoch, callback)
            self._ready_to_encode(train)

    @contextmanager
    def _fitting(self, train):
        """``_train`` (the split being fitted) and ``_train_tensors`` (what is derived from it: its
        arrays as tensors, and anything a method computes once per fit) for the hooks, for the
        duration of the block only: a fitted model keeps no training data it does not encode with.

        The calling thread flushes subnormal floats to zero meanwhile (see
        :func:`flush_subnormals_in_process`, which covers torch's other CPU threads too); afterwards
        the flag is as the process had it."""
        self._train, self._train_tensors = train, {}
        torch.set_flush_denormal(True)
        try:
            yield
        finally:
            torch.set_flush_denormal(_subnormals_flushed_in_process)
            del self._train, self._train_tensors

    def _run_epoch(self, epoch: int, callback) -> None:
        for module in self.networks_.values():
            module.train()
        terms = {key: float(value) for key, value in self._epoch(epoch).items()}
        check_finite_losses(terms, epoch, self.method_name)
        self.history_.append({"epoch": epoch, **terms})
        if callback is not None:
            self._ready_to_encode(self._train)
            callback(epoch, self)

    def _resolve_settings(self, train) -> dict:
        """Every hyper-parameter's value in force: the preset's values for those left None, the
        given value otherwise; validated. Methods with more to check extend this (super first)."""
        settings = self.get_params(deep=False)
        if self.presets:
            chosen = self.presets[check_choice(self.preset, self.presets, "preset")]
            settings.update({key: value for key, value in chosen.items() if settings[key] is None})
        for key in POSITIVE_INT_SETTINGS:
            if key in settings:
                check_positive_int(settings[key], key)
        for key in POSITIVE_FLOAT_SETTINGS:
            if key in settings:
                check_positive_number(settings[key], key)
        return settings

    def _n_epochs(self) -> int:
        return self.settings_["epochs"]

    def _epoch(self, epoch: int) -> dict[str, torch.Tensor]:
        return self._batch_epoch(len(self._train), self.settings_["batch_size"], epoch)

    def _batch_epoch(self, n: int, batch_size: int, epoch: int) -> dict[str, torch.Tensor]:
        """``_batch_step`` over shuffled mini-batches of ``range(n)``; the mean of each term."""
        return self._steps(minibatches(n, batch_size, self.generator_), epoch)

    def _steps(self, batches: Iterable[torch.Tensor], epoch: int) -> dict[str, torch.Tensor]:
        """``_batch_step`` for each batch of row indices; the mean of each term."""
        sums, n_batches = {}, 0
        for rows in batches:
            for key, value in self._batch_step(rows, epoch).items():
                sums[key] = sums.get(key, 0.0) + value.detach()
            n_batches += 1
        return {key: value / n_batches for key, value in sums.items()}

    def _batch_step(self, rows: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
        terms = self._loss_terms(rows)
        check_finite_terms(terms, epoch, self.method_name)
        for update in self.updates_:
            update.step(terms)
        return terms

    # --- hooks -----------------------------------------------------------------------------------
    def _build(self, train) -> None:
        """Create the networks (``networks_``, on ``device_``) and keep what ``_loss_terms`` reads."""
        raise NotImplementedError

    def _loss_terms(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named loss terms of the training items ``rows`` (a tensor of indices)."""
        raise NotImplementedError

    def _updates(self) -> list[Update]:
        parameters = [p for module in self.networks_.values() for p in module.parameters()]
        return [Update(adam(parameters, lr=self.settings_["lr"]), self._objective)]

    def _objective(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """The loss minimised: the sum of the terms (methods weigh them in ``_loss_terms`` or here)."""
        return sum(terms.values())

    def _ready_to_encode(self, train) -> None:
        """Anything encode needs after an epoch (e.g. a threshold fitted on the training items)."""
        for module in self.networks_.values():
            module.eval()

    # --- helpers ---------------------------------------------------------------------------------
    def n_parameters(self) -> dict[str, int]:
        """Parameter count of each network of the fitted model, by name (``networks_``)."""
        if not hasattr(self, "networks_"):
            raise NotFittedError(f"{type(self).__name__} has no networks before fit")
        return {name: sum(p.numel() for p in module.parameters()) for name, module in self.networks_.items()}

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array, dtype=np.float32), device=self.device_)

    def _train_tensor(self, *path: str) -> torch.Tensor:
        """An array of the split being fitted on ``device_`` as float32, converted once per fit:
        ``_train_tensor("features")``, ``_train_tensor("web", "labels")``."""
        if path not in self._train_tensors:
            array = self._train
            for name in path:
                array = getattr(array, name)
            self._train_tensors[path] = self._tensor(array)
        return self._train_tensors[path]

    def _uniform(self, shape: tuple[int, ...]) -> torch.Tensor:
        """U(0, 1) samples drawn from ``generator_`` (on the CPU, so runs match across devices)."""
        return torch.rand(shape, generator=self.generator_).to(self.device_)


def adam(parameters, *, lr: float, **options) -> torch.optim.Adam:
    """torch's Adam in its fused form: the same update, computed in one pass over each parameter
    instead of one pass per arithmetic operation (several times faster on the CPU)."""
    return torch.optim.Adam(parameters, lr=lr, fused=True, **options)


def optimiser_step(optimiser: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """One gradient step of ``optimiser`` on ``loss`` (gradients cleared first)."""
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()


def minibatches(n: int, batch_size: int, generator: torch.Generator, *, shuffle: bool = True) -> Iterator[torch.Tensor]:
    """Index tensors covering ``range(n)`` in batches; the order is drawn from ``generator``.

    A last batch smaller than half a batch is merged into the previous one, so no step sees a
    graph of a handful of nodes (methods that build per-batch graphs depend on it).
    """
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] < batch_size // 2:
        starts.pop()
    for i, start in enumerate(starts):
        stop = starts[i + 1] if i + 1 < len(starts) else n
        yield order[start:stop]


def endless_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Batches of ``min(batch_size, n)`` indices from an endless stream of shuffled passes over
    ``range(n)``: a batch may span two passes, so every batch is full (as a repeated, shuffled
    ``tf.data`` stream batches it)."""
    size = min(batch_size, n)
    pending = torch.empty(0, dtype=torch.long)
    while True:
        while len(pending) < size:
            pending = torch.cat([pending, torch.randperm(n, generator=generator)])
        yield pending[:size]
        pending = pending[size:]


def forward_in_batches(
    forward: Callable[[np.ndarray], torch.Tensor], n: int, batch_size: int = 4096
) -> Iterator[np.ndarray]:
    """``forward(indices)`` over consecutive index batches of ``range(n)``, each as a float32 numpy
    array, without gradients; for n == 0, one empty batch (which gives the outputs' shape)."""
    for start in range(0, max(n, 1), batch_size):
        with torch.no_grad():  # left before the yield, so the caller's own code keeps its grad mode
            batch = forward(np.arange(start, min(start + batch_size, n))).float().cpu().numpy()
        yield batch


def encode_in_batches(forward: Callable[[np.ndarray], torch.Tensor], n: int, batch_size: int = 4096) -> np.ndarray:
    """Concatenate :func:`forward_in_batches` as a float32 numpy array filled batch by batch (never
    a list of batches and their concatenated copy at once)."""
    outputs, start = None, 0
    for batch in forward_in_batches(forward, n, batch_size):
        if outputs is None:
            outputs = np.empty((n, *batch.shape[1:]), dtype=np.float32)
        outputs[start : start + len(batch)] = batch
        start += len(batch)
    return outputs
