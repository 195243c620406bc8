"""The networks of the experiments: PreAct ResNet-18 (He et al., 2016, "Identity Mappings in
Deep Residual Networks"), the network of Arazo et al.'s CIFAR runs, for 32x32 inputs (``width``
scales every layer's channels, 64 in the paper, so that a narrower copy can train on a CPU), and
a small CNN that trains on 28x28 or 32x32 images in seconds per epoch."""

import torch.nn.functional as F
from torch import nn


class PreActBlock(nn.Module):
    """BN-ReLU-conv twice; the shortcut is the identity, or a strided 1x1 conv of the
    pre-activated input where the shape changes."""

    def __init__(self, in_channels, channels, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    """Four stages of two pre-activation blocks (``width``, 2x, 4x, 8x channels; strides 1, 2, 2,
    2), then BN-ReLU, global average pooling and a linear classifier."""

    def __init__(self, n_classes=10, width=64, in_channels=3):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        blocks, channels = [], width
        for stage, stride in enumerate((1, 2, 2, 2)):
            out = width * 2**stage
            blocks += [PreActBlock(channels, out, stride), PreActBlock(out, out)]
            channels = out
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(channels)
        self.head = nn.Linear(channels, n_classes)

    def forward(self, x):
        out = F.relu(self.bn(self.blocks(self.stem(x))))
        return self.head(F.adaptive_avg_pool2d(out, 1).flatten(1))


def small_cnn(channels, n_classes=10, width=32):
    """Two conv blocks and a linear head: trains on 28x28 or 32x32 images in seconds per epoch."""
    return nn.Sequential(
        nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(2 * width * 16, n_classes),
    )
