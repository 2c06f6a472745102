"""pretrain.py -> meta_train.py -> test.py as subprocesses, on real photographs (Tiny-ImageNet-32 subset).

Sizes are shrunk to fit a CPU: Conv-4 at 32 px, a few batches and episodes per epoch.
"""
import json
import os
import re
import subprocess
import sys

import numpy as np
import paddle
import pytest

from conftest import REPO

SMALL = ['--model', 'Conv4', '--image_size', '32', '--val_n_episode', '3', '--n_query', '3', '--print_freq', '5',
         '--threads', '2']


def run(script, *args, cwd, check=True):
    result = subprocess.run([sys.executable, str(REPO / script), *args], cwd=cwd, capture_output=True, text=True,
                            timeout=600)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def pretrain_args(data, *extra):
    return ['--dataset', 'mini_imagenet', '--data_path', str(data), '--method', 'stl_frn', '--batch_size', '32',
            '--lr', '0.05', '--milestones', '1', *SMALL, *extra]


def weights(path):
    return {k: v.numpy() for k, v in paddle.load(str(path)).items()}


@pytest.fixture(scope='module')
def pipeline(tiny_mini, tmp_path_factory):
    """One pretrain (2 epochs) -> meta-train (1 epoch) -> test (2 tasks x 3 episodes) run in a scratch folder."""
    work = tmp_path_factory.mktemp('pipeline')
    out = {'work': work}
    out['pretrain'] = run('pretrain.py', *pretrain_args(tiny_mini, '--epoch', '2'), cwd=work)
    pre_dir = work / 'checkpoints' / 'mini_imagenet' / 'Conv4_stl_frn_pretrain'
    out['meta'] = run('meta_train.py', '--dataset', 'mini_imagenet', '--data_path', str(tiny_mini),
                      '--method', 'meta_frn', '--lr', '1e-3', '--epoch', '1', '--train_n_episode', '3',
                      '--milestones', '1', '--train_n_way', '5', '--val_n_way', '5', '--n_shot', '2', *SMALL,
                      '--pretrain_path', str(pre_dir / 'best_model.pdparams'), cwd=work)
    meta_dir = work / 'checkpoints' / 'mini_imagenet' / 'Conv4_meta_frn_5way_2shot_metatrain'
    test_args = ['--dataset', 'mini_imagenet', '--data_path', str(tiny_mini), '--model', 'Conv4', '--method',
                 'meta_frn', '--image_size', '32', '--n_shot', '1', '--n_query', '3', '--model_path',
                 str(meta_dir / 'best_model.pdparams'), '--test_task_nums', '2', '--test_n_episode', '3']
    out['test'] = run('test.py', *test_args, cwd=work)
    out['test_again'] = run('test.py', *test_args, cwd=work)
    out.update(pre_dir=pre_dir, meta_dir=meta_dir)
    return out


@pytest.mark.slow
def test_pretraining_writes_the_run_folder_and_the_seed_log_lines(pipeline):
    files = sorted(os.listdir(pipeline['pre_dir']))
    assert files == ['0.pdopt', '0.pdparams', '1.pdopt', '1.pdparams', 'best_model.pdparams', 'curves.png',
                     'last_model.pdopt', 'last_model.pdparams', 'metrics.jsonl', 'output.log', 'preprocess.json']
    log = (pipeline['pre_dir'] / 'output.log').read_text()
    assert log.startswith('==== ') and 'args: ' in log and f'paddle {paddle.__version__} | device cpu' in log
    assert 'warning' not in log  # the class count comes from the data when --num_classes is not given
    epoch0 = log[log.index('Epoch 0 | lr'):log.index('Epoch 1 | lr')]
    lines = [line for line in epoch0.splitlines() if not line.startswith('Epoch 0 | lr')]
    timings = r' \| avg_reader_cost: \d+\.\d{5} sec \| avg_batch_cost: \d+\.\d{5} sec \| avg_ips: \d+\.\d\d images/sec'
    patterns = [r'Epoch 0 \| Batch 0/10 \| Loss \d+\.\d{6}' + timings, r'Epoch 0 \| Batch 5/10 \| Loss \d+\.\d{6}' + timings,
                r'best model! save\.\.\.',
                r'val loss is \d+\.\d\d, val acc is \d+\.\d\d \(% on 5-way 1-shot val episodes, chance 20\.00\)',
                r'model best acc is \d+\.\d\d, best acc epoch is 0', r'This epoch use \d+\.\d\d minutes',
                r'train loss is \d+\.\d\d, train acc is \d+\.\d\d \(% over all 8 training classes, chance 12\.50\)']
    assert len(lines) == len(patterns)
    for line, pattern in zip(lines, patterns):
        assert re.fullmatch(pattern, line), (line, pattern)
    assert 'Epoch 1 | lr 0.005' in log  # MultiStepDecay at milestone 1, stepped once per epoch
    assert log in pipeline['pretrain'].stdout  # the console carries the same lines


@pytest.mark.slow
def test_pretrained_model_has_the_class_matrices_and_meta_training_drops_them(pipeline):
    pre = weights(pipeline['pre_dir'] / 'best_model.pdparams')
    assert pre['cat_mat'].shape == (8, 4, 64)  # 8 classes, 2x2 positions at 32 px, 64 channels
    np.testing.assert_array_equal(pre['r'], [0, 0])  # frozen while pretraining
    meta_log = (pipeline['meta_dir'] / 'output.log').read_text()
    assert 'dropped cat_mat' in meta_log
    meta = weights(pipeline['meta_dir'] / 'last_model.pdparams')
    assert 'cat_mat' not in meta and not np.array_equal(meta['r'], [0, 0])  # r trains now


@pytest.mark.slow
def test_meta_training_folder_and_log(pipeline):
    files = sorted(os.listdir(pipeline['meta_dir']))
    assert {'best_model.pdparams', 'last_model.pdparams', 'last_model.pdopt', '0.pdparams', 'output.log'} <= set(files)
    log = (pipeline['meta_dir'] / 'output.log').read_text()
    assert 'Epoch 0 | Batch 0/3 | Loss' in log and re.search(r'val loss is \d+\.\d\d, val acc is \d+\.\d\d', log)


@pytest.mark.slow
def test_test_prints_each_task_and_writes_json_results(pipeline):
    out = pipeline['test'].stdout
    task_lines = re.findall(r'^3 Test Acc = (\d+\.\d\d)% \+- (\d+\.\d\d)%$', out, flags=re.M)
    assert len(task_lines) == 2
    result_dir = pipeline['work'] / 'results' / '5w1s'
    summary = json.loads((result_dir / 'mini_imagenet_Conv4_meta_frn.json').read_text())
    assert (result_dir / 'mini_imagenet_Conv4_meta_frn.log').is_file()
    assert [round(t['acc'], 2) for t in summary['tasks']] == [float(a) for a, _ in task_lines]
    accs = summary['tasks']
    assert summary['n_way'] == 5 and summary['n_shot'] == 1 and summary['test_n_episode'] == 3
    assert summary['checkpoint'].endswith('best_model.pdparams')
    assert abs(summary['acc'] - np.mean([t['acc'] for t in accs])) < 1e-9
    # every accuracy is a multiple of 100 / 15 queries
    assert all(abs(t['acc'] * 3 * 15 / 100 - round(t['acc'] * 3 * 15 / 100)) < 1e-6 for t in accs)


@pytest.mark.slow
def test_test_results_are_fixed_by_the_seed(pipeline):
    strip = lambda s: [l for l in s.splitlines() if 'Test Acc' in l and ' s)' not in l]  # noqa: E731
    assert strip(pipeline['test'].stdout) == strip(pipeline['test_again'].stdout)


def test_ci_is_196_population_std_over_root_n():
    from utils import mean_confidence_interval
    acc, ci = mean_confidence_interval([60.0, 80.0, 70.0, 90.0])
    assert acc == 75.0 and abs(ci - 1.96 * np.std([60, 80, 70, 90]) / 2) < 1e-12


# ---- bad input: one line, before any work ----

def one_line_error(result, *fragments):
    assert result.returncode != 0
    assert 'Traceback' not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


@pytest.mark.slow
def test_missing_data_path_is_a_one_line_error(tmp_path):
    one_line_error(run('pretrain.py', '--data_path', str(tmp_path / 'nowhere'), cwd=tmp_path, check=False),
                   '--data_path', 'does not exist')
    one_line_error(run('pretrain.py', cwd=tmp_path, check=False), '--data_path')


@pytest.mark.slow
def test_unknown_model_is_a_one_line_error(tiny_mini, tmp_path):
    one_line_error(run('test.py', '--data_path', str(tiny_mini), '--model', 'ResNet50', '--model_path', 'x',
                       cwd=tmp_path, check=False), 'ResNet50')


@pytest.mark.slow
def test_too_many_shots_for_the_smallest_class_is_a_one_line_error(tiny_mini, tmp_path, pipeline):
    one_line_error(run('test.py', '--data_path', str(tiny_mini), '--model', 'Conv4', '--image_size', '32',
                       '--n_shot', '30', '--n_query', '15', '--model_path',
                       str(pipeline['meta_dir'] / 'best_model.pdparams'), cwd=tmp_path, check=False),
                   'lower --n_shot or --n_query')


@pytest.mark.slow
def test_incompatible_checkpoint_is_a_one_line_error(tiny_mini, tmp_path, pipeline):
    result = run('test.py', '--data_path', str(tiny_mini), '--model', 'ResNet12', '--image_size', '32',
                 '--model_path', str(pipeline['meta_dir'] / 'best_model.pdparams'), cwd=tmp_path, check=False)
    one_line_error(result, 'does not match this model', '--model')
    garbage = tmp_path / 'garbage.pdparams'
    garbage.write_bytes(b'not a checkpoint')
    result = run('test.py', '--data_path', str(tiny_mini), '--model', 'Conv4', '--model_path', str(garbage),
                 cwd=tmp_path, check=False)
    one_line_error(result, 'cannot read checkpoint')


@pytest.mark.slow
def test_gpu_flag_on_a_cpu_build_warns_once_and_runs_on_cpu(tiny_mini, tmp_path, pipeline):
    result = run('test.py', '--data_path', str(tiny_mini), '--model', 'Conv4', '--image_size', '32', '--gpu',
                 '--n_query', '3', '--test_task_nums', '1', '--test_n_episode', '2', '--model_path',
                 str(pipeline['meta_dir'] / 'best_model.pdparams'), '--results_dir', str(tmp_path), cwd=tmp_path)
    if paddle.device.is_compiled_with_cuda():
        pytest.skip('this PaddlePaddle build has CUDA')
    assert result.stderr.count('--gpu was given, but this PaddlePaddle build has no CUDA') == 1
    assert 'device cpu' in result.stdout and '2 Test Acc' in result.stdout


def test_pretrain_defaults_are_the_documented_ones(tiny_mini):
    import pretrain
    args = pretrain.parse_args(['--data_path', str(tiny_mini)])
    assert (args.batch_size, args.lr, args.wd, args.gamma, args.milestones, args.epoch) == (128, 0.05, 5e-4, 0.1,
                                                                                           [80, 120], 150)
    assert (args.dataset, args.model, args.val, args.train_n_way, args.val_n_episode, args.val_n_way) == (
        'mini_imagenet', 'ResNet12', 'meta', 20, 600, 5)
    assert (args.n_shot, args.n_query, args.num_classes, args.save_freq, args.seed, args.image_size) == (
        1, 15, None, 50, 0, 84)


@pytest.mark.parametrize('script', sorted(str(p.relative_to(REPO)) for p in (REPO / 'scripts').glob('*/run_*.sh')))
def test_run_scripts_call_the_cli_with_flags_it_accepts(script, tiny_mini, tmp_path):
    """Every python command of scripts/*/run_*.sh parses. The script runs in bash with `python` replaced by a
    recorder, so its variables and arrays expand as for a user (DATA = a real folder; weights = placeholders)."""
    import importlib
    bin_dir, log = tmp_path / 'bin', tmp_path / 'argv.log'
    bin_dir.mkdir()
    # one write per command, so the commands of scripts that start several at once stay whole
    (bin_dir / 'python').write_text('#!/bin/sh\nline=""; for a in "$@"; do line="$line$a$(printf \'\\037\')"; done\n'
                                    'printf "%s\\n" "$line" >> "$ARGV_LOG"\n')
    (bin_dir / 'python').chmod(0o755)
    env = dict(os.environ, PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}', ARGV_LOG=str(log))
    subprocess.run(['bash', str(REPO / script), str(tiny_mini)], cwd=tmp_path, env=env,
                   check=True, capture_output=True, text=True)
    commands = [line.split('\037')[:-1] for line in log.read_text().splitlines()]
    assert commands
    (tmp_path / 'w.pdparams').write_bytes(b'')
    for words in commands:
        words = [str(tmp_path / 'w.pdparams') if w.endswith('.pdparams') else w for w in words]
        if words[:2] == ['-m', 'paddle.distributed.launch']:  # the launcher's own options, then the script
            script_at = next(i for i, w in enumerate(words) if w.endswith('.py'))
            assert set(words[2:script_at:2]) <= {'--nproc_per_node', '--log_dir'}, words[:script_at]
            words = words[script_at:]
        module = importlib.import_module(os.path.basename(words[0])[:-3])
        module.parse_args(words[1:])


def test_prototype_baseline_scores_episodes_by_the_nearest_class_mean():
    from methods.FRN import FRN
    from methods.protonet import PrototypeClassifier
    paddle.seed(0)
    frn = FRN(backbone='Conv4', image_size=32)
    frn.eval()
    x = paddle.randn([5 * 2 + 5 * 3, 3, 32, 32])
    scores = PrototypeClassifier(frn).get_neg_l2_dist(x, 5, 2, 3).numpy()
    emb = frn.get_feature_map(x).numpy().mean(1)
    protos = emb[:10].reshape(5, 2, -1).mean(1)
    expected = -((emb[10:, None, :] - protos[None]) ** 2).sum(-1)
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_test_py_scores_with_the_nearest_prototype_when_asked(pipeline, tiny_mini, tmp_path):
    result = run('test.py', '--data_path', str(tiny_mini), '--model', 'Conv4', '--image_size', '32', '--n_query', '3',
                 '--test_task_nums', '1', '--test_n_episode', '3', '--classifier', 'proto', '--model_path',
                 str(pipeline['meta_dir'] / 'best_model.pdparams'), '--results_dir', str(tmp_path), cwd=tmp_path)
    assert 'nearest prototype' in result.stdout
    summary = json.loads((tmp_path / '5w1s' / 'mini_imagenet_Conv4_meta_frn_proto.json').read_text())
    assert summary['classifier'] == 'proto' and len(summary['tasks']) == 1


@pytest.mark.slow
@pytest.mark.parametrize('setting, expected', [({}, 'auto'), ({'FRN_MKL_AVX2': '0'}, None),
                                               ({'MKL_DEBUG_CPU_TYPE': '2'}, '2')])
def test_mkl_avx2_hint_is_set_only_on_amd_avx2_cpus_and_never_over_the_user(setting, expected):
    from runtime.process import amd_cpu_with_avx2
    env = {k: v for k, v in os.environ.items() if k not in ('MKL_DEBUG_CPU_TYPE', 'FRN_MKL_AVX2')}
    env.update(setting)
    probe = ('import os, cli, runtime.process as p; imported = os.environ.get("MKL_DEBUG_CPU_TYPE"); p.setup_process();'
             ' print(imported, os.environ.get("MKL_DEBUG_CPU_TYPE"), "MKL" in p.mkl_note())')
    out = subprocess.run([sys.executable, '-c', probe], cwd=REPO, env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    if expected == 'auto':
        expected = '5' if amd_cpu_with_avx2() else None
    assert out[0] == str(setting.get('MKL_DEBUG_CPU_TYPE'))  # importing sets nothing: setup_process() does
    assert out[1] == str(expected)
    assert out[2] == str(expected is not None)  # the log header says when MKL was steered


FAULTS_OF_A_REUSED_BUFFER = '''
import resource
from runtime.process import setup_process
kept = setup_process().malloc_kept
import paddle
paddle.ones([25_000_000])  # 100 MB, freed at once
faults = []
for _ in range(3):  # the fewest faults of three later buffers: one may land before the first is back in the heap
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    paddle.ones([25_000_000])
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(kept, min(faults))
'''


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='mallopt is glibc on Linux')
@pytest.mark.parametrize('setting, kept', [(None, True), ('0', False)])
def test_freed_memory_is_reused_without_page_faults_unless_turned_off(setting, kept):
    """setup_process keeps freed memory in the heap: a later 100 MB buffer reuses the first one's pages."""
    env = {k: v for k, v in os.environ.items() if k != 'FRN_MALLOC_KEEP'}
    if setting is not None:
        env['FRN_MALLOC_KEEP'] = setting
    out = subprocess.run([sys.executable, '-c', FAULTS_OF_A_REUSED_BUFFER], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    applied, faults = out.stdout.split()
    assert applied == str(kept), out.stderr
    pages = 100e6 / 4096
    assert (int(faults) < 0.05 * pages) if kept else (int(faults) > 0.5 * pages), faults
