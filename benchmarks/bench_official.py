"""This code's training steps and validation against the unmodified official PyTorch FRN code, at the recipes' shapes.

    python benchmarks/bench_official.py --official ../official --torch_python ../venv-torch/bin/python \
        [--val_data CARS_FOLDER --val_torch_python PYTHON_WITH_TORCHVISION] [--quick]

The baseline is the official repository itself (github.com/Tsingularity/FRN at 64e43f3, a copy outside this
one): its models (models/FRN.py, models/Proto.py), its optimizer (trainers/trainer.get_opt: SGD, momentum 0.9,
Nesterov, weight decay 5e-4) and its training loops (trainers/frn_train.default_train and pre_train,
trainers/proto_train.default_train), driven with a batch source that hands out one batch per step on demand;
`.cuda()` is made a no-op so that it runs on the CPU, and nothing else is changed. Ours is the trainer's step
(methods/steps.py through engine/trainer.build_optimizer). Both get the same random 84 px images, so data
loading is left out (bench_data.py measures it; the validation rows include it).

Steps: each implementation runs in its own process, after one warm-up step; the two take steps in turn
(light tasks keep both processes and alternate step by step; ResNet-12's 400-image episodes, which need
most of the machine's memory each, alternate whole processes). Reported per row: median seconds per step
(min-max), images per second, peak RSS, and official / ours (above 1: ours is faster).
Validation: one validation as the trainers run it, on a real class-folder split: the official
trainers/eval.meta_test (5-way, 16 queries, its DataLoader with 3 workers) against ours (engine/evaluation
with the feature cache, as engine/trainer validates).
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
from benchmarks.bench_train_step import MARK, median, peak_rss_mb, reply  # noqa: E402  (no paddle or torch there)

IMAGE = 84
# (name, backbone, kind, shape, threads): kind 'frn' or 'proto' episodes (way, shot, query), 'pretrain' (batch, classes)
TASKS = [
    ('Conv-4 FRN 20-way 5-shot 15-query', 'Conv4', 'frn', (20, 5, 15), 2),
    ('Conv-4 FRN 30-way 1-shot 15-query', 'Conv4', 'frn', (30, 1, 15), 2),
    ('Conv-4 ProtoNet 20-way 5-shot 15-query', 'Conv4', 'proto', (20, 5, 15), 2),
    ('Conv-4 ProtoNet 30-way 1-shot 15-query', 'Conv4', 'proto', (30, 1, 15), 2),
    ('Conv-4 FRN 20-way 5-shot 15-query', 'Conv4', 'frn', (20, 5, 15), 1),
    ('Conv-4 pretraining batch of 128 (64 classes)', 'Conv4', 'pretrain', (128, 64), 2),
    ('Conv-4 pretraining batch of 512 (64 classes)', 'Conv4', 'pretrain', (512, 64), 2),
    ('ResNet-12 pretraining batch of 128 (64 classes)', 'ResNet12', 'pretrain', (128, 64), 1),
    ('ResNet-12 FRN 20-way 5-shot 15-query', 'ResNet12', 'frn', (20, 5, 15), 1),
]
HEAVY = ('ResNet12',)  # both processes cannot stay in memory at once: alternate processes, not steps


def images_per_step(kind, shape):
    return shape[0] if kind == 'pretrain' else shape[0] * (shape[1] + shape[2])


# ---- workers: one process per implementation, one step per 'step' line on stdin ----

def official_worker(official, backbone, kind, shape, threads):
    """The official code's own training loop; the batch source blocks until the driver asks for a step."""
    import types

    import torch
    torch.set_num_threads(threads)
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # the official code calls .cuda() on every tensor
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self
    if 'torchvision' not in sys.modules:
        try:
            import torchvision  # noqa: F401
        except ImportError:  # imported by models/Proto.py and datasets/ but not used by a training step
            for name in ('torchvision', 'torchvision.models', 'torchvision.datasets', 'torchvision.transforms'):
                sys.modules[name] = types.ModuleType(name)
    sys.path.insert(0, official)
    from models.FRN import FRN
    from models.Proto import Proto
    from trainers import frn_train, proto_train
    from trainers.trainer import get_opt
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    resnet = backbone == 'ResNet12'
    if kind == 'pretrain':
        size, classes = shape
        model = FRN(is_pretraining=True, num_cat=classes, resnet=resnet)
        batch = (torch.randn(size, 3, IMAGE, IMAGE, generator=g), torch.randint(classes, (size,), generator=g))
        loop = frn_train.pre_train
    else:
        way, shot, query = shape
        model = (FRN if kind == 'frn' else Proto)(way=way, shots=[shot, query], resnet=resnet)
        batch = (torch.randn(way * (shot + query), 3, IMAGE, IMAGE, generator=g), torch.zeros(way * (shot + query)))
        loop = frn_train.default_train if kind == 'frn' else proto_train.default_train
    args = argparse.Namespace(opt='sgd', lr=0.1, gamma=0.1, epoch=400, weight_decay=5e-4, nesterov=True,
                              decay_epoch=None)
    optimizer, _ = get_opt(model, args)
    model.train()

    class Writer:  # the loops log to tensorboard; nothing to write here
        def add_scalar(self, *args, **kwargs):
            pass

    def batches():
        for line in sys.stdin:
            if line.strip() != 'step':
                reply({'rss_mb': peak_rss_mb()})
                return
            start = time.perf_counter()
            yield batch
            reply({'seconds': time.perf_counter() - start})  # the loop is back for the next batch: its step is done

    reply({'ready': True})
    loop(batches(), model, optimizer, Writer(), 0)


def our_worker(backbone, kind, shape, threads):
    """engine/trainer.py's loop body: step, clear_grad, backward, optimizer step, loss.item()."""
    from runtime.process import setup_process
    setup_process()  # before paddle is imported (runtime/process.py says why)
    from runtime.device import set_threads
    set_threads(threads)
    import numpy as np
    import paddle
    from engine.trainer import build_optimizer
    from methods.FRN import FRN
    from methods.protonet import Proto
    from methods.steps import meta_frn_step, meta_proto_step, pretrain_step
    paddle.seed(0)
    rng = np.random.default_rng(0)
    if kind == 'pretrain':
        size, classes = shape
        model = FRN(backbone=backbone, is_pretraining=True, num_cat=classes, image_size=IMAGE)
        batch = (paddle.to_tensor(rng.standard_normal((size, 3, IMAGE, IMAGE)).astype('float32')),
                 paddle.to_tensor(rng.integers(classes, size=size)))
        step = pretrain_step
    else:
        way, shot, query = shape
        model = (FRN if kind == 'frn' else Proto)(way=way, shots=[shot, query], backbone=backbone, image_size=IMAGE)
        batch = (paddle.to_tensor(rng.standard_normal((way, shot + query, 3, IMAGE, IMAGE)).astype('float32')), None)
        step = (meta_frn_step if kind == 'frn' else meta_proto_step)(way, shot, query)
    args = argparse.Namespace(opt='sgd', lr=0.1, milestones=[400], gamma=0.1, wd=5e-4)
    optimizer, _ = build_optimizer(args, model)
    model.train()
    reply({'ready': True})
    for line in sys.stdin:
        if line.strip() != 'step':
            reply({'rss_mb': peak_rss_mb()})
            return
        start = time.perf_counter()
        loss, _ = step(model, batch)
        optimizer.clear_grad()
        loss.backward()
        optimizer.step()
        loss.item()
        reply({'seconds': time.perf_counter() - start})


class Worker:
    def __init__(self, command):
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, cwd=REPO)
        self.ask(None)

    def ask(self, command):
        if command:
            self.proc.stdin.write(command + '\n')
            self.proc.stdin.flush()
        while True:
            line = self.proc.stdout.readline()
            if not line:
                err = self.proc.stderr.read().strip().splitlines()
                raise RuntimeError(f'exit code {self.proc.wait()}: {err[-1] if err else "no message"}')
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])

    def close(self):
        rss = self.ask('rss')['rss_mb']
        self.proc.stdin.close()
        self.proc.wait()
        return rss


def worker_command(impl, task, options):
    _, backbone, kind, shape, threads = task
    python = options.torch_python if impl == 'official' else sys.executable
    return [python, os.path.abspath(__file__), '--worker', impl, options.official, backbone, kind, json.dumps(shape),
            str(threads)]


def measure_steps(task, options, log):
    """{'official': {...}, 'ours': {...}}: step times, peak RSS, or the error that stopped a worker."""
    impls = ['official', 'ours']
    result = {impl: {'seconds': [], 'rss_mb': None, 'error': None} for impl in impls}
    heavy = task[1] in HEAVY

    def start(impl):
        try:
            return Worker(worker_command(impl, task, options))
        except RuntimeError as err:
            result[impl]['error'] = str(err)

    def take(impl, worker, keep):
        try:
            seconds = worker.ask('step')['seconds']
        except RuntimeError as err:
            result[impl]['error'] = str(err)
            return False
        if keep:
            result[impl]['seconds'].append(seconds)
        return True

    if heavy:  # whole processes in turn: warm-up plus `steps` steps each, `rounds` times
        for _ in range(options.rounds):
            for impl in impls:
                if result[impl]['error']:
                    continue
                worker = start(impl)
                if worker and all(take(impl, worker, keep=i > 0) for i in range(options.heavy_steps + 1)):
                    result[impl]['rss_mb'] = max(result[impl]['rss_mb'] or 0, worker.close())
    else:  # both alive, a step of each in turn
        workers = {impl: start(impl) for impl in impls}
        for i in range(options.steps + 1):
            for impl, worker in list(workers.items()):
                if worker and not take(impl, worker, keep=i > 0):
                    workers[impl] = None
        for impl, worker in workers.items():
            if worker:
                result[impl]['rss_mb'] = worker.close()
    row = {'task': task[0], 'backbone': task[1], 'kind': task[2], 'shape': list(task[3]), 'threads': task[4],
           'images': images_per_step(task[2], task[3])}
    for impl in impls:
        times = result[impl]['seconds']
        row[impl] = {'median': median(times) if times else None, 'min': min(times) if times else None,
                     'max': max(times) if times else None, 'steps': len(times), 'rss_mb': result[impl]['rss_mb'],
                     'error': result[impl]['error']}
    ok = row['official']['median'] and row['ours']['median']
    row['ratio'] = row['official']['median'] / row['ours']['median'] if ok else None
    log(format_step_row(row))
    return row


# ---- one validation, as each trainer runs it ----

def official_validation(official, data, backbone, shot, episodes, threads):
    import torch
    torch.set_num_threads(threads)
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self
    sys.path.insert(0, official)
    from models.FRN import FRN
    from trainers.eval import meta_test
    torch.manual_seed(0)
    model = FRN(resnet=backbone == 'ResNet12')
    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        acc, _ = meta_test(data_path=data, model=model, way=5, shot=shot, pre=False, transform_type=1, query_shot=16,
                           trial=episodes)
    reply({'seconds': time.perf_counter() - start, 'acc': acc, 'rss_mb': peak_rss_mb()})


def our_validation(data, backbone, shot, episodes, threads):
    from runtime.process import setup_process
    setup_process()  # before paddle is imported (runtime/process.py says why)
    from runtime.device import set_threads
    set_threads(threads)
    import paddle
    from data.datamgr import SetDataManager
    from data.filelist import read_class_folders
    from engine.evaluation import evaluate
    from engine.feature_cache import feature_cache_for
    from methods.FRN import FRN
    paddle.seed(0)
    model = FRN(backbone=backbone, image_size=IMAGE)
    model.eval()
    split = read_class_folders(os.path.dirname(data), os.path.basename(data))
    start = time.perf_counter()
    loader = SetDataManager(IMAGE, 5, shot, 16, episodes, dataset='cars', eval_resize='square').get_data_loader(
        split, aug=False)
    accs, _ = evaluate(model, loader, 5, shot, 16, cache=feature_cache_for(model, loader))
    reply({'seconds': time.perf_counter() - start, 'acc': float(accs.mean()), 'rss_mb': peak_rss_mb()})


def measure_validation(options, log):
    rows = []
    for backbone, shot in (('Conv4', 5), ('Conv4', 1)):
        row = {'task': f'{backbone} validation, {options.val_episodes} episodes 5-way {shot}-shot 16-query',
               'threads': 2, 'images': None}
        for impl, python in (('official', options.val_torch_python), ('ours', sys.executable)):
            command = [python, os.path.abspath(__file__), '--worker', f'{impl}_validation', options.official,
                       options.val_data, backbone, str(shot), str(options.val_episodes), '2']
            try:
                out = Worker(command).ask(None)
                row[impl] = {'median': out['seconds'], 'min': out['seconds'], 'max': out['seconds'], 'steps': 1,
                             'rss_mb': out['rss_mb'], 'error': None}
            except RuntimeError as err:
                row[impl] = {'median': None, 'min': None, 'max': None, 'steps': 0, 'rss_mb': None, 'error': str(err)}
        ok = row['official']['median'] and row['ours']['median']
        row['ratio'] = row['official']['median'] / row['ours']['median'] if ok else None
        log(format_step_row(row))
        rows.append(row)
    return rows


# ---- the driver ----

def cell(r, images):
    if r['median'] is None:
        return f'failed ({r["error"]})'
    spread = f' ({r["min"]:.2f}-{r["max"]:.2f})' if r['steps'] > 1 else ''
    speed = f', {images / r["median"]:.0f} img/s' if images else ''
    return f'{r["median"]:.2f} s{spread}{speed}'


def format_step_row(row):
    ratio = f'{row["ratio"]:.2f}x' if row['ratio'] else '-'
    return (f'{row["task"]} | {row["threads"]} thread(s) | official {cell(row["official"], row["images"])} | '
            f'ours {cell(row["ours"], row["images"])} | official / ours {ratio}')


def markdown(rows):
    lines = ['| step | threads | official (s/step, min-max, images/s) | ours | official / ours | '
             'peak RSS official / ours (MB) |', '|---|---|---|---|---|---|']
    for row in rows:
        rss = ' / '.join('-' if row[i]['rss_mb'] is None else f'{row[i]["rss_mb"]:,.0f}' for i in ('official', 'ours'))
        ratio = f'**{row["ratio"]:.2f}x**' if row['ratio'] else '-'
        lines.append(f'| {row["task"]} | {row["threads"]} | {cell(row["official"], row["images"])} | '
                     f'{cell(row["ours"], row["images"])} | {ratio} | {rss} |')
    return '\n'.join(lines)


def run(options, log=print):
    tasks = [t for t in TASKS if not options.only or any(o in t[0] for o in options.only)]
    rows = [measure_steps(task, options, log) for task in tasks]
    if options.val_data:
        rows += measure_validation(options, log)
    return rows


def parser():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--official', required=True, help='a copy of the official FRN repository (Tsingularity/FRN)')
    p.add_argument('--torch_python', required=True, help='a Python with torch, for the official steps')
    p.add_argument('--val_data', default=None,
                   help='a class-folder split (e.g. cars_fewshot/val) for the validation rows; without it, none')
    p.add_argument('--val_torch_python', default=None,
                   help='a Python with torch and torchvision (the official validation reads images with it)')
    p.add_argument('--val_episodes', type=int, default=1000, help="validation episodes (the official --val_trial)")
    p.add_argument('--steps', type=int, default=5, help='timed steps per implementation for light tasks')
    p.add_argument('--heavy_steps', type=int, default=1, help='timed steps per process for ResNet-12 episodes')
    p.add_argument('--rounds', type=int, default=2, help='processes per implementation for ResNet-12 episodes')
    p.add_argument('--only', nargs='*', default=None, help='run only the tasks whose name contains one of these')
    p.add_argument('--json', default=None, help='also write the rows here')
    return p


def main():
    if len(sys.argv) > 1 and sys.argv[1] == '--worker':
        impl, official, *rest = sys.argv[2:]
        if impl == 'official':
            official_worker(official, rest[0], rest[1], tuple(json.loads(rest[2])), int(rest[3]))
        elif impl == 'ours':
            our_worker(rest[0], rest[1], tuple(json.loads(rest[2])), int(rest[3]))
        elif impl == 'official_validation':
            official_validation(official, rest[0], rest[1], int(rest[2]), int(rest[3]), int(rest[4]))
        else:
            our_validation(rest[0], rest[1], int(rest[2]), int(rest[3]), int(rest[4]))
        return
    options = parser().parse_args()
    if options.val_data and not options.val_torch_python:
        options.val_torch_python = options.torch_python
    rows = run(options)
    print(markdown(rows))
    if options.json:
        with open(options.json, 'w') as f:
            json.dump(rows, f, indent=1)


if __name__ == '__main__':
    main()
