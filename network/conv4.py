"""Conv-4: four blocks of [conv3x3 (with bias) -> BatchNorm -> ReLU -> 2x2 max-pool], 64 channels.

An 84x84 image becomes a 64x5x5 feature map. Parameter names mirror the official
module: `layers.{0,3,6,9}.layers.0` is a block's conv, `layers.{0,3,6,9}.layers.1` its
BatchNorm. Convolutions use torch's default initialisation (weight and bias uniform in
+-1/sqrt(fan_in)), so training from scratch starts from the same distribution.
"""
import math

import paddle
from paddle import nn

from network.resnet12 import batch_norm, pooled_size


class ConvBlock(nn.Layer):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        bound = 1.0 / math.sqrt(in_channels * 3 * 3)
        init = nn.initializer.Uniform(-bound, bound)
        self.layers = nn.Sequential(
            nn.Conv2D(in_channels, out_channels, 3, padding=1,
                      weight_attr=paddle.ParamAttr(initializer=init),
                      bias_attr=paddle.ParamAttr(initializer=init)),
            batch_norm(out_channels))

    def forward(self, x):
        return self.layers(x)


class Conv4(nn.Layer):
    def __init__(self, channels=64):
        super().__init__()
        self.out_channels = channels
        blocks = []
        for in_channels in (3, channels, channels, channels):
            blocks += [ConvBlock(in_channels, channels), nn.ReLU(), nn.MaxPool2D(kernel_size=2, stride=2)]
        self.layers = nn.Sequential(*blocks)

    output_size = staticmethod(pooled_size)

    def init_output_scale(self, value):
        """Set the last BatchNorm's weight (gamma): the scale of the output feature map at initialisation."""
        last_bn = self.layers[-3].layers[1]
        last_bn.weight.set_value(paddle.full_like(last_bn.weight, value))

    def forward(self, x):
        return self.layers(x)
