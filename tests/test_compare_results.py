"""test.py's per-episode accuracies and fingerprints, and tools/compare_results.py on real result files.

Two committed checkpoints (FRN and ProtoNet, Conv-4 at 84 px, trained on Tiny-ImageNet photos) are tested on the
same 2 x 20 seeded 5-way 5-shot episodes of a real photo subset; then once more with another seed and with another
shot, which the comparison must refuse.
"""
import csv
import hashlib
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, load_tool

RUNS = REPO / 'results' / 'tinyimagenet32_84'
CHECKPOINT = {method: RUNS / f'Conv4_{method}_20way_5shot_metatrain' / 'best_model.pdparams'
              for method in ('meta_frn', 'meta_proto')}
# the fields test.py wrote before the per-episode ones were added: all are kept
EARLIER_FIELDS = {'acc', 'ci95', 'tasks', 'checkpoint', 'dataset', 'data_path', 'model', 'method', 'n_way', 'n_shot',
                  'n_query', 'test_task_nums', 'test_n_episode', 'image_size', 'eval_resize', 'train_transform_type',
                  'seed', 'feature_cache', 'classifier', 'preprocess', 'paddle', 'seconds'}


def run(*args, cwd, check=True):
    result = subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope='module')
def results(tiny_mini, tmp_path_factory):
    """{name: (path, JSON)} of test.py runs: 'frn' and 'proto' on the same episodes, 'seed1' and 'shot1' not.
    test.py runs in this process (its command line: test_distributed_test_writes_the_single_process_episodes)."""
    import test as test_script
    work = tmp_path_factory.mktemp('compare')
    out = {}
    for name, method, extra in (('frn', 'meta_frn', []), ('proto', 'meta_proto', []),
                                ('seed1', 'meta_proto', ['--seed', '1']), ('shot1', 'meta_proto', ['--n_shot', '1'])):
        test_script.main([str(a) for a in (
            '--data_path', tiny_mini, '--model', 'Conv4', '--image_size', '84', '--method', method,
            '--model_path', CHECKPOINT[method], '--n_shot', '5', '--n_query', '15', '--test_task_nums', '2',
            '--test_n_episode', '20', '--threads', '2', '--results_dir', work / name, *extra)])
        path = next((work / name).glob('*/*.json'))
        out[name] = (path, json.loads(path.read_text()))
    return out


def compare(a, b, *extra, cwd):
    return run(REPO / 'tools' / 'compare_results.py', a, b, *extra, cwd=cwd, check=False)


@pytest.mark.slow
def test_result_holds_every_episode_accuracy_in_task_order_and_keeps_its_fields(results):
    _, result = results['frn']
    accs = result['episode_accs']
    assert len(accs) == 2 * 20 and EARLIER_FIELDS < set(result)
    assert result['acc'] == pytest.approx(np.mean(accs), abs=1e-12)
    for task, summary in enumerate(result['tasks']):
        assert summary['acc'] == pytest.approx(np.mean(accs[20 * task:20 * (task + 1)]), abs=1e-12)
    # each is a share of the 5 x 15 queries of its episode
    assert all(abs(a * 75 / 100 - round(a * 75 / 100)) < 1e-4 for a in accs)


@pytest.mark.slow
def test_split_fingerprint_is_the_sha256_of_relative_paths_and_labels(results, tiny_mini, tmp_path):
    with open(tiny_mini / 'test.csv', newline='') as f:
        rows = list(csv.reader(f))[1:]
    classes = sorted({label for _, label in rows})
    lines = ''.join(f'images/{name}\t{classes.index(label)}\n' for name, label in rows)
    assert results['frn'][1]['split_sha256'] == hashlib.sha256(lines.encode()).hexdigest()
    assert results['proto'][1]['split_sha256'] == results['frn'][1]['split_sha256']
    from data.filelist import read_split
    moved = shutil.copytree(tiny_mini, tmp_path / 'elsewhere')  # the same data in another place
    assert read_split(moved, 'test').fingerprint(moved) == results['frn'][1]['split_sha256']
    (moved / 'test.csv').write_text('filename,label\n' + ''.join(f'{n},{lab}\n' for n, lab in rows[1:]))
    assert read_split(moved, 'test').fingerprint(moved) != results['frn'][1]['split_sha256']


@pytest.mark.slow
def test_episodes_fingerprint_is_that_of_the_sampler_episodes_of_each_task(results, tiny_mini):
    import cli
    import test as test_script
    from data.dataset import episodes_fingerprint
    from data.loaders import episode_loader, read_splits
    data = cli.testing_config(test_script.parse_args(['--data_path', str(tiny_mini), '--model_path',
                                                   str(CHECKPOINT['meta_frn']), '--n_shot', '5',
                                                   '--test_n_episode', '20'])).data
    (split,) = read_splits(data, 'test')
    sampler = episode_loader(data, split, 5, 20).batch_sampler
    tasks = []
    for task in range(2):
        sampler.set_epoch(task)
        tasks.append([sampler.episode(i) for i in range(20)])
    assert results['frn'][1]['episodes_sha256'] == episodes_fingerprint(tasks, 5)
    assert results['proto'][1]['episodes_sha256'] == results['frn'][1]['episodes_sha256']
    assert results['seed1'][1]['episodes_sha256'] != results['frn'][1]['episodes_sha256']
    # it sees the support/query boundary, the task boundaries and every position
    assert episodes_fingerprint(tasks, 4) != episodes_fingerprint(tasks, 5)
    assert episodes_fingerprint([tasks[0] + tasks[1]], 5) != episodes_fingerprint(tasks, 5)
    (c, positions, seed), *rest = tasks[0][0]
    changed = [[[(c, positions[:-1] + (positions[-1] + 1,), seed), *rest]] + tasks[0][1:], tasks[1]]
    assert episodes_fingerprint(changed, 5) != episodes_fingerprint(tasks, 5)


@pytest.mark.slow
def test_compare_gives_the_paired_numbers_of_a_direct_computation(results, tmp_path, capsys):
    (path_a, a), (path_b, b) = results['frn'], results['proto']
    capsys.readouterr()
    load_tool('compare_results').main([str(path_a), str(path_b), '--json', str(tmp_path / 'cmp.json')])
    out = capsys.readouterr()
    got = json.loads((tmp_path / 'cmp.json').read_text())
    diff = np.array(a['episode_accs']) - np.array(b['episode_accs'])
    assert got['episodes'] == 40 and (got['n_shot'], got['seed']) == (5, 0)
    assert got['difference'] == pytest.approx(diff.mean(), abs=1e-12)
    assert got['difference_ci95'] == pytest.approx(1.96 * diff.std() / np.sqrt(40), abs=1e-12)
    assert got['a']['acc'] == pytest.approx(a['acc'], abs=1e-12) and got['a']['ci95'] == pytest.approx(a['ci95'])
    assert got['b']['acc'] == pytest.approx(b['acc'], abs=1e-12) and got['b']['ci95'] == pytest.approx(b['ci95'])
    shares = [np.mean(diff > 0), np.mean(diff == 0), np.mean(diff < 0)]
    assert [got['a_better'], got['equal'], got['a_worse']] == pytest.approx(shares) and sum(shares) == 1
    assert got['a']['method'] == 'meta_frn' and got['b']['method'] == 'meta_proto'
    assert f'A - B  {diff.mean():+.2f} +- {1.96 * diff.std() / np.sqrt(40):.2f}% (paired' in out.out
    assert f'A is better on {100 * shares[0]:.1f}% of the episodes' in out.out
    assert f'{a["acc"]:6.2f} +- {a["ci95"]:.2f}%' in out.out
    same = compare(path_a, path_a, '--json', tmp_path / 'same.json', cwd=tmp_path)  # a model against itself
    got = json.loads((tmp_path / 'same.json').read_text())
    assert same.returncode == 0 and (got['difference'], got['difference_ci95'], got['equal']) == (0, 0, 1)


@pytest.mark.slow
@pytest.mark.parametrize('other, names', [('seed1', '--seed: 0 vs 1'), ('shot1', '--n_shot: 5 vs 1')])
def test_compare_refuses_results_of_other_episodes_naming_what_differs(results, other, names, tmp_path):
    out = compare(results['frn'][0], results[other][0], '--json', tmp_path / 'no.json', cwd=tmp_path)
    assert out.returncode == 2 and out.stdout == '' and not (tmp_path / 'no.json').exists()
    assert out.stderr.count('\n') == 1 and out.stderr.startswith('error: the two results were not measured on the same')
    assert f'({names}); test both models' in out.stderr  # the cause, not the fingerprint that follows from it


def test_compare_refuses_a_result_without_per_episode_accuracies(capsys):
    older = RUNS / '5w5s' / 'mini_imagenet_Conv4_meta_frn.json'  # committed, written before the field existed
    with pytest.raises(SystemExit) as stop:
        load_tool('compare_results').main([str(older), str(older)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count('\n') == 1
    assert err.startswith(f'error: {older} has no per-episode accuracies')


@pytest.mark.slow
def test_distributed_test_writes_the_single_process_episodes(results, tiny_mini, tmp_path):
    """Two processes each evaluate their share; the JSON holds the episodes in the order of one process."""
    run('-m', 'paddle.distributed.launch', '--nproc_per_node', '2', '--log_dir', tmp_path / 'logs', REPO / 'test.py',
        '--data_path', tiny_mini, '--model', 'Conv4', '--image_size', '84', '--method', 'meta_frn',
        '--model_path', CHECKPOINT['meta_frn'], '--n_shot', '5', '--n_query', '15', '--test_task_nums', '2',
        '--test_n_episode', '20', '--threads', '1', '--results_dir', tmp_path / 'res', cwd=tmp_path)
    two = json.loads(next((tmp_path / 'res').glob('*/*.json')).read_text())
    one = results['frn'][1]
    assert two['episodes_sha256'] == one['episodes_sha256'] and two['split_sha256'] == one['split_sha256']
    assert two['episode_accs'] == pytest.approx(one['episode_accs'], abs=1e-9)
