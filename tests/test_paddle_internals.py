"""Every private part of Paddle the project relies on (runtime/paddle_internals.py) works on the installed Paddle,
and a missing one is a one-line error naming it and the Paddle version. CI runs this on Paddle 2.6.2 and 3.x."""
import threading

import numpy as np
import paddle
import pytest

from runtime import paddle_internals as internals
from utils import FRNError


class Items(paddle.io.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return np.full([2], i, dtype=np.float32), np.int64(i)


def test_a_multi_process_loader_iterator_has_its_workers_thread_and_shutdown():
    loader = paddle.io.DataLoader(Items(), batch_size=2, num_workers=1, use_shared_memory=False, timeout=10)
    iterator = iter(loader)
    batch = next(iterator)
    np.testing.assert_array_equal(batch[0].numpy()[:, 0], [0, 1])
    workers = internals.loader_workers(iterator)
    assert len(workers) == 1 and workers[0].is_alive()
    thread = internals.loader_thread(iterator)
    assert isinstance(thread, threading.Thread)
    internals.shut_down_loader(iterator, 10)
    workers[0].join(10)
    assert not workers[0].is_alive()


def test_the_default_collate_stacks_arrays_and_numbers():
    images, labels = internals.default_collate_fn([Items()[i] for i in range(3)])
    assert images.shape == (3, 2) and list(labels) == [0, 1, 2]


def test_batch_norm_internals_are_the_layers_buffers_and_settings():
    bn = paddle.nn.BatchNorm2D(4, momentum=0.8, epsilon=1e-3)
    state = internals.batch_norm_internals(bn)
    assert (state.momentum, state.epsilon) == (pytest.approx(0.8), pytest.approx(1e-3))
    bn(paddle.to_tensor(np.arange(32, dtype=np.float32).reshape(2, 4, 2, 2)))  # a training step updates them
    assert state.mean.numpy().any() and not np.allclose(state.variance.numpy(), 1)
    assert {internals.BN_MEAN_KEY, internals.BN_VARIANCE_KEY} <= set(bn.state_dict())  # the state-dict names
    np.testing.assert_array_equal(bn.state_dict()[internals.BN_MEAN_KEY].numpy(), state.mean.numpy())


def test_leaky_relu_slope():
    assert internals.leaky_relu_slope(paddle.nn.LeakyReLU(0.1)) == pytest.approx(0.1)


def test_math_threads_and_the_program_parser(tmp_path):
    internals.set_math_threads(2)
    assert internals.parse_program(b'').num_blocks() == 0
    with pytest.raises(ValueError):
        internals.parse_program(b'not a program')
    layer = paddle.jit.to_static(paddle.nn.Linear(2, 2), input_spec=[paddle.static.InputSpec([None, 2], 'float32')])
    paddle.jit.save(layer, str(tmp_path / 'model'))
    program = tmp_path / 'model.pdmodel'  # Paddle 2.x; 3.x writes model.json, which needs no ProgramDesc
    if program.exists():
        assert internals.parse_program(program.read_bytes()).num_blocks() >= 1


def test_a_missing_attribute_is_one_error_naming_it_and_the_paddle_version():
    with pytest.raises(internals.PaddleInternalsError) as err:
        internals.loader_workers(object())
    message = str(err.value)
    assert isinstance(err.value, FRNError) and '\n' not in message
    assert 'DataLoader iterator._workers' in message and paddle.__version__ in message
