"""The CNNs behind the embedded "mosaic" datasets: stand-ins for ImageNet-pretrained VGG16.

Two networks, named by the features they give (the mosaic builder's ``features`` option):

- ``Fc7Backbone`` (``"fc7"``, the default) has VGG16's shape at the scale of a 56x56 mosaic: a conv
  trunk of three blocks (3x3 convolution with 32, 64 and 64 channels, 2x2 max-pooling, ReLU) down
  to 7x7x64, flattened, then fc6 and fc7 (1,024 units each, each followed by a ReLU and dropout
  0.5), then the class head. The features are fc7 after its ReLU, as VGG16 fc7 in the paper. Like
  VGG's, they are sparse (about half of them are zero) and depend on where an object is: the fully
  connected layers see every position of the image separately.
- ``PooledBackbone`` (``"pooled"``) is fully convolutional: 3x3 convolutions with stride 2 (32, 64,
  128 channels), a 1x1 convolution to 256, each with a ReLU, then global average pooling. Its 256
  features are the average over the whole mosaic, dominated by a component every mosaic shares.

``forward`` maps float images in [0, 1], shape (k, 1, 56, 56), to the features (the pixel
normalisation is inside); ``classify`` adds the linear class head, used in training and as the
object detector that produces the mosaics' auxiliary labels. Dropout is active in train mode only,
so in eval mode ``forward`` gives exactly the stored features. ``train_backbone`` trains either
with Adam on cross-entropy, batches of 128, at the network's learning rate (1e-3 for fc7; 4e-3
for pooled, as in earlier versions).

Image-mode methods (DeepBit, SSDH, SADH) put their code layer on the features (fc7 for
``Fc7Backbone``, where the papers replace VGG16's fc8) and may fine-tune it:
``split.images.backbone()`` returns a new instance holding the weights stored with the dataset, in
eval mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from hashbench.errors import InvalidInputError

N_CLASSES = 10
# Pixels are normalised as (p - PIXEL_OFFSET) / PIXEL_DIVISOR: about Fashion-MNIST's mean and standard
# deviation (0.286 and 0.353 of 255), as integers so that the exact forward pass can use them.
PIXEL_OFFSET = 73
PIXEL_DIVISOR = 90
PIXEL_OFFSET_LIMIT = 255 - PIXEL_OFFSET  # the largest |pixel - offset|
PIXEL_MEAN = PIXEL_OFFSET / 255
PIXEL_STD = PIXEL_DIVISOR / 255
# The thread count changes the order of floating-point sums in training, so builds fix it; two
# threads keep the default-size build short on small machines.
BUILD_THREADS = 2


def _normalised(images: torch.Tensor) -> torch.Tensor:
    # Inputs and convolution weights in channels_last let oneDNN run the convolutions 2-4 times
    # faster on CPU; the values are the same.
    return ((images - PIXEL_MEAN) / PIXEL_STD).contiguous(memory_format=torch.channels_last)


class _MosaicCNN(nn.Module):
    """What both backbones share: a name, the Adam learning rate that trains them, the class head."""

    kind: ClassVar[str]
    learning_rate: ClassVar[float]
    head: nn.Linear

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits (k, n_classes)."""
        return self.head(self(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Features (k, d) of float images in [0, 1], shape (k, 1, 56, 56)."""
        return self.forward_top(self.forward_trunk(images))

    def forward_trunk(self, images: torch.Tensor) -> torch.Tensor:
        """The layers before any dropout: the same in training and eval mode, so a fixed backbone's
        trunk outputs can be computed once and reused."""
        return self.trunk(_normalised(images))

    def forward_top(self, trunk_outputs: torch.Tensor) -> torch.Tensor:
        """The rest of ``forward`` (none for a network without dropout)."""
        return trunk_outputs

    def trunk_parameters(self):
        return self.trunk.parameters()


class Fc7Backbone(_MosaicCNN):
    """Conv trunk (3 x [3x3 conv, 2x2 max-pool, ReLU]) -> flatten -> fc6 -> fc7 (ReLU, dropout each) -> head."""

    kind = "fc7"
    learning_rate = 1e-3

    def __init__(
        self,
        n_classes: int = N_CLASSES,
        channels: tuple[int, ...] = (32, 64, 64),
        width: int = 1024,
        input_size: int = 56,
    ):
        super().__init__()
        layers, previous = [], 1
        for count in channels:
            # Pooling before the ReLU gives the same values as VGG's ReLU-then-pool (the ReLU is
            # monotone) with the ReLU applied to a quarter of them.
            layers += [nn.Conv2d(previous, count, 3, padding=1), nn.MaxPool2d(2), nn.ReLU()]
            previous = count
        side = input_size // 2 ** len(channels)
        self.trunk = nn.Sequential(*layers, nn.Flatten())
        self.fc = nn.Sequential(
            nn.Linear(previous * side * side, width),
            nn.ReLU(),
            nn.Dropout(0.5),  # fc6
            nn.Linear(width, width),
            nn.ReLU(),
            nn.Dropout(0.5),  # fc7
        )
        self.head = nn.Linear(width, n_classes)
        self.to(memory_format=torch.channels_last)

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> Fc7Backbone:
        convs = sorted(
            (k for k in state if k.startswith("trunk.") and k.endswith(".weight")), key=lambda k: int(k.split(".")[1])
        )
        channels = tuple(state[k].shape[0] for k in convs)
        side = math.isqrt(state["fc.0.weight"].shape[1] // channels[-1])
        return cls(state["head.weight"].shape[0], channels, state["fc.0.weight"].shape[0], side * 2 ** len(channels))

    def forward_top(self, trunk_outputs: torch.Tensor) -> torch.Tensor:
        """fc6 and fc7, with their dropout in training mode."""
        return self.fc(trunk_outputs)


class PooledBackbone(_MosaicCNN):
    """3x3 convs with stride 2 (32, 64, 128 channels), a 1x1 conv to 256, global average pooling; ReLUs."""

    kind = "pooled"
    learning_rate = 4e-3

    def __init__(self, n_classes: int = N_CLASSES, feature_dim: int = 256):
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Conv2d(1, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, 128, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(128, feature_dim, 1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(feature_dim, n_classes)
        self.to(memory_format=torch.channels_last)

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> PooledBackbone:
        return cls(*state["head.weight"].shape)


BACKBONES = {cls.kind: cls for cls in (Fc7Backbone, PooledBackbone)}


def backbone_class(state: dict[str, torch.Tensor]) -> type[_MosaicCNN]:
    """The network a state dict belongs to: only ``Fc7Backbone`` has fully connected ``fc.*`` layers."""
    return Fc7Backbone if any(k.startswith("fc.") for k in state) else PooledBackbone


def state_to_arrays(module: nn.Module) -> dict[str, np.ndarray]:
    """The module's weights as numpy arrays (keys prefixed ``backbone.``) for storing in an .npz."""
    return {f"backbone.{k}": v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def arrays_to_state(arrays) -> dict[str, torch.Tensor]:
    """Inverse of :func:`state_to_arrays`, from any mapping holding those keys."""
    prefix = "backbone."
    return {k[len(prefix) :]: torch.from_numpy(np.asarray(arrays[k])) for k in arrays if k.startswith(prefix)}


class BackboneFactory:
    """A picklable callable returning a fresh backbone with fixed weights, in eval mode."""

    def __init__(self, state: dict[str, torch.Tensor]):
        self.state = state

    def __call__(self) -> _MosaicCNN:
        module = backbone_class(self.state).from_state(self.state)
        module.load_state_dict(self.state)
        return module.eval()


def train_backbone(
    kind: str,
    labels: np.ndarray,
    render: Callable[[np.ndarray], np.ndarray],
    *,
    epochs: int,
    seed: int,
    batch_size: int = 128,
) -> _MosaicCNN:
    """Train a new ``kind`` backbone to classify ``len(labels)`` training images; deterministic in ``seed``.

    ``render(indices)`` returns the uint8 images (k, 1, H, W) of those training items for one
    mini-batch, so each epoch may show an item differently (another position, mirrored). Adam at
    the network's ``learning_rate``, cross-entropy, batches drawn in a seeded random order. Call
    it under :func:`deterministic_torch` for bit-identical weights across runs.
    """
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # parameter initialisation and dropout draw from the global generator
    model = BACKBONES[kind]()
    optimizer = torch.optim.Adam(model.parameters(), lr=model.learning_rate)
    y = torch.from_numpy(labels.astype(np.int64))
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(y), generator=generator).split(batch_size):
            images = torch.from_numpy(render(batch.numpy())).float() / 255
            loss = nn.functional.cross_entropy(model.classify(images), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


# --- the exact forward pass -----------------------------------------------------------------------
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


def pack_state(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The quantised weights as int8 integers and int8 row exponents, the rest as float32: the
    shipped file's form, a quarter of the float32 size; :func:`unpack_state` inverts it exactly."""
    arrays = {}
    for key, value in quantise_weights(state).items():
        if key.endswith(".weight"):
            exponents = weight_exponents(value)
            view = (-1, *[1] * (value.dim() - 1))
            arrays[f"int8:{key}"] = (value.double() / torch.exp2(exponents).view(view)).round().to(torch.int8).numpy()
            arrays[f"exponent:{key}"] = exponents.to(torch.int8).numpy()
        else:
            arrays[f"float:{key}"] = value.float().numpy()
    return arrays


def unpack_state(arrays) -> dict[str, torch.Tensor]:
    """The float32 state of :func:`pack_state`'s arrays (any mapping holding them)."""
    state = {}
    for name in arrays:
        kind, _, key = name.partition(":")
        if kind == "int8":
            integers = torch.from_numpy(np.asarray(arrays[name])).double()
            exponents = torch.from_numpy(np.asarray(arrays[f"exponent:{key}"])).double()
            state[key] = (integers * torch.exp2(exponents).view(-1, *[1] * (integers.dim() - 1))).float()
        elif kind == "float":
            state[key] = torch.from_numpy(np.array(arrays[name]))
    return state


def apply_in_batches(function, n: int, load, batch_size: int = 128) -> np.ndarray:
    """``function`` (uint8 images -> tensor) over ``n`` images, ``load(slice)`` giving one batch (k, 1, H, W).

    Only one batch at a time is converted, so large splits never exist as float pixels.
    """
    outputs = [function(load(slice(start, start + batch_size))).numpy() for start in range(0, n, batch_size)]
    return np.concatenate(outputs).astype(np.float32, copy=False)


class deterministic_torch:
    """Context manager: ``BUILD_THREADS`` CPU threads and deterministic algorithms, so the same seed gives the same bits."""

    def __enter__(self):
        self._threads = torch.get_num_threads()
        self._deterministic = torch.are_deterministic_algorithms_enabled()
        torch.set_num_threads(BUILD_THREADS)
        torch.use_deterministic_algorithms(True)
        return self

    def __exit__(self, *exc):
        torch.set_num_threads(self._threads)
        torch.use_deterministic_algorithms(self._deterministic)
        return False
