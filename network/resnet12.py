"""ResNet-12 as used by FRN: four residual stages of one block each, widths 64-160-320-640.

An 84x84 image becomes a 640x5x5 feature map. Parameter names mirror the official
PyTorch module (`layer1.0.conv1.weight`, `layer1.0.downsample.1.weight`, ...), so an
official state dict maps onto this one by renaming the BatchNorm buffers only.
"""
import math

import paddle
from paddle import nn

from network.pool import MaxPool2x2
from network.rank_split import SharedBatchNorm2D

WIDTHS = (64, 160, 320, 640)
LEAKY_SLOPE = 0.1


def batch_norm(channels):
    """BatchNorm with torch's defaults: eps 1e-5 and torch momentum 0.1 (Paddle counts it as 0.9)."""
    return SharedBatchNorm2D(channels, momentum=0.9, epsilon=1e-5)


def pooled_size(image_size, pools=4):
    """Side of the output map of a square input after `pools` 2x2 max-pools (84 -> 5)."""
    for _ in range(pools):
        image_size //= 2
    return image_size


def conv(in_channels, out_channels, kernel_size):
    """Bias-free convolution, Kaiming-normal initialised with fan_out and the leaky-ReLU gain sqrt(2)."""
    fan_out = out_channels * kernel_size * kernel_size
    init = nn.initializer.Normal(mean=0.0, std=math.sqrt(2.0 / fan_out))
    return nn.Conv2D(in_channels, out_channels, kernel_size, padding=kernel_size // 2,
                     weight_attr=paddle.ParamAttr(initializer=init), bias_attr=False)


class BasicBlock(nn.Layer):
    """conv-BN-LReLU, conv-BN-LReLU, conv-BN, + (1x1 conv-BN shortcut), LReLU, 2x2 max-pool."""

    def __init__(self, in_channels, channels):
        super().__init__()
        self.conv1 = conv(in_channels, channels, 3)
        self.bn1 = batch_norm(channels)
        self.conv2 = conv(channels, channels, 3)
        self.bn2 = batch_norm(channels)
        self.conv3 = conv(channels, channels, 3)
        self.bn3 = batch_norm(channels)
        self.relu = nn.LeakyReLU(LEAKY_SLOPE)
        self.downsample = nn.Sequential(conv(in_channels, channels, 1), batch_norm(channels))
        self.maxpool = MaxPool2x2()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = self.relu(out + self.downsample(x))
        return self.maxpool(out)


class ResNet12(nn.Layer):
    def __init__(self):
        super().__init__()
        self.out_channels = WIDTHS[-1]
        widths = (3,) + WIDTHS
        # one block per stage, wrapped in a Sequential so the names read `layer1.0.*` as upstream
        self.layer1 = nn.Sequential(BasicBlock(widths[0], widths[1]))
        self.layer2 = nn.Sequential(BasicBlock(widths[1], widths[2]))
        self.layer3 = nn.Sequential(BasicBlock(widths[2], widths[3]))
        self.layer4 = nn.Sequential(BasicBlock(widths[3], widths[4]))

    output_size = staticmethod(pooled_size)

    def forward(self, x):
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))
