"""Conv-4's first block in training mode on a CPU: conv -> BatchNorm -> ReLU -> 2x2 max-pool, computed exactly
but with most of the memory traffic of a 64-channel full-resolution map taken out.

Why: for 84 px inputs the first block's conv output is 64 x 84 x 84 per image (722 MB for a 20-way
5-shot 15-query episode), and Paddle's CPU kernels for BatchNorm, max-pooling and their gradients
are single-threaded passes over it, which made this block most of a Conv-4 training step. Two
identities remove those passes:

1. BatchNorm of a convolution is again an affine map of the input patches. With patches p
   (im2col columns, plus a constant 1 that carries the conv bias) and weights W, the conv output
   is y = W p, its batch mean W m1 / n and its second moment diag(W M2 W^T) / n, where
   m1 = sum p and M2 = sum p p^T are moments of the *input* patches (27 + 9 rows for RGB). So
   the statistics need no pass over y, and BatchNorm(y) = W_bn p with W_bn = diag(s) W plus the
   shift in the bias column (s = gamma / sqrt(var + eps)). Differentiating W_bn through the
   statistics gives BatchNorm's backward exactly (autograd does it on 64 x 36 matrices).
2. Max-pooling looks at four outputs per window, one from each of the offsets (dy, dx) in
   {0, 1}^2. The patches of each offset form their own strided column matrix, so the block is
   relu(max_k(W_bn P_k)): four matrix products and a running maximum. ReLU commutes with the
   maximum, as in network/conv4.py.

The memory-bound parts (building the patch matrices, the running maximum with its winners, the
gradient routing) run in numpy on zero-copy views of Paddle's tensors; the products run in
Paddle (MKL). Ties between window positions keep the first, as max_pool2d does. The statistics
are formed in float64. tests/test_conv4.py holds this block to the plain one in float64.
"""
import numpy as np
import paddle
from numpy.lib.stride_tricks import as_strided
from paddle.utils import dlpack

from network import rank_split
from runtime.paddle_internals import batch_norm_internals

OFFSETS = ((0, 0), (0, 1), (1, 0), (1, 1))  # the window positions in max_pool2d's scan order


class _DLPackView:
    """A tensor as numpy's from_dlpack wants it on Paddle 2.x, whose Tensor has no __dlpack__."""

    def __init__(self, tensor):
        self.tensor = tensor

    def __dlpack__(self, stream=None):
        return dlpack.to_dlpack(self.tensor)

    def __dlpack_device__(self):
        return (1, 0)  # kDLCPU


def as_numpy(tensor):
    """A read-only numpy view of a CPU tensor's values, without a copy."""
    tensor = tensor.detach()
    return np.from_dlpack(tensor if hasattr(tensor, '__dlpack__') else _DLPackView(tensor))


def as_tensor(array):
    """A Paddle tensor of a numpy array: shares the memory on Paddle 3.x, a copy on 2.x."""
    return dlpack.from_dlpack(np.ascontiguousarray(array).__dlpack__())


@paddle.jit.not_to_static
def usable(block, x):
    """The exact fast path applies: a training forward on a CPU in dygraph, an input that needs no
    gradient (images), even height and width (so the windows cover every BatchNorm position)."""
    if not (block.training and paddle.in_dynamic_mode()):
        return False
    return (x.stop_gradient and x.place.is_cpu_place() and x.shape[2] % 2 == 0 and x.shape[3] % 2 == 0
            and x.dtype in (paddle.float32, paddle.float64))


def window_patches(x):
    """[N, C, H, W] -> four [N, C * 9 + 1, H/2 * W/2] patch matrices, one per window offset.

    Row (c, ky, kx) holds the zero-padded input at (2i + dy + ky, 2j + dx + kx); the last row is
    the constant 1 that carries the bias.
    """
    n, c, h, w = x.shape
    padded = np.zeros((n, c, h + 2, w + 2), dtype=x.dtype)
    padded[:, :, 1:-1, 1:-1] = x
    s = padded.strides
    ho, wo = h // 2, w // 2
    patches = []
    for dy, dx in OFFSETS:
        window = as_strided(padded[:, :, dy:, dx:], shape=(n, c, 3, 3, ho, wo),
                            strides=(s[0], s[1], s[2], s[3], 2 * s[2], 2 * s[3]))
        p = np.empty((n, c * 9 + 1, ho * wo), dtype=x.dtype)
        np.copyto(p[:, :c * 9].reshape(n, c, 3, 3, ho, wo), window)
        p[:, c * 9] = 1
        patches.append(p)
    return patches


def patch_moments(patches):
    """sum p p^T over every patch of every offset, [K, K] float64 (the last row holds the count and the sums)."""
    total = None
    for p in patches:
        t = as_tensor(p)
        per_image = paddle.matmul(t, t, transpose_y=True)  # N, K, K
        part = paddle.sum(paddle.cast(per_image, 'float64'), axis=0)
        total = part if total is None else total + part
    return total


class _MaxOfProducts(paddle.autograd.PyLayer):
    """relu(max_k(w @ P_k)) for the four patch matrices P_k; the gradient flows to w only."""

    @staticmethod
    def forward(ctx, w, patches):
        best = winner = None
        for k, p in enumerate(patches):
            z = as_numpy(paddle.matmul(w, as_tensor(p)))  # N, C_out, L
            if best is None:
                best, winner = z.copy(), np.zeros(z.shape, dtype=np.uint8)
                continue
            better = (z > best).view(np.uint8)  # strict: a tie keeps the earlier window position
            np.maximum(winner, better * np.uint8(k), out=winner)  # offsets come in increasing k
            np.maximum(best, z, out=best)
        np.maximum(winner, (best <= 0).view(np.uint8) * np.uint8(NO_GRADIENT), out=winner)  # ReLU's zeros
        ctx.patches, ctx.winner, ctx.dtype = patches, winner, w.dtype
        return as_tensor(np.maximum(best, 0, out=best))

    @staticmethod
    def backward(ctx, grad):
        g = as_numpy(grad)
        routed = np.empty_like(g)
        total = None
        for k, p in enumerate(ctx.patches):
            np.multiply(g, ctx.winner == k, out=routed)  # the windows where offset k gave the output
            per_image = paddle.matmul(as_tensor(routed), as_tensor(p), transpose_y=True)  # N, C_out, K
            part = paddle.sum(paddle.cast(per_image, 'float64'), axis=0)
            total = part if total is None else total + part
        return paddle.cast(total, ctx.dtype)  # the patches are numpy arrays, not tensors: no gradient


NO_GRADIENT = 255  # the winner of a window that ReLU set to zero


def pooled_block(x, conv, bn):
    """relu(maxpool2x2(bn(conv(x)))) in training mode, with bn's running statistics updated as
    paddle's batch_norm updates them (momentum as a float32, biased variance) for conv(x) + bias."""
    n, c, h, w = x.shape
    patches = window_patches(as_numpy(x))
    with paddle.no_grad():
        moments = patch_moments(patches)
    count = n * h * w
    if rank_split.active():  # each rank holds a share of the batch: the moments of the whole batch
        moments, count = rank_split.summed_over_ranks(moments), count * rank_split.ranks()
    c_out = conv.weight.shape[0]
    bias_row = c * 9  # the constant row of the patch matrices
    flat = paddle.reshape(conv.weight, [c_out, c * 9])

    def with_bias_column(weights, bias):
        """[c_out, c * 9] weights and a bias -> [c_out, c * 9 + 1] over the patch rows."""
        return paddle.concat([weights, paddle.unsqueeze(bias, 1)], axis=1)

    # the conv bias cancels in BatchNorm: left out here, its gradient is the exact zero (as in network/conv4.py)
    w64 = paddle.cast(with_bias_column(flat, paddle.zeros([c_out], flat.dtype)), 'float64')
    mean = paddle.matmul(w64, moments[:, bias_row]) / count  # batch mean of conv(x), per channel
    var = paddle.sum(paddle.matmul(w64, moments) * w64, axis=1) / count - paddle.square(mean)
    state = batch_norm_internals(bn)
    scale = paddle.cast(bn.weight, 'float64') / paddle.sqrt(var + state.epsilon)
    shift = paddle.cast(bn.bias, 'float64') - scale * mean
    dtype = conv.weight.dtype
    folded = with_bias_column(flat * paddle.unsqueeze(paddle.cast(scale, dtype), 1),
                              paddle.cast(shift, dtype) + 0.0 * conv.bias)
    out = _MaxOfProducts.apply(folded, patches)
    with paddle.no_grad():  # the running mean is that of conv(x) + bias, as the official module's
        momentum = float(np.float32(state.momentum))
        batch_mean = paddle.cast(mean, state.mean.dtype) + conv.bias
        state.mean.set_value(state.mean * momentum + batch_mean * (1 - momentum))
        state.variance.set_value(state.variance * momentum + paddle.cast(var, state.variance.dtype) * (1 - momentum))
    return paddle.reshape(out, [n, c_out, h // 2, w // 2])
