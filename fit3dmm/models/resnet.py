"""ResNet-50 (He et al., CVPR 2016) with the module names of torchvision's ``resnet50``.

The layout is torchvision's "ResNet v1.5" (the stride of a downsampling Bottleneck sits on its 3×3 conv), and
every parameter and buffer has the name and shape torchvision gives it (``conv1``, ``bn1``, ``layer1``..
``layer4`` of Bottlenecks ``conv1/bn1/conv2/bn2/conv3/bn3/downsample.0/downsample.1``, ``fc``), so a
torchvision checkpoint file loads with :func:`load_backbone_weights` without torchvision being installed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

#: blocks per stage and bottleneck width per stage of ResNet-50
RESNET50_LAYERS: tuple[int, int, int, int] = (3, 4, 6, 3)
RESNET50_WIDTHS: tuple[int, int, int, int] = (64, 128, 256, 512)
FEATURE_DIM = 2048


class Bottleneck(nn.Module):
    """1×1 reduce → 3×3 (carrying the stride) → 1×1 expand ×4, plus the identity or a projection shortcut.

    Args:
        inplanes: input channels.
        planes: bottleneck width; the block outputs ``4 · planes`` channels.
        stride: stride of the 3×3 conv (and of the projection).
        downsample: the projection shortcut (``Sequential(conv1x1, BatchNorm2d)``) or None for identity.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        """(B, inplanes, H, W) → (B, 4·planes, H / stride, W / stride)."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class ResNet50(nn.Module):
    """ResNet-50: (B, 3, H, W) images → (B, num_outputs) through a 2048-d global-average-pooled feature.

    Any input size of at least 32 px works (the pooling is adaptive); 224 is the size the architecture was
    designed for.  Weights are initialised as torchvision does (Kaiming-normal convs, unit BatchNorm).

    Args:
        num_outputs: width of the final linear layer ``fc`` (1000 for ImageNet).
    """

    def __init__(self, num_outputs: int = 1000) -> None:
        super().__init__()
        if num_outputs < 1:
            raise ValueError(f"num_outputs must be ≥ 1, got {num_outputs}")
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = 64
        for index, (blocks, width) in enumerate(zip(RESNET50_LAYERS, RESNET50_WIDTHS, strict=True)):
            stride = 1 if index == 0 else 2
            layer, inplanes = self._make_layer(inplanes, width, blocks, stride)
            self.add_module(f"layer{index + 1}", layer)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(FEATURE_DIM, num_outputs)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @staticmethod
    def _make_layer(inplanes: int, width: int, blocks: int, stride: int) -> tuple[nn.Sequential, int]:
        out = width * Bottleneck.expansion
        downsample = None
        if stride != 1 or inplanes != out:
            downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
        layers = [Bottleneck(inplanes, width, stride, downsample)]
        layers += [Bottleneck(out, width) for _ in range(blocks - 1)]
        return nn.Sequential(*layers), out

    def features(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) → (B, 2048) pooled features."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(x.shape)}")
        if min(x.shape[-2:]) < 32:
            raise ValueError(f"images must be at least 32×32 px, got {tuple(x.shape[-2:])}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) → (B, num_outputs)."""
        return self.fc(self.features(x))


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """A state_dict from a checkpoint file: a plain state_dict (torchvision's ``resnet50-*.pth``) or one
    nested under ``"state_dict"``/``"model"``; a DataParallel/DDP ``module.`` prefix is removed."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"backbone weights {path}: no such file") from None
    except Exception as exc:  # unpickling errors come in many types
        raise ValueError(f"backbone weights {path}: not a readable torch checkpoint ({exc})") from None
    for key in ("state_dict", "model"):
        if isinstance(data, Mapping) and isinstance(data.get(key), Mapping):
            data = data[key]
    if not isinstance(data, Mapping) or not all(isinstance(v, Tensor) for v in data.values()):
        raise ValueError(f"backbone weights {path}: expected a state_dict of tensors")
    return {k.removeprefix("module."): v for k, v in data.items()}


def load_backbone_weights(network: ResNet50, state: Mapping[str, Tensor] | str | Path) -> list[str]:
    """Copy ImageNet (or any ResNet-50) weights into ``network``; returns the keys left at their own values.

    Every backbone key (all but ``fc``) must be present with its torchvision shape; ``fc`` is copied only
    when its shape matches (a coefficient head has another width than ImageNet's 1000 classes).
    """
    if not isinstance(state, Mapping):
        state = read_state_dict(state)
    own = network.state_dict()
    missing = [k for k in own if not k.startswith("fc.") and k not in state]
    wrong = [f"{k} {tuple(state[k].shape)} ≠ {tuple(v.shape)}" for k, v in own.items()
             if not k.startswith("fc.") and k in state and state[k].shape != v.shape]
    if missing or wrong:
        raise ValueError("backbone weights do not fit ResNet-50: "
                         + "; ".join(([f"missing {', '.join(missing[:5])}"] if missing else []) + wrong[:5]))
    skipped = [k for k in own if k.startswith("fc.") and (k not in state or state[k].shape != own[k].shape)]
    network.load_state_dict({k: state[k] for k in own if k not in skipped}, strict=False)
    return skipped
