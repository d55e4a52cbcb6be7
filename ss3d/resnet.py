"""ResNet-18 / ResNet-34 backbones with torchvision's layout, parameter names and initialisation.

Why not ``torchvision.models.resnet18``: importing any part of torchvision imports the whole
package, whose ``torchvision.ops`` imports ``torch._dynamo``: a slow import in every process
that builds a network (``ss3d reconstruct`` of one photo, every notebook kernel), for two
small classes (its cost: docs/results.md, Speed: the command line and reconstruction).
These are the same classes, built in the same order: the parameter names
(so torchvision weight files load unchanged), the forward pass and, from the same seed, every
initial weight are equal to torchvision's (tested against torchvision itself).

Only what ss3d uses: BasicBlock ResNets (18 and 34 layers), BatchNorm, no dilation or groups.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BasicBlock", "ResNet", "resnet"]

#: Blocks per stage of each supported depth (He et al., 2016; torchvision's ``_resnet`` calls).
LAYERS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}


def _conv3x3(inplanes: int, planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with a residual connection: ``(B, C_in, H, W) -> (B, C, H', W')``."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        # attribute order = torchvision's: it sets the order of modules() and so of the
        # initialisation loop's random draws
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """torchvision's ``ResNet`` for BasicBlocks: ``(B, 3, H, W) -> (B, num_classes)`` (``fc``
    may be replaced by ``nn.Identity`` for ``(B, 512)`` features)."""

    def __init__(self, layers: tuple[int, int, int, int], num_classes: int = 1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * BasicBlock.expansion, num_classes)
        for m in self.modules():
            # on the meta device (a network about to take a checkpoint's tensors) there is
            # nothing to draw, and PyTorch's meta normal_ imports torch._dynamo (slow)
            if isinstance(m, nn.Conv2d) and not m.weight.is_meta:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * BasicBlock.expansion:
            # built before the block, as in torchvision: construction draws random numbers
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * BasicBlock.expansion, kernel_size=1,
                          stride=stride, bias=False),
                nn.BatchNorm2d(planes * BasicBlock.expansion))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * BasicBlock.expansion
        layers += [BasicBlock(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet(name: str) -> ResNet:
    """An untrained ``resnet18`` or ``resnet34`` (``ValueError`` for any other name)."""
    if name not in LAYERS:
        raise ValueError(f"unknown encoder {name!r}: use {' or '.join(LAYERS)}")
    return ResNet(LAYERS[name])
