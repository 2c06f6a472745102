"""Conv-4's training-mode shortcuts (network/conv4.py) against the plain block, in float64.

The plain block is conv(x) + bias -> BatchNorm -> ReLU -> 2x2 max-pool, written here with
Paddle's functional ops on copies of the same parameters and buffers. Ours skips the bias
add in training mode and pools before ReLU; both are exact, so outputs, every gradient
and the running statistics must agree to rounding.
"""
import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from network.conv4 import Conv4


def conv_bns(model):
    """Each block's (conv, BatchNorm), in order."""
    return [(block.layers[0], block.layers[1]) for block in model.layers[::3]]


def plain_forward(model, x, buffers):
    """The official order of operations, BatchNorm statistics written into `buffers`."""
    for (conv, bn), (mean, var) in zip(conv_bns(model), buffers):
        x = F.batch_norm(F.conv2d(x, conv.weight, conv.bias, padding=1), mean, var, bn.weight, bn.bias,
                         training=True, momentum=bn._momentum, epsilon=bn._epsilon)
        x = F.max_pool2d(F.relu(x), kernel_size=2, stride=2)
    return x


@pytest.fixture(scope='module')
def model_and_input():
    paddle.set_default_dtype('float64')
    try:
        paddle.seed(3)
        model = Conv4()
        with paddle.no_grad():  # non-trivial biases and running statistics, as after some training
            for conv, bn in conv_bns(model):
                conv.bias.set_value(paddle.randn(conv.bias.shape, 'float64'))
                bn._mean.set_value(paddle.randn(bn._mean.shape, 'float64'))
                bn._variance.set_value(paddle.rand(bn._variance.shape, 'float64') + 0.5)
        x = paddle.randn([6, 3, 42, 42], 'float64')
    finally:
        paddle.set_default_dtype('float32')
    return model, x


def grads_of(model, out, weights):
    for p in model.parameters():  # Layer.clear_gradients(set_to_zero=False) is Paddle 3.x only
        p.clear_gradient(False)
    (out * weights).sum().backward()
    return {k: (None if p.grad is None else p.grad.numpy().copy()) for k, p in model.named_parameters()
            if not p.stop_gradient}


def test_training_forward_gradients_and_running_stats_equal_the_plain_block(model_and_input):
    model, x = model_and_input
    model.train()
    buffers = [(bn._mean.clone(), bn._variance.clone()) for _, bn in conv_bns(model)]
    weights = paddle.randn([6, 64, 2, 2], 'float64')
    plain = plain_forward(model, x, buffers)
    plain_grads = grads_of(model, plain, weights)
    ours = model(x)
    our_grads = grads_of(model, ours, weights)

    assert ours.shape == [6, 64, 2, 2]
    np.testing.assert_allclose(ours.numpy(), plain.numpy(), rtol=0, atol=1e-12 * np.abs(plain.numpy()).max())
    for key, plain_grad in plain_grads.items():
        grad = our_grads[key]
        assert grad is not None, f'{key} got no gradient, so weight decay would skip it'
        if key.endswith('layers.0.bias'):  # through train-mode BatchNorm: zero, up to the plain path's rounding
            assert np.abs(grad).max() == 0.0
            assert np.abs(plain_grad).max() <= 1e-12 * np.abs(plain_grads[key[:-4] + 'weight']).max()
        else:
            np.testing.assert_allclose(grad, plain_grad, rtol=0, atol=1e-10 * np.abs(plain_grad).max(), err_msg=key)
    for i, ((_, bn), (mean, var)) in enumerate(zip(conv_bns(model), buffers)):
        np.testing.assert_allclose(bn._mean.numpy(), mean.numpy(), rtol=1e-12, atol=1e-12, err_msg=f'block {i} mean')
        np.testing.assert_allclose(bn._variance.numpy(), var.numpy(), rtol=1e-12, err_msg=f'block {i} variance')


def test_eval_mode_is_the_plain_block_with_running_statistics(model_and_input):
    model, x = model_and_input
    model.eval()
    ref = x
    for conv, bn in conv_bns(model):
        ref = F.batch_norm(F.conv2d(ref, conv.weight, conv.bias, padding=1), bn._mean, bn._variance, bn.weight,
                           bn.bias, training=False, epsilon=bn._epsilon)
        ref = F.max_pool2d(F.relu(ref), kernel_size=2, stride=2)
    with paddle.no_grad():
        np.testing.assert_allclose(model(x).numpy(), ref.numpy(), rtol=1e-12, atol=1e-12)


def test_to_static_training_runs_the_plain_block_with_the_same_outputs_and_gradients():
    """paddle.jit.to_static cannot trace the eager shortcut's buffer updates, so it traces the plain block."""
    paddle.seed(5)
    eager, traced = Conv4(), Conv4()
    traced.set_state_dict(eager.state_dict())
    eager.train()
    traced.train()
    static = paddle.jit.to_static(traced, full_graph=True)
    x = paddle.randn([4, 3, 42, 42])
    outs = []
    for model, run in ((eager, eager), (traced, static)):
        out = run(x)
        out.sum().backward()
        outs.append((out.numpy(), model.layers[3].layers[0].weight.grad.numpy(), model.layers[9].layers[1]._mean.numpy()))
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * np.abs(b).max())


def test_the_pooled_first_block_runs_where_it_is_exact_and_the_plain_block_elsewhere(model_and_input):
    """network/pooled_block.py needs a training forward on the CPU, an input without gradient and even sides (so
    that the pooling windows cover every BatchNorm position); elsewhere the block runs conv, BatchNorm, ReLU, pool."""
    from network import pooled_block
    model, x = model_and_input
    block = model.layers[0]
    model.train()
    assert pooled_block.usable(block, x)
    assert not pooled_block.usable(block, x[:, :, :41, :41])
    needs_grad = x.clone()
    needs_grad.stop_gradient = False
    assert not pooled_block.usable(block, needs_grad)
    model.eval()
    assert not pooled_block.usable(block, x)
    model.train()
    odd = x[:, :, :41, :41]
    buffers = [(bn._mean.clone(), bn._variance.clone()) for _, bn in conv_bns(model)]
    np.testing.assert_allclose(model(odd).numpy(), plain_forward(model, odd, buffers).numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('dtype', ['float32', 'float64'])
def test_the_training_pool_equals_max_pool2d_in_values_and_gradients_ties_included(dtype):
    """network/pool.py's pool routes each window's gradient to the same position as max_pool2d's own backward."""
    from network.pool import max_pool_2x2
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 4, 8, 10)).astype(dtype)
    a[:, :, ::2, ::2] = a[:, :, 1::2, 1::2]  # a tie inside every window
    a[0, 0] = 0.0  # whole windows equal
    a[1, 1, :4] = np.round(a[1, 1, :4])  # ties between three or four positions
    grad = paddle.to_tensor(rng.standard_normal((3, 4, 4, 5)).astype(dtype))
    results = []
    for pool in (lambda x: max_pool_2x2(x, training=True), lambda x: F.max_pool2d(x, kernel_size=2, stride=2)):
        x = paddle.to_tensor(a, stop_gradient=False)
        out = pool(x)
        out.backward(grad)
        results.append((out.numpy(), x.grad.numpy()))
    assert np.array_equal(results[0][0], results[1][0]) and np.array_equal(results[0][1], results[1][1])
    assert np.count_nonzero(results[0][1]) == grad.size  # one winner per window
