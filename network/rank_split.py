"""One batch embedded by several processes, trained as one process would train on it.

With `--share_batches` under paddle.distributed.launch, every rank holds the whole batch (or
episode), runs the backbone on its own contiguous share of the images, and gathers the feature
maps of all shares, so the head and the loss see the whole batch. Two things keep the maths
those of a single process:

- BatchNorm normalises by the statistics of the whole batch: the per-channel sums of every
  share are added over the ranks (all_reduce), in the forward and in the backward;
- each rank's gradient is the gradient of the whole loss through its own share only, times
  the number of ranks (`_GatherRows` scales it), so averaging the gradients over the ranks
  (engine/parallel.py) gives the whole batch's gradient: the backbone's shares add up, and the
  head's gradient, the same on every rank, stays as it is.

Why: on a CPU, Paddle's kernels use two threads poorly, so two single-threaded processes with
half the images each finish a step sooner than one process with two threads. Nothing here is
active in a single process, in eval mode, or under paddle.jit.to_static.
"""
import numpy as np
import paddle
import paddle.distributed as dist
import paddle.nn.functional as F

from runtime.paddle_internals import batch_norm_internals

_SPLIT = {'rank': 0, 'ranks': 1}


def enable(rank, ranks):
    """From now on, training forwards share their batch over `ranks` processes (this one is `rank`)."""
    _SPLIT.update(rank=rank, ranks=ranks)


def ranks():
    return _SPLIT['ranks']


@paddle.jit.not_to_static
def active(training=True):
    return training and _SPLIT['ranks'] > 1 and paddle.in_dynamic_mode()


def summed_over_ranks(tensor):
    """The element-wise sum of `tensor` over the ranks (no gradient): a new tensor."""
    total = tensor.detach().clone()
    dist.all_reduce(total)
    return total


def share(n):
    """(start, stop) of this rank's rows among n."""
    k = _SPLIT['ranks']
    if n % k:
        raise ValueError(f'a batch of {n} images cannot be shared equally by {k} processes (--share_batches): '
                         f'choose a batch or episode size divisible by {k}, or run without --share_batches')
    size = n // k
    return _SPLIT['rank'] * size, (_SPLIT['rank'] + 1) * size


class _GatherRows(paddle.autograd.PyLayer):
    """Concatenate every rank's rows in rank order; the gradient is this rank's rows, times the ranks."""

    @staticmethod
    def forward(ctx, rows):
        parts = []
        dist.all_gather(parts, rows)
        ctx.rows = rows.shape[0]
        return paddle.concat(parts, axis=0)

    @staticmethod
    def backward(ctx, grad):
        start = _SPLIT['rank'] * ctx.rows
        return grad[start:start + ctx.rows] * float(_SPLIT['ranks'])


def embed(backbone, images):
    """backbone(images), with each rank computing only its share when batches are shared."""
    if not active(backbone.training):
        return backbone(images)
    start, stop = share(images.shape[0])
    return _GatherRows.apply(backbone(images[start:stop]))


def _local_statistics(x):
    """Per-channel mean and biased variance of x over this rank's rows, from Paddle's fused BatchNorm
    (with momentum 0 its running buffers receive exactly the batch's statistics)."""
    mean, var = paddle.zeros([x.shape[1]], x.dtype), paddle.zeros([x.shape[1]], x.dtype)
    F.batch_norm(x, mean, var, training=True, momentum=0.0)
    return mean, var


def _whole_batch_statistics(x):
    """Mean and biased variance per channel over the rows of every rank (all shares are the same size),
    combined in float64: var = mean over ranks of (var_r + mean_r^2) - mean^2."""
    mean, var = (paddle.cast(t, 'float64') for t in _local_statistics(x))
    both = summed_over_ranks(paddle.stack([mean, var + mean * mean])) / _SPLIT['ranks']
    return paddle.cast(both[0], x.dtype), paddle.cast(both[1] - both[0] * both[0], x.dtype)


def _affine(x, scale, shift):
    """x * scale + shift per channel, in one pass (Paddle's fused inference BatchNorm with mean 0, variance 1)."""
    zeros = paddle.zeros_like(scale)
    return F.batch_norm(x, zeros, paddle.ones_like(scale), weight=scale, bias=shift, training=False, epsilon=0.0)


class _SyncBatchNorm(paddle.autograd.PyLayer):
    """Training-mode BatchNorm over the rows of every rank: y = (x - mean) / sqrt(var + eps) * weight + bias.

    Returns y and the whole batch's mean and biased variance per channel (for the running statistics).
    Every pass over the maps is one of Paddle's fused BatchNorm kernels: its inference form with the
    whole batch's statistics gives y, and its backward gives weight * dy / std and this rank's sums of
    dy and dy * x_hat; the terms through the statistics are an affine map of x per channel.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, epsilon):
        mean, var = _whole_batch_statistics(x)
        ctx.save_for_backward(x, weight, bias, mean, var)
        ctx.epsilon = epsilon
        ctx.mark_non_differentiable(mean, var)
        return F.batch_norm(x, mean, var, weight=weight, bias=bias, training=False, epsilon=epsilon), mean, var

    @staticmethod
    def backward(ctx, grad, *_):
        x, weight, bias, mean, var = ctx.saved_tensor()
        with paddle.enable_grad():
            x, weight, bias = (t.detach() for t in (x, weight, bias))
            for t in (x, weight, bias):
                t.stop_gradient = False
            y = F.batch_norm(x, mean, var, weight=weight, bias=bias, training=False, epsilon=ctx.epsilon)
            grad_x, grad_weight, grad_bias = paddle.grad(y, [x, weight, bias], grad)
        count = x.shape[0] * x.shape[2] * x.shape[3] * _SPLIT['ranks']
        sums = summed_over_ranks(paddle.stack([grad_bias, grad_weight])) / count  # mean dy, mean dy * x_hat
        inv_std = 1.0 / paddle.sqrt(var + ctx.epsilon)
        # d/dx through the statistics: -weight / std * (mean dy + x_hat * mean(dy * x_hat)), affine in x
        slope = -weight * inv_std * inv_std * sums[1]
        offset = -weight * inv_std * sums[0] - slope * mean
        return grad_x + _affine(x.detach(), slope, offset), grad_weight, grad_bias  # this rank's share of the latter two


def batch_norm(x, bn, bias, mean_offset=None):
    """BatchNorm layer `bn` in training mode over the whole shared batch, with `bias` for its own; updates
    its running statistics as paddle's batch_norm does (momentum as a float32 of the old value, biased
    variance), the mean shifted by `mean_offset` when given (Conv-4 keeps the mean of conv(x) + bias,
    network/conv4.py)."""
    state = batch_norm_internals(bn)
    out, mean, var = _SyncBatchNorm.apply(x, bn.weight, bias, state.epsilon)
    momentum = float(np.float32(state.momentum))
    with paddle.no_grad():
        if mean_offset is not None:
            mean = mean + mean_offset
        state.mean.set_value(state.mean * momentum + mean * (1 - momentum))
        state.variance.set_value(state.variance * momentum + var * (1 - momentum))
    return out


class SharedBatchNorm2D(paddle.nn.BatchNorm2D):
    """paddle.nn.BatchNorm2D that, in training while batches are shared, normalises by the whole batch."""

    def forward(self, x):
        if not active(self.training):
            return paddle.nn.BatchNorm2D.forward(self, x)  # not super(): Paddle 2.6's to_static cannot convert it
        return batch_norm(x, self, self.bias)
