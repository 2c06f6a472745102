"""Helpers shared by the tests against the official PyTorch fixtures (FRN and ProtoNet).

Comparisons are relative to the largest magnitude of the expected tensor:
max|ours - official| <= rtol * max|official|.
"""
import numpy as np
import paddle

from network.conv4 import ConvBlock

MOMENTUM_F32 = float(np.float32(0.9))  # Paddle's BatchNorm and Momentum hold 0.9 as a float32
WEIGHT_DECAY_F32 = float(np.float32(5e-4))  # and Momentum's L2 coefficient too
BACKBONES = {'conv4': 'Conv4', 'resnet12': 'ResNet12'}


def max_rel(actual, expected):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return np.abs(actual - expected).max() / np.abs(expected).max()


def assert_close(actual, expected, rtol, what=''):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f'{what}: shape {actual.shape} != {expected.shape}'
    err = max_rel(actual, expected)
    assert err <= rtol, f'{what}: relative error {err:.3g} > {rtol:g}'


def l2_rel(actual, expected):
    return np.linalg.norm(np.asarray(actual, np.float64) - expected) / np.linalg.norm(expected)


def output_layer(sublayers, bn_name):
    """The layer whose output is this BatchNorm's output: the BatchNorm, or the Conv-4 block that
    calls batch_norm itself in training mode (network/conv4.py). `sublayers`: name -> layer."""
    block = sublayers.get(bn_name.rsplit('.layers.', 1)[0])
    return block if isinstance(block, ConvBlock) else sublayers[bn_name]


def is_zero_grad_bias(key):
    """Conv-4's conv biases: their gradient through train-mode BatchNorm is exactly zero."""
    return key.startswith('feature_extractor.layers.') and key.endswith('.layers.0.bias')


class BatchNormRecorder:
    """Running statistics of every BatchNorm before and after a forward, and how many values each averaged."""

    def __init__(self, model):
        self.batch_norms = {name: sub for name, sub in model.named_sublayers() if isinstance(sub, paddle.nn.BatchNorm2D)}
        self.initial = self._stats()
        self.counts = {}
        sublayers = dict(model.named_sublayers())
        # values per channel = batch x height x width of the layer's input: a BatchNorm keeps the size, and so does
        # a Conv-4 block's 3x3 convolution (padding 1), also where the block pools in the same call
        self._hooks = [output_layer(sublayers, name).register_forward_post_hook(
            lambda layer, inputs, out, name=name: self.counts.__setitem__(
                name, inputs[0].shape[0] * int(np.prod(inputs[0].shape[2:])))) for name in self.batch_norms]

    def _stats(self):
        return {name: (bn._mean.numpy().copy(), bn._variance.numpy().copy()) for name, bn in self.batch_norms.items()}

    def finish(self):
        """Stop counting; returns the statistics after the forward."""
        for hook in self._hooks:
            hook.remove()
        return self._stats()


def check_batchnorm_stats(initial, after, counts, z, rtol):
    """Paddle: m = mu32 m0 + (1 - mu32) mean_b and v = mu32 v0 + (1 - mu32) var_b (biased).
    Recover mean_b and var_b from Paddle's update, apply torch's (0.9, unbiased) and compare."""
    for name, (mean0, var0) in initial.items():
        mean, var = (np.asarray(a, np.float64) for a in after[name])
        mean0, var0 = np.asarray(mean0, np.float64), np.asarray(var0, np.float64)
        n = counts[name]
        batch_mean = (mean - MOMENTUM_F32 * mean0) / (1 - MOMENTUM_F32)
        batch_var = (var - MOMENTUM_F32 * var0) / (1 - MOMENTUM_F32)
        key = 'bn_after_train_forward/' + name
        assert_close(0.9 * mean0 + 0.1 * batch_mean, z[key + '.running_mean'], rtol, name + ' mean')
        assert_close(0.9 * var0 + 0.1 * batch_var * n / (n - 1), z[key + '.running_var'], rtol, name + ' var')
        assert_close(mean, z[key + '.running_mean'], 1e-6, name + ' uncorrected mean')
    assert len(initial) == sum(k.startswith('bn_after_train_forward/') for k in z.files) // 2


def check_gradients(grads, z, prefix, rtol, dtype='float64', rtol_of=None, zero_bias_rtol=None):
    """Gradient norms, sums and (for tensors the fixture stores) full gradients.
    `rtol_of`: {key: rtol} for parameters with a documented looser bound; `zero_bias_rtol`
    (default `rtol`) bounds Conv-4's zero bias gradients relative to their weight's."""
    rtol_of = rtol_of or {}
    zero_bias_rtol = rtol if zero_bias_rtol is None else zero_bias_rtol
    assert sorted(grads) == sorted(k.split('/', 1)[1] for k in z.files if k.startswith(f'{prefix}gradnorm/'))
    for key, grad in grads.items():
        if is_zero_grad_bias(key):
            weight = grads[key[:-len('bias')] + 'weight']
            assert np.abs(grad).max() <= zero_bias_rtol * np.abs(weight).max(), key
            assert np.abs(z[f'{prefix}gradnorm/{key}']) <= 1e-8 * np.linalg.norm(weight), key
            continue
        key_rtol = rtol_of.get(key, rtol)
        norm = z[f'{prefix}gradnorm/{key}']
        assert_close(np.linalg.norm(grad), norm, key_rtol, f'norm of {key}')
        # a sum can cancel far below its terms: its natural scale is sqrt(n) * norm (Cauchy-Schwarz)
        sum_err = abs(grad.sum() - z[f'{prefix}gradsum/{key}']) / (np.sqrt(grad.size) * norm)
        assert sum_err <= key_rtol, f'sum of {key}: relative error {sum_err:.3g} > {key_rtol:g}'
        full = z.get(f'{prefix}grad/{key}')
        if full is not None and dtype == 'float64':
            assert_close(grad, full, key_rtol, f'gradient of {key}')
        elif full is not None:
            assert l2_rel(grad, full) <= key_rtol, f'gradient of {key}: relative L2 error {l2_rel(grad, full):.3g}'


def nesterov_sgd(params, grads, lr, momentum, weight_decay):
    """torch.optim.SGD(nesterov=True) over the recorded trajectory: params[i], grads[i] -> params[i+1]."""
    out, buf = [], None
    for p, g in zip(params, grads):
        g = g + weight_decay * p
        buf = g if buf is None else momentum * buf + g
        out.append(p - lr * (g + momentum * buf))
    return out


class ExactLeakyReLU(paddle.nn.Layer):
    """LeakyReLU with its slope in the input's dtype (a tensor, not a float attribute)."""

    def __init__(self, slope):
        super().__init__()
        self.slope = slope

    def forward(self, x):
        return paddle.where(x > 0, x, x * paddle.to_tensor(self.slope, dtype=x.dtype))


def use_exact_leaky_relu(model):
    """Swap every LeakyReLU for ExactLeakyReLU: Paddle 2.x holds the slope as a float32 (docs/development.md, "Against the official code")."""
    for layer in model.sublayers(include_self=True):
        for name, child in list(layer.named_children()):
            if isinstance(child, paddle.nn.LeakyReLU):
                setattr(layer, name, ExactLeakyReLU(child._negative_slope))
