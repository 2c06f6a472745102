"""Whole epochs of a real recipe, this code against the unmodified official trainer, on the same photos.

    python benchmarks/bench_whole_run.py --official ../official --torch_python PYTHON_WITH_TORCH_AND_TORCHVISION \
        --data CARS_FOLDER [--epochs 1] [--settings "2 0" "1 1" ...] [--quick]

The recipe is the cropped-CUB Conv-4 FRN one (20-way 5-shot 15-query pass epochs, SGD lr 0.1, validation on
1,000 episodes of 5-way 5-shot 16-query) on a class-folder dataset (Stanford Cars: ../shared/data/cars_fewshot.tar).
Official: its experiments/CUB_fewshot_cropped/FRN/Conv-4/train.py in a temporary copy of the repository
whose config.yml points at the data (the documented way to use it), run through a wrapper that makes
`.cuda()` a no-op and skips the final 10,000-episode test; its DataLoaders use 3 worker processes (fixed in
datasets/dataloaders.py), torch all the cores. Ours: meta_train.py with scripts/cars/frn_conv4.sh's flags and
--epoch/--milestones shortened, at the given --threads and --num_workers (and, with a third number, that many processes sharing
each episode under paddle.distributed.launch with --share_batches). Reported: wall seconds of the
whole process and of its training and validation, images per second of training. --quick checks the harness
on a subset of the data (20 training classes of 20 images, 5 validation and test classes of 21: one episode
per epoch) with 5 validation episodes and one setting of ours; its numbers measure nothing.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# the wrapper: the official train.py as it is; only .cuda() is made a no-op, the phases are timed, the test skipped
OFFICIAL_WRAPPER = r'''
import json, runpy, sys, time, torch
torch.Tensor.cuda = lambda self, *a, **k: self
torch.nn.Module.cuda = lambda self, *a, **k: self
torch.cuda.set_device = lambda *a, **k: None
sys.path.insert(0, '../../../../')
from trainers import trainer, eval as official_eval
phases = {'validation': 0.0}
meta_test = official_eval.meta_test
def timed_meta_test(*args, **kwargs):
    start = time.perf_counter()
    try:
        return meta_test(*args, **kwargs)
    finally:
        phases['validation'] += time.perf_counter() - start
trainer.meta_test = timed_meta_test
trainer.Train_Manager.evaluate = lambda self, model: None
start = time.perf_counter()
sys.argv = ['train.py'] + sys.argv[1:]
runpy.run_path('train.py', run_name='__main__')
phases['total'] = time.perf_counter() - start
print('@@phases ' + json.dumps(phases), flush=True)
'''

OFFICIAL_FLAGS = ['--opt', 'sgd', '--lr', '1e-1', '--gamma', '1e-1', '--stage', '1', '--weight_decay', '5e-4',
                  '--nesterov', '--train_way', '20', '--train_shot', '5', '--train_transform_type', '0',
                  '--test_transform_type', '1', '--test_shot', '1', '5']


def official_run(official, torch_python, data, epochs, val_episodes, work):
    copy = os.path.join(work, 'FRN')
    shutil.copytree(official, copy, ignore=shutil.ignore_patterns('.git'))
    root = os.path.join(work, 'data')
    os.makedirs(root)
    os.symlink(os.path.abspath(data), os.path.join(root, 'CUB_fewshot_cropped'))
    with open(os.path.join(copy, 'config.yml'), 'w') as f:
        f.write(f'data_path: {root}\n')
    folder = os.path.join(copy, 'experiments', 'CUB_fewshot_cropped', 'FRN', 'Conv-4')
    start = time.perf_counter()
    result = subprocess.run([torch_python, '-c', OFFICIAL_WRAPPER, *OFFICIAL_FLAGS, '--epoch', str(epochs),
                             '--val_epoch', str(epochs), '--val_trial', str(val_episodes)], cwd=folder, capture_output=True, text=True)
    wall = time.perf_counter() - start
    line = next((l for l in result.stdout.splitlines() if l.startswith('@@phases ')), None)
    if result.returncode or not line:
        return {'error': (result.stderr.strip().splitlines() or ['no output'])[-1]}
    phases = json.loads(line.split(' ', 1)[1])
    return {'wall': wall, 'validation': phases['validation'], 'training': phases['total'] - phases['validation']}


def our_run(data, epochs, val_episodes, threads, workers, work, processes=1):
    flags = ['--dataset', 'cars', '--data_path', data, '--model', 'Conv4', '--image_size', '84',
             '--train_transform_type', '0', '--eval_resize', 'square', '--method', 'meta_frn', '--episodes', 'pass',
             '--train_n_way', '20', '--n_shot', '5', '--n_query', '15', '--opt', 'sgd', '--lr', '1e-1', '--gamma',
             '1e-1', '--epoch', str(epochs), '--milestones', str(epochs), '--wd', '5e-4', '--val_freq', str(epochs),
             '--val_n_way', '5', '--val_n_query', '16', '--val_n_episode', str(val_episodes), '--checkpoint_dir',
             os.path.join(work, 'checkpoints'), '--threads', str(threads), '--num_workers', str(workers)]
    command = [sys.executable, os.path.join(REPO, 'meta_train.py'), *flags]
    if processes > 1:  # every episode shared by the processes (--share_batches), as docs/performance.md says
        command = [sys.executable, '-m', 'paddle.distributed.launch', '--nproc_per_node', str(processes),
                   '--log_dir', os.path.join(work, 'launch_logs'), *command[1:], '--share_batches']
    start = time.perf_counter()
    result = subprocess.run(command, cwd=work, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode:
        return {'error': (result.stderr.strip().splitlines() or ['no output'])[-1]}
    run_dir = os.path.join(work, 'checkpoints', 'cars', 'Conv4_meta_frn_20way_5shot_metatrain')
    with open(os.path.join(run_dir, 'metrics.jsonl')) as f:
        records = [json.loads(line) for line in f]
    epoch_minutes = sum(r['minutes'] for r in records if r['event'] == 'epoch_end')
    validation = sum(r.get('val_seconds') or 0 for r in records if r['event'] == 'epoch_end')
    return {'wall': wall, 'training': epoch_minutes * 60 - validation, 'validation': validation}


def images(data, epochs):
    """Training images of `epochs` passes of 20-way 5-shot 15-query episodes, as the official sampler draws them."""
    sys.path.insert(0, REPO)
    from data.dataset import PassEpisodeSampler
    train = os.path.join(data, 'train')
    sampler = PassEpisodeSampler(20, 5, 15, [len(os.listdir(os.path.join(train, c))) for c in sorted(os.listdir(train))])
    total = 0
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        total += len(sampler) * 400
    return total


def quick_subset(data, work):
    """--quick: a class-folder copy of the first classes and images of `data`, as symbolic links."""
    root = os.path.join(work, 'quick_data')
    for split, classes, per_class in (('train', 20, 20), ('val', 5, 21), ('test', 5, 21)):
        for name in sorted(os.listdir(os.path.join(data, split)))[:classes]:
            os.makedirs(os.path.join(root, split, name))
            for image in sorted(os.listdir(os.path.join(data, split, name)))[:per_class]:
                os.symlink(os.path.abspath(os.path.join(data, split, name, image)),
                           os.path.join(root, split, name, image))
    return root


def plan(options):
    """(processes, epochs each, validation episodes each): what a run of these options computes."""
    return 1 + (1 if options.quick else len(options.settings)), options.epochs, 5 if options.quick else 1000


def run(options, log=print):
    """{'epochs', 'images', 'rows'}: the official trainer's run, then ours at each setting."""
    settings = options.settings[:1] if options.quick else options.settings
    rows = []
    with tempfile.TemporaryDirectory() as work:
        data = quick_subset(options.data, work) if options.quick else options.data
        val_episodes = plan(options)[2]
        n_images = images(data, options.epochs)
        official = official_run(options.official, options.torch_python, data, options.epochs, val_episodes,
                                os.path.join(work, 'o'))
        rows.append({'who': 'official (torch threads: all cores, 3 loader workers)', **official})
        log(format_row(rows[-1], n_images, rows[0].get('wall')))
        for setting in settings:
            threads, workers, processes = (list(map(int, setting.split())) + [1])[:3]
            folder = os.path.join(work, f'ours_{threads}_{workers}_{processes}')
            os.makedirs(folder)
            who = f'ours (--threads {threads} --num_workers {workers})' if processes == 1 else \
                f'ours, {processes} processes sharing each episode (--threads {threads} --num_workers {workers} ' \
                f'--share_batches)'
            rows.append({'who': who, **our_run(data, options.epochs, val_episodes, threads, workers, folder,
                                               processes)})
            log(format_row(rows[-1], n_images, rows[0].get('wall')))
    return {'epochs': options.epochs, 'images': n_images, 'val_episodes': val_episodes, 'rows': rows}


def format_row(r, n_images, base):
    if 'error' in r:
        return f'| {r["who"]} | failed: {r["error"]} | | | | |'
    ratio = f'{base / r["wall"]:.2f}x' if base else '-'
    return (f'| {r["who"]} | {r["wall"]:.0f} | {r["training"]:.0f} | {n_images / r["training"]:.0f} | '
            f'{r["validation"]:.0f} | {ratio} |')


def markdown(result):
    base = result['rows'][0].get('wall')
    return '\n'.join(['| run | wall (s) | training (s) | training images/s | validation (s) | official / this (wall) |',
                      '|---|---|---|---|---|---|'] + [format_row(r, result['images'], base) for r in result['rows']])


def parser():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--official', required=True, help='a copy of the official FRN repository (Tsingularity/FRN)')
    p.add_argument('--torch_python', required=True, help='a Python with torch and torchvision')
    p.add_argument('--data', required=True, help='class-folder dataset (train/, val/, test/)')
    p.add_argument('--epochs', type=int, default=1)
    p.add_argument('--settings', nargs='+', default=['2 0', '1 0', '2 2', '1 0 2'],
                   help='"threads num_workers" pairs for our runs; a third number N runs N processes under '
                        'paddle.distributed.launch with --share_batches')
    p.add_argument('--quick', action='store_true', help='check the harness on a subset of the data (no measurement)')
    p.add_argument('--json', default=None)
    return p


def main():
    args = parser().parse_args()
    result = run(args, log=lambda line: None)
    print(markdown(result))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=1)


if __name__ == '__main__':
    main()
