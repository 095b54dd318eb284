"""Training machinery shared by every torch method: device, seeding, the epoch loop (with the
runner's epoch callback, loss history and NaN detection), mini-batches and batched encoding.

A torch method subclasses :class:`TorchHasher`, builds its networks in ``_fit`` after calling
``self._start_training()``, and runs ``self._train_epochs(n_epochs, run_epoch, modules, callback)``
where ``run_epoch(epoch)`` trains one epoch and returns the mean of each loss term as tensors or
floats. Subclasses keep their networks in a ``networks_`` dict (for ``n_parameters``) and may
resolve named presets of epochs and batch sizes with ``_preset_values``. Epoch progress bars
honour tqdm's ``TQDM_DISABLE`` environment variable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from hashbench._validation import check_choice
from hashbench.errors import InvalidInputError, NotFittedError, TrainingDivergedError
from hashbench.hasher import Hasher


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


class TorchHasher(Hasher):
    """Base class of the torch methods (see the module docstring)."""

    def _start_training(self) -> torch.Generator:
        """Seed torch's global RNG (layer initialisation draws from it) and return a generator
        for data order, dropout-free sampling and priors; everything random flows from ``seed``."""
        self.device_ = resolve_device(self.device)
        torch.manual_seed(self.seed)
        self.history_ = []
        return torch.Generator().manual_seed(self.seed)

    def _preset_values(self, presets: dict[str, dict]) -> dict:
        """Settings of the preset named by ``self.preset``; a hyper-parameter given explicitly
        (not None) overrides the preset's value for it. Every key must be a hyper-parameter."""
        chosen = presets[check_choice(self.preset, presets, "preset")]
        return {key: value if getattr(self, key) is None else getattr(self, key) for key, value in chosen.items()}

    def n_parameters(self) -> dict[str, int]:
        """Parameter count of each network of the fitted model, by name (``networks_``)."""
        if not hasattr(self, "networks_"):
            raise NotFittedError(f"{type(self).__name__} has no networks before fit")
        return {name: sum(p.numel() for p in module.parameters()) for name, module in self.networks_.items()}

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array, dtype=np.float32), device=self.device_)

    def _train_epochs(
        self,
        n_epochs: int,
        run_epoch: Callable[[int], dict],
        modules: list[torch.nn.Module],
        callback=None,
    ) -> None:
        """Run ``n_epochs`` epochs; record mean losses in ``history_``; stop on NaN/inf losses;
        call ``callback(epoch, self)`` after each epoch with the model usable by ``encode``."""
        for epoch in tqdm(range(1, n_epochs + 1), desc=self.name, unit="epoch", leave=False, disable=None):
            for module in modules:
                module.train()
            terms = {k: float(v) for k, v in run_epoch(epoch).items()}
            check_finite_losses(terms, epoch, self.name)
            self.history_.append({"epoch": epoch, **terms})
            if callback is not None:
                self.is_fitted_ = True
                callback(epoch, self)


def optimiser_step(optimiser: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    """One gradient step of ``optimiser`` on ``loss`` (gradients cleared first)."""
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()


def run_batches(
    batches: Iterable[torch.Tensor],
    loss_terms: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    steps: list[tuple[torch.optim.Optimizer, Callable[[dict], torch.Tensor]]],
    *,
    epoch: int,
    method: str,
) -> dict[str, torch.Tensor]:
    """One training epoch over ``batches``; the mean of each loss term.

    For each batch of row indices, ``terms = loss_terms(rows)``; a non-finite term stops training
    before any step uses it, so the error names the term that diverged first (later terms would
    all be NaN). Then, for each ``(optimiser, total)`` in ``steps``, one step on ``total(terms)``.
    """
    sums, n_batches = {}, 0
    for rows in batches:
        terms = loss_terms(rows)
        check_finite_terms(terms, epoch, method)
        for optimiser, total in steps:
            optimiser_step(optimiser, total(terms))
        for key, value in terms.items():
            sums[key] = sums.get(key, 0.0) + value.detach()
        n_batches += 1
    return {key: value / n_batches for key, value in sums.items()}


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


@torch.no_grad()
def encode_in_batches(forward: Callable[[np.ndarray], torch.Tensor], n: int, batch_size: int = 4096) -> np.ndarray:
    """Concatenate ``forward(indices)`` over consecutive index batches, as a float32 numpy array."""
    outputs = [forward(np.arange(start, min(start + batch_size, n))).float().cpu() for start in range(0, n, batch_size)]
    return torch.cat(outputs).numpy()
