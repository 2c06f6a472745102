"""Data-parallel runs under `python -m paddle.distributed.launch --nproc_per_node 2` on the CPU (gloo).

Real photos (the Tiny-ImageNet-32 subset), Conv-4 at 32 px, one epoch each of pretraining
and meta-training, then a distributed test compared with a single-process one.
"""
import os
import re
import subprocess
import sys

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
    """Not exact: each rank's BatchNorm normalises its half of the batch with its own statistics
    (there is no SyncBatchNorm on the CPU), so activations, and from the first step the weights,
    differ slightly. The first batch, with identical weights, differs by that alone."""
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
