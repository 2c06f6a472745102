"""Conv-4: four blocks of [conv3x3 (with bias) -> BatchNorm -> ReLU -> 2x2 max-pool], 64 channels.

Two exact shortcuts make an eager training step faster on a CPU (benchmarks/RESULTS.md), with
the same numbers up to rounding (tests/test_conv4.py holds them to the plain block,
tests/test_frn_official.py to the official outputs):
- in training mode BatchNorm subtracts each channel's batch mean, so the conv bias cancels.
  Adding it to the [N, 64, H, W] map and summing its gradient back is a large part of a CPU
  step. It is left out of the map; it reaches BatchNorm's shift as 0 * bias (its
  gradient is exactly the official zero, and weight decay still applies), and the running
  mean is shifted down by the bias before BatchNorm blends in the batch mean and back up
  after, so it holds the official running mean of conv(x) + bias;
- max-pooling before ReLU equals ReLU before max-pooling (ReLU is monotone), values and
  gradients, and runs ReLU on a quarter of the map.
Eval mode, and graphs traced by paddle.jit.to_static (which cannot trace the buffer
updates), run the plain block.

An 84x84 image becomes a 64x5x5 feature map. Parameter names mirror the official
module: `layers.{0,3,6,9}.layers.0` is a block's conv, `layers.{0,3,6,9}.layers.1` its
BatchNorm. Convolutions use torch's default initialisation (weight and bias uniform in
+-1/sqrt(fan_in)), so training from scratch starts from the same distribution.
"""
import math

import paddle
import paddle.nn.functional as F
from paddle import nn

from network import pooled_block, rank_split
from network.pool import MaxPool2x2, max_pool_2x2
from network.resnet12 import batch_norm, pooled_size
from runtime.paddle_internals import batch_norm_internals


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

    def forward(self, x, pooled=False):
        """conv -> BatchNorm; with pooled=True also ReLU and the 2x2 max-pool (the exact CPU training path
        of network/pooled_block.py where it applies)."""
        if pooled and pooled_block.usable(self, x):
            return pooled_block.pooled_block(x, self.layers[0], self.layers[1])
        out = self.conv_bn(x)
        return F.relu(max_pool_2x2(out, self.training)) if pooled else out

    def conv_bn(self, x):
        conv, bn = self.layers[0], self.layers[1]
        if not self.training or not paddle.in_dynamic_mode():  # eval, or traced by paddle.jit.to_static
            return bn(conv(x))
        if rank_split.active():  # each rank holds a share of the batch: statistics of the whole batch
            return rank_split.batch_norm(F.conv2d(x, conv.weight, padding=1), bn, bn.bias + 0.0 * conv.bias,
                                         mean_offset=conv.bias)
        state = batch_norm_internals(bn)
        with paddle.no_grad():  # BatchNorm blends mean(conv(x)) into the buffer; the official blends the
            state.mean.set_value(state.mean - conv.bias)  # mean of conv(x) + bias: shift by the bias around it
        out = F.batch_norm(F.conv2d(x, conv.weight, padding=1), state.mean, state.variance, weight=bn.weight,
                           bias=bn.bias + 0.0 * conv.bias, training=True, momentum=state.momentum,
                           epsilon=state.epsilon)
        with paddle.no_grad():
            state.mean.set_value(state.mean + conv.bias)
        return out


class Conv4(nn.Layer):
    def __init__(self, channels=64):
        super().__init__()
        self.out_channels = channels
        blocks = []
        for in_channels in (3, channels, channels, channels):
            blocks += [ConvBlock(in_channels, channels), MaxPool2x2(), nn.ReLU()]
        self.layers = nn.Sequential(*blocks)

    output_size = staticmethod(pooled_size)

    def init_output_scale(self, value):
        """Set the last BatchNorm's weight (gamma): the scale of the output feature map at initialisation."""
        last_bn = self.layers[-3].layers[1]
        last_bn.weight.set_value(paddle.full_like(last_bn.weight, value))

    def forward(self, x):
        # the first block at full resolution: conv, BatchNorm, ReLU and pooling in one (network/pooled_block.py)
        x = self.layers[0](x, pooled=True)
        for layer in list(self.layers)[3:]:
            x = layer(x)
        return x
