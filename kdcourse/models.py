"""Teacher and student networks sized for a laptop CPU.

Every model follows one naming scheme so that any teacher can be paired with any student:

- ``head`` is the final linear layer; its output is the logits;
- ``embedding`` is the penultimate, pooled feature vector (used by relation methods: RKD, SP);
- convolutional models also have ``stem``, ``layer1``, ``layer2``, ``layer3`` (spatial
  feature maps, used by hint / attention-transfer methods).

Intermediate features are read with torchvision's ``create_feature_extractor`` (see
:func:`feature_extractor`) rather than with hand-made forward hooks.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

__all__ = [
    "MLP",
    "DigitsCNN",
    "CifarCNN",
    "CifarResNet",
    "CifarSpeedNet",
    "whiten_stem_",
    "CharTransformer",
    "feature_extractor",
    "feature_names",
    "count_parameters",
    "measure_latency",
]


class MLP(nn.Module):
    """A fully connected classifier: ``in_features -> hidden[0] -> ... -> num_classes``.

    Inputs of any shape ``(N, ...)`` are flattened, so the 8x8 digits work as images or vectors.
    Feature names: ``embedding`` (the last hidden layer, after ReLU), ``head`` (logits).
    """

    def __init__(
        self,
        in_features: int = 64,
        hidden: int | Sequence[int] = (64,),
        num_classes: int = 10,
        dropout: float = 0.0,
    ):
        super().__init__()
        hidden = (hidden,) if isinstance(hidden, int) else tuple(hidden)
        if not hidden or any(h < 1 for h in hidden):
            raise ValueError(f"hidden must be one or more positive layer sizes, got {hidden}")
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        self.embedding = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)
        self.hidden = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embedding(x))


def _conv_bn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    )


class _ConvNet(nn.Module):
    """Shared skeleton: stem -> layer1 -> layer2 -> layer3 -> embedding -> head."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.head(self.embedding(x))


class DigitsCNN(_ConvNet):
    """A small CNN for the 1x8x8 digits images; ``width`` sets the channel count.

    Spatial sizes: stem and layer1 8x8, layer2 4x4, layer3 2x2; ``embedding`` is the
    global-average-pooled layer3 output (``4 * width`` values).
    """

    def __init__(self, width: int = 16, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be a positive channel count, got {width}")
        self.stem = _conv_bn(in_channels, width)
        self.layer1 = _conv_bn(width, width)
        self.layer2 = _conv_bn(width, 2 * width, stride=2)
        self.layer3 = _conv_bn(2 * width, 4 * width, stride=2)
        self.embedding = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(4 * width, num_classes)
        self.width = width


class CifarCNN(_ConvNet):
    """A plain 3-stage CNN for 3x32x32 images (with the default widths, ~26k parameters).

    Spatial sizes: stem 32x32, layer1 16x16, layer2 8x8, layer3 4x4.
    """

    def __init__(self, widths: Sequence[int] = (16, 32, 64), num_classes: int = 10):
        super().__init__()
        w0, w1, w2 = widths
        self.stem = _conv_bn(3, w0)
        self.layer1 = nn.Sequential(_conv_bn(w0, w0), nn.MaxPool2d(2))
        self.layer2 = nn.Sequential(_conv_bn(w0, w1), nn.MaxPool2d(2))
        self.layer3 = nn.Sequential(_conv_bn(w1, w2), nn.MaxPool2d(2))
        self.embedding = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(w2, num_classes)
        self.widths = tuple(widths)


class _BasicBlock(nn.Module):
    """The ResNet basic block (He et al. 2016): two 3x3 convs plus a shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(_ConvNet):
    """A CIFAR-style ResNet: three stages of basic blocks at 32x32, 16x16 and 8x8.

    ``widths`` are the channels of the three stages and ``blocks`` the blocks per stage;
    ``CifarResNet((16, 32, 64), 3)`` is the classic ResNet-20.
    """

    def __init__(
        self, widths: Sequence[int] = (32, 64, 128), blocks: int = 2, num_classes: int = 10
    ):
        super().__init__()
        w0, w1, w2 = widths
        self.stem = _conv_bn(3, w0)

        def stage(c_in: int, c_out: int, stride: int) -> nn.Sequential:
            first = _BasicBlock(c_in, c_out, stride)
            rest = [_BasicBlock(c_out, c_out) for _ in range(blocks - 1)]
            return nn.Sequential(first, *rest)

        self.layer1 = stage(w0, w0, 1)
        self.layer2 = stage(w0, w1, 2)
        self.layer3 = stage(w1, w2, 2)
        self.embedding = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(w2, num_classes)
        self.widths = tuple(widths)
        self.blocks = blocks


class _Scale(nn.Module):
    """Multiplies by a fixed number (the speed net's logits: small at initialisation)."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def _speed_block(c_in: int, c_out: int) -> nn.Sequential:
    """conv 3x3 -> max-pool 2 -> BN -> GELU -> conv 3x3 -> BN -> GELU (pooling early saves compute)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.MaxPool2d(2), nn.BatchNorm2d(c_out), nn.GELU(),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.GELU(),
    )


class CifarSpeedNet(_ConvNet):
    """A CIFAR-10 network built to train fast (the ideas of Jordan 2024, "94% on CIFAR-10 in 3.29
    seconds on a single GPU", written anew for the course's naming scheme).

    ``stem``: a 2x2 convolution without padding (31x31), whose filters are set from the training
    images' patch statistics by :func:`whiten_stem_` (a whitening transform and its negative, so
    ``2 * 12`` channels) and then a GELU; three blocks (:func:`_speed_block`) that pool early:
    ``layer1`` 15x15, ``layer2`` 7x7, ``layer3`` 3x3; ``embedding``: a 3x3 max-pool, flattened;
    ``head``: a linear layer without bias, scaled by ``logit_scale``.
    """

    def __init__(self, widths: Sequence[int] = (64, 256, 256), num_classes: int = 10, logit_scale: float = 1 / 9):
        super().__init__()
        w0, w1, w2 = widths
        self.stem = nn.Sequential(nn.Conv2d(3, 24, 2, bias=True), nn.GELU())
        self.layer1 = _speed_block(24, w0)
        self.layer2 = _speed_block(w0, w1)
        self.layer3 = _speed_block(w1, w2)
        self.embedding = nn.Sequential(nn.MaxPool2d(3), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(w2, num_classes, bias=False), _Scale(logit_scale))
        self.widths = tuple(widths)
        for block in (self.layer1, self.layer2, self.layer3):
            for conv in (block[0], block[4]):  # start close to the identity on the channels they share
                n = min(conv.in_channels, conv.out_channels)
                torch.nn.init.dirac_(conv.weight.data[:n, :n])


@torch.no_grad()
def whiten_stem_(model: CifarSpeedNet, images: torch.Tensor, eps: float = 5e-4) -> CifarSpeedNet:
    """Set the stem's 2x2 filters to whiten the patches of ``images`` ``(N, 3, H, W)``.

    The 12-dimensional 2x2 patches have covariance ``C = V diag(lambda) V^T``; the filters are the
    rows of ``diag(lambda + eps)^(-1/2) V^T`` and their negatives (so the GELU keeps both signs).
    The weights are then frozen (their bias still trains). Returns ``model``.
    """
    conv = model.stem[0]
    patches = images.unfold(2, 2, 1).unfold(3, 2, 1)  # (N, 3, H-1, W-1, 2, 2)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, 12).double()
    patches = patches - patches.mean(0)
    eigenvalues, eigenvectors = torch.linalg.eigh(patches.T @ patches / len(patches))
    filters = (eigenvectors.T / (eigenvalues + eps).sqrt()[:, None]).reshape(12, 3, 2, 2)
    conv.weight.copy_(torch.cat([filters, -filters]).to(conv.weight))
    conv.weight.requires_grad_(False)
    return model


class _CausalBlock(nn.Module):
    """Pre-norm transformer block: causal self-attention, then a 4x-wide GELU MLP."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, w = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(w, dim=2)
        q, k, v = (t.reshape(b, n, self.heads, w // self.heads).transpose(1, 2) for t in (q, k, v))
        # is_causal: position i attends to positions <= i only, so it cannot read the next token
        att = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(att.transpose(1, 2).reshape(b, n, w))
        return x + self.mlp(self.norm2(x))


class CharTransformer(nn.Module):
    """A small causal (GPT-style) transformer over characters: ``(batch, length)`` token ids in,
    ``(batch, length, vocab_size)`` next-token logits out.

    Token and learned position embeddings, ``depth`` pre-norm blocks of causal self-attention and
    an MLP, a final ``LayerNorm`` and the ``head`` (a linear layer to the vocabulary). Position
    ``i`` of the output predicts token ``i + 1`` from tokens ``0..i``. Inputs longer than
    ``context`` are refused; :func:`kdcourse.lm.generate` crops its prompt to the last ``context``.
    """

    def __init__(self, vocab_size: int, context: int = 64, width: int = 96, depth: int = 3, heads: int = 4):
        super().__init__()
        if width % heads:
            raise ValueError(f"width ({width}) must be a multiple of heads ({heads})")
        if min(vocab_size, context, width, depth, heads) < 1:
            raise ValueError("vocab_size, context, width, depth and heads must all be >= 1")
        self.vocab_size, self.context, self.width, self.depth, self.heads = vocab_size, context, width, depth, heads
        self.tokens = nn.Embedding(vocab_size, width)
        self.positions = nn.Embedding(context, width)
        self.blocks = nn.Sequential(*[_CausalBlock(width, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size)

    def architecture(self) -> dict:
        """The keyword arguments that rebuild this model (what a checkpoint's sidecar records)."""
        return {"vocab_size": self.vocab_size, "context": self.context, "width": self.width,
                "depth": self.depth, "heads": self.heads}

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.dim() != 2:
            raise ValueError(f"CharTransformer expects (batch, length) token ids, got shape {tuple(ids.shape)}")
        if ids.shape[1] > self.context:
            raise ValueError(f"sequences of {ids.shape[1]} tokens exceed the context of {self.context}: "
                             "crop them to the last `context` tokens")
        x = self.tokens(ids) + self.positions(torch.arange(ids.shape[1], device=ids.device))
        return self.head(self.norm(self.blocks(x)))


def feature_names(model: nn.Module) -> list[str]:
    """The feature names a model offers (see the module docstring), in forward order."""
    order = ["stem", "layer1", "layer2", "layer3", "embedding", "head"]
    return [name for name in order if isinstance(getattr(model, name, None), nn.Module)]


def feature_extractor(model: nn.Module, names: Sequence[str] = ()) -> nn.Module:
    """Wrap ``model`` so that calling it returns ``{name: tensor}`` for ``names`` plus ``"logits"``.

    Built on :func:`torchvision.models.feature_extraction.create_feature_extractor`; the wrapper
    shares its parameters with ``model`` (training one trains the other).
    """
    available = feature_names(model)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(
            f"{type(model).__name__} has no feature(s) {unknown}; choose among {available}"
        )
    return_nodes = {name: name for name in names if name != "head"}
    return_nodes["head"] = "logits"
    return create_feature_extractor(model, return_nodes=return_nodes)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """The number of parameters (scalars) in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def measure_latency(
    model: nn.Module,
    input_shape: Sequence[int],
    batch_size: int = 1,
    repeats: int = 30,
    warmup: int = 5,
) -> float:
    """Median seconds for one forward pass of a batch of ``batch_size`` inputs (eval mode, CPU).

    The median over ``repeats`` timed runs resists the noise of a shared machine.
    """
    was_training = model.training
    model.eval()
    x = torch.randn(batch_size, *input_shape)
    try:
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return statistics.median(times)
