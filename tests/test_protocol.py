"""The official fine-grained protocol in meta_train.py: the pass sampler, validation every N epochs with
its own query count, Adam with L2 weight decay, and resume across all of it."""
import json
import subprocess
import sys

import numpy as np
import paddle
import pytest

from conftest import REPO
from engine.config import OptimConfig
from engine.trainer import build_optimizer, validates_after

OFFICIAL = ['--dataset', 'cars', '--method', 'meta_frn', '--model', 'Conv4', '--image_size', '32', '--lr', '0.1',
            '--milestones', '2', '--train_n_way', '4', '--n_shot', '2', '--n_query', '3', '--val_n_query', '4',
            '--val_n_episode', '4', '--val_freq', '2', '--episodes', 'pass', '--threads', '2']


def meta_train(data, cwd, *extra, check=True):
    result = subprocess.run([sys.executable, str(REPO / 'meta_train.py'), '--data_path', str(data), *OFFICIAL,
                             *extra], cwd=cwd, capture_output=True, text=True, timeout=900)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def records(run_dir, event):
    lines = (run_dir / 'metrics.jsonl').read_text().splitlines()
    return [r for r in map(json.loads, lines) if r['event'] == event]


@pytest.fixture(scope='module')
def straight(cars_small, tmp_path_factory):
    """Three epochs of the official protocol, uninterrupted."""
    work = tmp_path_factory.mktemp('straight')
    meta_train(cars_small, work, '--epoch', '3')
    return work / 'checkpoints' / 'cars' / 'Conv4_meta_frn_4way_2shot_metatrain'


@pytest.mark.slow
def test_validation_runs_every_val_freq_epochs_and_after_the_last(straight):
    ends = {r['epoch']: r for r in records(straight, 'epoch_end')}
    assert sorted(ends) == [0, 1, 2]
    assert ends[0]['val_acc'] is None
    assert ends[1]['val_acc'] is not None and ends[2]['val_acc'] is not None
    assert [validates_after(e, 20, 40) for e in (0, 18, 19, 20, 38, 39)] == \
        [False, False, True, False, False, True]


@pytest.mark.slow
def test_the_log_says_the_episodes_of_each_pass_and_the_validation_episodes(straight):
    log = (straight / 'output.log').read_text()
    assert 'one pass over its images per epoch (--episodes pass)' in log
    assert '5-way 2-shot 4-query, every 2 epoch(s)' in log
    counts = [line for line in log.splitlines() if 'episodes in this pass over the training images' in line]
    assert len(counts) == 3
    steps = [r['steps'] for r in records(straight, 'epoch_end')]
    assert [f'| {n} episodes in this pass' in line for n, line in zip(steps, counts)] == [True] * 3
    saved = paddle.load(str(straight / 'last_model.pdopt'))['args']
    assert (saved['episodes'], saved['val_freq'], saved['val_n_query'], saved['opt']) == ('pass', 2, 4, 'sgd')


@pytest.mark.slow
def test_a_stopped_run_resumed_with_the_pass_sampler_ends_bit_exact(cars_small, tmp_path, straight):
    """One epoch (validated, as the last), then --resume from its last_model to three: the weights of the
    uninterrupted run, so neither the pass sampler, the optimizer, the schedule nor validation lose a bit.
    (A run killed at random points: tests/test_faults.py.)"""
    meta_train(cars_small, tmp_path, '--epoch', '1')
    run_dir = tmp_path / 'checkpoints' / 'cars' / 'Conv4_meta_frn_4way_2shot_metatrain'
    meta_train(cars_small, tmp_path, '--epoch', '3', '--resume', str(run_dir / 'last_model.pdparams'))
    for key, value in paddle.load(str(straight / 'last_model.pdparams')).items():
        np.testing.assert_array_equal(value.numpy(), paddle.load(str(run_dir / 'last_model.pdparams'))[key].numpy(),
                                      err_msg=key)
    log = (run_dir / 'output.log').read_text()
    assert 'resumed from' in log and [log.count(f'Epoch {e} | lr') for e in range(3)] == [1, 1, 1]


@pytest.mark.slow
def test_resume_with_another_optimizer_is_refused(cars_small, straight, tmp_path):
    result = meta_train(cars_small, tmp_path, '--epoch', '4', '--opt', 'adam', '--resume',
                        str(straight / 'last_model.pdparams'), check=False)
    assert result.returncode == 2 and 'Traceback' not in result.stderr
    assert '--opt is sgd there, adam here' in result.stderr


def torch_adam(params, grads, lr, wd, steps, decoupled=False, beta1=0.9, beta2=0.999, eps=1e-8):
    """torch.optim.Adam(weight_decay=wd) written out: the L2 term joins the gradient before the moments.
    decoupled=True is AdamW's rule instead: the weights shrink by lr * wd apart from the moments."""
    m = np.zeros_like(params)
    v = np.zeros_like(params)
    for t in range(1, steps + 1):
        g = grads(params) + (0.0 if decoupled else wd) * params
        if decoupled:
            params = params * (1 - lr * wd)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)
        params = params - lr * m_hat / (np.sqrt(v_hat) + eps)
    return params


def test_adam_applies_weight_decay_as_torch_adam_does():
    """--opt adam: coupled L2 (added to the gradient), not AdamW's decoupled decay."""
    paddle.set_default_dtype('float64')
    try:
        layer = paddle.nn.Linear(3, 1, bias_attr=False)
        start = np.array([[0.5], [-1.5], [2.0]])
        layer.weight.set_value(start)
        optim = OptimConfig(opt='adam', lr=0.1, milestones=(100,), gamma=0.1, wd=0.05, epoch=1)
        optimizer, _ = build_optimizer(optim, layer)
        x = np.array([[1.0, 2.0, -1.0], [0.5, -0.3, 0.8]])
        for _ in range(5):
            loss = paddle.sum(paddle.square(layer(paddle.to_tensor(x)) - 1.0))
            optimizer.clear_grad()
            loss.backward()
            optimizer.step()
        grads = lambda w: 2 * x.T @ (x @ w - 1.0)  # noqa: E731
        np.testing.assert_allclose(layer.weight.numpy(), torch_adam(start, grads, 0.1, 0.05, 5), rtol=1e-6)
        assert np.abs(layer.weight.numpy() - torch_adam(start, grads, 0.1, 0.05, 5, decoupled=True)).max() > 1e-3
    finally:
        paddle.set_default_dtype('float32')


@pytest.mark.slow
def test_a_dataset_without_a_validation_split_trains_with_val_last(cars_small, tmp_path):
    """meta-iNat's folders have train/ and test/ only; the official recipes train them with --no_val (our --val last)."""
    data = tmp_path / 'no_val'
    data.mkdir()
    for split in ('train', 'test'):
        (data / split).symlink_to(cars_small / split)
    result = meta_train(data, tmp_path, '--epoch', '1', '--val', 'last')
    run_dir = tmp_path / 'checkpoints' / 'cars' / 'Conv4_meta_frn_4way_2shot_metatrain'
    assert (run_dir / 'best_model.pdparams').is_file()
    assert 'val: none (--val last)' in (run_dir / 'output.log').read_text(), result.stdout
    (tmp_path / 'other').mkdir()
    refused = meta_train(data, tmp_path / 'other', '--epoch', '1', check=False)
    assert refused.returncode == 2 and 'trains with --val last' in refused.stderr
