"""The backbones' 2x2 max-pool, with a faster backward in eager training.

max_pool2d's own gradient finds each window's maximum again by comparing the input with the
output; asking the forward for the winners' positions (return_mask=True) lets the backward
scatter to them directly. The values and gradients are the same, ties included (the first
maximum of a window wins either way; tests/test_conv4.py holds the two to each other in
float32 and float64). Eval mode and graphs traced by paddle.jit.to_static run the plain pool, so exported
models are unchanged.
"""
import paddle
import paddle.nn.functional as F
from paddle import nn


def max_pool_2x2(x, training):
    if training and paddle.in_dynamic_mode():
        return F.max_pool2d(x, kernel_size=2, stride=2, return_mask=True)[0]
    return F.max_pool2d(x, kernel_size=2, stride=2)


class MaxPool2x2(nn.Layer):
    def forward(self, x):
        return max_pool_2x2(x, self.training)
