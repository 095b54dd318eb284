"""The mosaic backbones' exact forward pass: weights quantised to 8-bit integers times a power of
two, evaluated in integer sums that float32 holds exactly, so features are the same on every CPU."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from hashbench.datasets.backbone import PIXEL_DIVISOR, PIXEL_OFFSET, backbone_class
from hashbench.errors import InvalidInputError

PIXEL_OFFSET_LIMIT = 255 - PIXEL_OFFSET  # the largest |pixel - offset|
#: Weights are signed integers of this many bits times a power of two per output unit (row).
WEIGHT_BITS = 8
#: Each layer's input is rounded to unsigned integers of this many bits times a power-of-two step.
ACTIVATION_BITS = 8
_WEIGHT_LIMIT = 2 ** (WEIGHT_BITS - 1) - 1
_ACTIVATION_LIMIT = 2**ACTIVATION_BITS - 1
_FLOAT32_EXACT = 2**24  # integers up to it are exact in float32
#: Exponents of the weight rows are clamped here: a row of weights under 127 * 2**-30 is negligible.
_MIN_WEIGHT_EXPONENT = -30


def weight_exponents(weight: torch.Tensor) -> torch.Tensor:
    """Per output unit, the smallest power-of-two exponent e with max |w| <= 127 * 2**e."""
    largest = weight.detach().abs().reshape(len(weight), -1).amax(dim=1).to(torch.float64)
    exponents = torch.ceil(torch.log2(largest.clamp_min(1e-300) / _WEIGHT_LIMIT))
    exponents += (largest / torch.exp2(exponents) > _WEIGHT_LIMIT).to(torch.float64)  # log2 is not exact
    return exponents.clamp_(min=_MIN_WEIGHT_EXPONENT)


def quantise_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with every weight rounded to a ``WEIGHT_BITS``-bit integer times its row's power of
    two (float32, exactly representable); idempotent. Biases and other entries are kept."""
    quantised = {}
    for key, value in state.items():
        if key.endswith(".weight"):
            value = value.detach().cpu().to(torch.float64)
            scale = torch.exp2(weight_exponents(value)).view(-1, *[1] * (value.dim() - 1))
            value = (torch.round(value / scale).clamp_(-_WEIGHT_LIMIT, _WEIGHT_LIMIT) * scale).float()
        quantised[key] = value
    return quantised


def _power_of_two_step(largest: float) -> float:
    """The smallest power-of-two step that maps ``largest`` into the activation integers."""
    return 2.0 ** math.ceil(math.log2(max(largest, 1e-30) / _ACTIVATION_LIMIT))


class ExactBackbone:
    """A backbone evaluated in integer arithmetic: the same bits on every CPU, whatever its instruction set.

    The weights are :func:`quantise_weights`'s: integers ``W`` (``|W| <= 127``) times ``2**e`` per
    output unit. The input of every convolution and linear layer is rounded to integers ``A`` in
    0..255 times a power-of-two ``step`` per layer (the first layer reads the pixel minus
    ``PIXEL_OFFSET``, one unit being ``1 / PIXEL_DIVISOR``); ``steps`` (one per layer after the
    first) are calibrated once on training images (:meth:`calibrate`) so that the largest input
    seen maps to 255, larger inputs saturating. A layer sums integer products ``W A`` and the bias
    rounded to the same integer grid. Its input channels are split into chunks small enough that
    every partial sum stays below 2**24, so the ordinary float32 kernels compute each chunk exactly,
    whatever order they add in; several chunks are added in float64, exactly. The real output is
    that integer times ``2**e * step``. Pooling, ReLU and flattening act on these values; global
    average pooling divides an exact sum once. Every other operation is a single IEEE operation
    on identical numbers (rounding half to even), so the result is identical on every machine.

    ``features(images)`` (uint8, (k, 1, H, W)) gives float32 features; ``probabilities`` the
    class head's softmax (float64), whose ``exp`` may differ in the last bit between CPUs: that
    matters only within ~1e-15 of a threshold, which the mosaic build measures.
    """

    def __init__(self, state: dict[str, torch.Tensor], steps: np.ndarray):
        network = backbone_class(state).from_state(state)
        network.load_state_dict(quantise_weights(state))
        network.eval()
        layers = [m for m in _sequence(network) if not isinstance(m, nn.Dropout)]
        n_linear = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in layers)
        if len(steps) != n_linear:
            raise InvalidInputError(f"{len(steps)} activation steps do not fit a backbone of {n_linear + 1} layers")
        input_steps = iter([None, *(float(v) for v in steps)])
        self.layers = [
            _IntegerLayer(m, next(input_steps)) if isinstance(m, (nn.Conv2d, nn.Linear)) else m for m in layers
        ]
        self.head = _IntegerLayer(network.head, float(steps[-1]))
        self.steps = np.asarray(steps, dtype=np.float64)

    @staticmethod
    def calibrate(state: dict[str, torch.Tensor], images: np.ndarray) -> np.ndarray:
        """The activation steps: the largest input of each layer after the first on ``images``
        (uint8), in the float network with quantised weights, mapped to 255."""
        network = backbone_class(state).from_state(state)
        network.load_state_dict(quantise_weights(state))
        network.eval()
        largest = {}

        def record(module, inputs):
            largest[module] = max(largest.get(module, 0.0), float(inputs[0].max()))

        layers = [m for m in [*_sequence(network), network.head] if isinstance(m, (nn.Conv2d, nn.Linear))]
        hooks = [m.register_forward_pre_hook(record) for m in layers]
        with torch.no_grad():
            for start in range(0, len(images), 256):
                network.classify(torch.from_numpy(images[start : start + 256]).float() / 255)
        for hook in hooks:
            hook.remove()
        return np.array([_power_of_two_step(largest[m]) for m in layers[1:]])

    @torch.no_grad()
    def features(self, images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(images)).float() - PIXEL_OFFSET
        scale = None  # a layer's positive per-channel scale, applied after its max-pooling and ReLU
        for layer in self.layers:
            if isinstance(layer, (nn.MaxPool2d, nn.ReLU)):
                x = layer(x)
                continue
            if scale is not None:
                x, scale = x * scale.view(-1, *[1] * (x.dim() - 2)), None
            if isinstance(layer, _IntegerLayer):
                x, scale = layer(x)
            elif isinstance(layer, nn.AdaptiveAvgPool2d):
                x = (x.double().sum(dim=(2, 3), keepdim=True) / (x.shape[2] * x.shape[3])).float()
            elif isinstance(layer, nn.Flatten):
                x = layer(x)
            else:
                raise TypeError(f"ExactBackbone does not know {type(layer).__name__}")
        return x if scale is None else x * scale

    @torch.no_grad()
    def probabilities(self, images: np.ndarray) -> torch.Tensor:
        sums, scale = self.head(self.features(images))
        return torch.softmax(sums.double() * scale.double(), dim=1)


class _IntegerLayer:
    """One convolution or linear layer of :class:`ExactBackbone`, on float32 inputs; ``step`` is the
    unit of its input integers (None for the first layer, which reads pixel - offset)."""

    def __init__(self, layer: nn.Module, step: float | None):
        self.layer = layer
        weight = layer.weight.detach().to(torch.float64)
        exponents = weight_exponents(weight)
        view = (-1, *[1] * (weight.dim() - 1))
        self.weight = (weight / torch.exp2(exponents).view(view)).float()  # exact integers
        unit = 1 / PIXEL_DIVISOR if step is None else step
        self.step = step
        largest_input = PIXEL_OFFSET_LIMIT if step is None else _ACTIVATION_LIMIT
        # the bias on the grid of the sums: one IEEE division and a rounding, the same everywhere
        self.bias = torch.round(layer.bias.detach().to(torch.float64) / unit / torch.exp2(exponents))
        # the real value of one unit of the sums, per output unit
        self.scale = torch.exp2(exponents) * unit
        per_channel = self.weight[0, 0].numel()
        self.chunk = max(1, (_FLOAT32_EXACT - 1) // (largest_input * _WEIGHT_LIMIT * per_channel))
        bound = largest_input * _WEIGHT_LIMIT * self.weight[0].numel() + float(self.bias.abs().max())
        self.single_pass = bound < _FLOAT32_EXACT
        if isinstance(layer, nn.Conv2d):
            self.weight = self.weight.contiguous(memory_format=torch.channels_last)

    def _product(self, integers: torch.Tensor, part: slice, bias: torch.Tensor | None) -> torch.Tensor:
        if isinstance(self.layer, nn.Conv2d):
            return nn.functional.conv2d(
                integers[:, part], self.weight[:, part], bias, self.layer.stride, self.layer.padding
            )
        return nn.functional.linear(integers[:, part], self.weight[:, part], bias)

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The exact integer sums (float32; exact below 2**24, else rounded once from float64) and
        the real value of one unit of them per output unit."""
        integers = x if self.step is None else torch.round(x / self.step).clamp_(0, _ACTIVATION_LIMIT)
        if isinstance(self.layer, nn.Conv2d):
            integers = integers.contiguous(memory_format=torch.channels_last)
        if self.single_pass:  # every partial sum, bias included, is an exact float32 integer
            return self._product(integers, slice(None), self.bias.float()), self.scale.float()
        sums = sum(
            self._product(integers, slice(first, first + self.chunk), None).double()
            for first in range(0, self.weight.shape[1], self.chunk)
        )
        view = (-1, *[1] * (sums.dim() - 2))
        return ((sums + self.bias.view(view)) * self.scale.view(view)).float(), torch.ones(len(self.bias))


def _sequence(network: nn.Module) -> list[nn.Module]:
    """The layers of a backbone's ``forward`` in order: its trunk, then its fully connected part."""
    return [*network.trunk.children(), *(network.fc.children() if hasattr(network, "fc") else [])]
