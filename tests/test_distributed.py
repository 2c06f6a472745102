"""Data-parallel runs under `python -m paddle.distributed.launch --nproc_per_node 2` on the CPU (gloo).

Real photos (the Tiny-ImageNet-32 subset), Conv-4 at 32 px, one epoch each of pretraining
and meta-training, then a distributed test compared with a single-process one; and the
shared-batch mode (--share_batches, network/rank_split.py), held to a single process.
"""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO

COMMON = ['--model', 'Conv4', '--image_size', '32', '--n_query', '3', '--val_n_episode', '3', '--threads', '1',
          '--print_freq', '1']


def launch(tmp, script, *args, nproc=2):
    cmd = [sys.executable, '-m', 'paddle.distributed.launch', '--nproc_per_node', str(nproc),
           '--log_dir', str(tmp / f'log_{script}')] if nproc > 1 else [sys.executable]
    result = subprocess.run(cmd + [str(REPO / script), *args], cwd=tmp, capture_output=True, text=True, timeout=600)
    logs = ''.join((tmp / f'log_{script}' / f'workerlog.{r}').read_text() for r in range(nproc)) if nproc > 1 else ''
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:] + logs[-3000:]
    return result, logs


def fingerprints(logs):
    return dict(re.findall(r'rank (\d) of 2: final weights fingerprint (\w+)', logs))


def epoch_metrics(log_text):
    batch = [float(x) for x in re.findall(r'Batch \d+/\d+ \| Loss (\d+\.\d+)', log_text)]
    epoch = [float(x) for x in re.findall(r'train loss is (\d+\.\d+)', log_text)]
    return batch, epoch


@pytest.fixture(scope='module')
def runs(tiny_mini, tmp_path_factory):
    """The same pretrain -> meta-train, once with 2 processes and once with 1."""
    out = {}
    for nproc in (2, 1):
        tmp = tmp_path_factory.mktemp(f'dist{nproc}')
        ck = tmp / 'checkpoints' / 'mini_imagenet'
        pre = launch(tmp, 'pretrain.py', '--data_path', str(tiny_mini), '--batch_size', '64', '--epoch', '1',
                     '--milestones', '5', *COMMON, nproc=nproc)
        meta = launch(tmp, 'meta_train.py', '--data_path', str(tiny_mini), '--epoch', '1', '--milestones', '5',
                      '--train_n_episode', '4', '--train_n_way', '5', '--n_shot', '2', *COMMON,
                      '--pretrain_path', str(ck / 'Conv4_stl_frn_pretrain' / 'best_model.pdparams'), nproc=nproc)
        out[nproc] = {'tmp': tmp, 'pre': pre, 'meta': meta, 'pre_dir': ck / 'Conv4_stl_frn_pretrain',
                      'meta_dir': ck / 'Conv4_meta_frn_5way_2shot_metatrain'}
    return out


@pytest.mark.slow
def test_distributed_runs_write_the_same_files_as_a_single_process(runs):
    for key in ('pre_dir', 'meta_dir'):
        assert sorted(os.listdir(runs[2][key])) == sorted(os.listdir(runs[1][key]))
        assert 'curves.png' in os.listdir(runs[2][key])
    log = (runs[2]['pre_dir'] / 'output.log').read_text()
    assert 'rank 0 of 2 processes' in log and log.count('==== ') == 1  # one writer


@pytest.mark.slow
def test_both_ranks_end_with_identical_weights(runs):
    for stage in ('pre', 'meta'):
        prints = fingerprints(runs[2][stage][1])
        assert set(prints) == {'0', '1'} and prints['0'] == prints['1'], prints


@pytest.mark.slow
def test_pretraining_loss_curve_is_close_to_a_single_process_with_the_same_global_batch(runs):
    """Not exact: without --share_batches each rank's BatchNorm normalises its half of the batch with
    its own statistics, so activations, and from the first step the weights, differ slightly. The first batch, with identical weights, differs by that alone."""
    batch2, epoch2 = epoch_metrics((runs[2]['pre_dir'] / 'output.log').read_text())
    batch1, epoch1 = epoch_metrics((runs[1]['pre_dir'] / 'output.log').read_text())
    assert len(batch2) == len(batch1) == 5 and len(epoch2) == len(epoch1) == 1
    assert abs(batch2[0] - batch1[0]) <= 0.03 * batch1[0]
    for a, b in zip(batch2, batch1):
        assert abs(a - b) <= 0.25 * b
    assert abs(epoch2[0] - epoch1[0]) <= 0.15 * epoch1[0]


@pytest.mark.slow
def test_meta_training_splits_the_epoch_among_ranks(runs):
    log = (runs[2]['meta_dir'] / 'output.log').read_text()
    assert 'Epoch 0 | Batch 1/2' in log and 'Batch 2/' not in log   # 4 episodes = 2 steps x 2 ranks
    assert 'Epoch 0 | Batch 3/4' in (runs[1]['meta_dir'] / 'output.log').read_text()


@pytest.mark.slow
def test_distributed_test_prints_the_single_process_numbers(runs, tiny_mini):
    args = ['--data_path', str(tiny_mini), '--model', 'Conv4', '--image_size', '32', '--n_query', '3',
            '--test_task_nums', '2', '--test_n_episode', '5', '--threads', '1',
            '--model_path', str(runs[1]['meta_dir'] / 'best_model.pdparams')]
    tmp = runs[2]['tmp']
    launch(tmp, 'test.py', *args, '--results_dir', str(tmp / 'res2'))
    launch(tmp, 'test.py', *args, '--results_dir', str(tmp / 'res1'), nproc=1)
    lines = [[line for line in (tmp / res / '5w1s' / 'mini_imagenet_Conv4_meta_frn.log').read_text().splitlines()
              if 'Test Acc' in line] for res in ('res2', 'res1')]
    assert len(lines[0]) == 3
    assert [line.split(' (')[0] for line in lines[0]] == [line.split(' (')[0] for line in lines[1]]


@pytest.mark.slow
@pytest.mark.parametrize('backbone, kind', [('Conv4', 'frn'), ('Conv4', 'proto'), ('ResNet12', 'pretrain')])
def test_shared_batches_train_as_one_process_in_float64(tmp_path, backbone, kind):
    """Two steps with the batch shared by two ranks give one process's losses and weights to 1e-10 in
    float64 (BatchNorm over the whole batch, the gradients' shares added), the same on both ranks."""
    script = str(REPO / 'tests' / '_shared_step.py')
    subprocess.run([sys.executable, script, backbone, kind, 'float64', str(tmp_path / 'one')], check=True,
                   cwd=tmp_path, capture_output=True, timeout=600)
    result = subprocess.run([sys.executable, '-m', 'paddle.distributed.launch', '--nproc_per_node', '2',
                             '--log_dir', str(tmp_path / 'log'), script, backbone, kind, 'float64',
                             str(tmp_path / 'two')], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:] + ''.join(
        p.read_text()[-2000:] for p in (tmp_path / 'log').glob('workerlog.*'))
    one, rank0, rank1 = (np.load(tmp_path / name) for name in ('one.0.npz', 'two.0.npz', 'two.1.npz'))
    assert sorted(one.files) == sorted(rank0.files) and len(one['losses']) == 2
    for name in one.files:
        assert np.array_equal(rank0[name], rank1[name]), name
        scale = max(np.abs(one[name]).max(), 1e-12)
        assert np.abs(one[name] - rank0[name]).max() <= 1e-10 * scale, name
    moved = [name for name in one.files if name != 'losses' and not np.array_equal(one[name], rank0[name])]
    assert moved  # the two runs really are different computations, not one result read twice


@pytest.mark.slow
def test_meta_training_with_shared_batches_logs_the_single_process_losses(tiny_mini, tmp_path):
    """meta_train.py --share_batches under the launcher: every rank takes every episode (4 steps, not 2),
    and the logged losses are those of one process: within float32 rounding for two steps (the second
    comes after an update through the shared gradients); from this random start float32's differences
    grow, to about 1e-4 by the fourth (the float64 test above holds the maths to 1e-10)."""
    logs = {}
    for nproc in (2, 1):
        tmp = tmp_path / f'p{nproc}'
        tmp.mkdir()
        launch(tmp, 'meta_train.py', '--data_path', str(tiny_mini), '--epoch', '1', '--milestones', '5',
               '--train_n_episode', '4', '--train_n_way', '5', '--n_shot', '1', '--lr', '0.1', *COMMON,
               '--share_batches', nproc=nproc)
        logs[nproc] = (tmp / 'checkpoints' / 'mini_imagenet' / 'Conv4_meta_frn_5way_1shot_metatrain' /
                       'output.log').read_text()
    assert '--share_batches: each of the 2 processes embeds 10 images of every episode' in logs[2]
    assert '--share_batches: one process, so nothing to share' in logs[1]
    batch2, epoch2 = epoch_metrics(logs[2])
    batch1, epoch1 = epoch_metrics(logs[1])
    assert len(batch2) == len(batch1) == 4
    assert np.allclose(batch2[:2], batch1[:2], rtol=1e-5, atol=0)
    assert np.allclose(batch2, batch1, rtol=1e-3, atol=0) and np.allclose(epoch2, epoch1, rtol=1e-3, atol=0)


@pytest.mark.slow
def test_an_episode_that_cannot_be_split_equally_is_refused_by_name(tiny_mini, tmp_path):
    cmd = [sys.executable, '-m', 'paddle.distributed.launch', '--nproc_per_node', '2', '--log_dir', str(tmp_path / 'log'),
           str(REPO / 'meta_train.py'), '--data_path', str(tiny_mini), '--epoch', '1', '--train_n_episode', '2',
           '--train_n_way', '5', '--n_shot', '2', *COMMON, '--share_batches']
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    text = result.stdout + result.stderr + ''.join(p.read_text() for p in (tmp_path / 'log').glob('workerlog.*'))
    assert result.returncode != 0
    assert 'the 25 images of a 5-way 2-shot 3-query episode cannot be split equally among 2 processes' in text
