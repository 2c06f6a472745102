"""This code's training steps and validation against the unmodified official PyTorch FRN code, at the recipes' shapes.

    python benchmarks/bench_official.py --official ../official --torch_python ../venv-torch/bin/python \
        [--val_data CARS_FOLDER/val --val_torch_python PYTHON_WITH_TORCHVISION] [--quick] [--threads N]

The baseline is the official repository itself (github.com/Tsingularity/FRN at 64e43f3, a copy outside this
one): its models (models/FRN.py, models/Proto.py), its optimizer (trainers/trainer.get_opt: SGD, momentum 0.9,
Nesterov, weight decay 5e-4) and its training loops (trainers/frn_train.default_train and pre_train,
trainers/proto_train.default_train), driven with a batch source that hands out one batch per step on demand;
`.cuda()` is made a no-op so that it runs on the CPU, and nothing else is changed. Ours is the trainer's step
(bench_train_step.our_step: methods/steps.py through engine/trainer.build_optimizer). Both get the same random 84 px images, so data
loading is left out (bench_data.py measures it; the validation rows include it).

Steps: each implementation runs in its own process, after one warm-up step; the two take steps in turn
(light tasks keep both processes and alternate step by step; ResNet-12's 400-image episodes, which need
most of the machine's memory each, alternate whole processes). Reported per row: median seconds per step
(min-max), images per second, peak RSS, and official / ours (above 1: ours is faster). The official d x d
inverse fails under torch 2.13 with 2 threads on some CPUs: the ResNet-12 rows run at 1 and at 2 threads,
and a step that fails is reported with its error. --quick checks the harness in a few minutes: every row
with its shape shrunk (episodes of 1 support and 1 query per class, batches of 8), one timed step, 5
validation episodes; its numbers measure nothing.
Validation: one validation as the trainers run it, on a real class-folder split: the official
trainers/eval.meta_test (5-way, 16 queries, its DataLoader with 3 workers) against ours (engine/evaluation
with the feature cache, as engine/trainer validates).
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
from benchmarks.workers import Worker, peak_rss_mb, ratio, reply, summary  # noqa: E402  (no paddle or torch there)

IMAGE = 84
# (backbone, kind, shape, threads): kind 'frn' or 'proto' episodes (way, shot, query), 'pretrain' (batch, classes)
TASKS = [
    ('Conv4', 'frn', (20, 5, 15), 2),
    ('Conv4', 'frn', (30, 1, 15), 2),
    ('Conv4', 'proto', (20, 5, 15), 2),
    ('Conv4', 'proto', (30, 1, 15), 2),
    ('Conv4', 'frn', (20, 5, 15), 1),
    ('Conv4', 'pretrain', (128, 64), 2),
    ('Conv4', 'pretrain', (512, 64), 2),
    ('ResNet12', 'pretrain', (128, 64), 1),
    ('ResNet12', 'pretrain', (128, 64), 2),
    ('ResNet12', 'frn', (20, 5, 15), 1),
    ('ResNet12', 'frn', (20, 5, 15), 2),
]
HEAVY = ('ResNet12',)  # both processes cannot stay in memory at once: alternate processes, not steps
VALIDATIONS = (('Conv4', 5), ('Conv4', 1))  # (backbone, shot): one validation each, 5-way 16-query


def images_per_step(kind, shape):
    return shape[0] if kind == 'pretrain' else shape[0] * (shape[1] + shape[2])


def task_name(backbone, kind, shape):
    net = {'Conv4': 'Conv-4', 'ResNet12': 'ResNet-12'}[backbone]
    if kind == 'pretrain':
        return f'{net} pretraining batch of {shape[0]} ({shape[1]} classes)'
    return f'{net} {"FRN" if kind == "frn" else "ProtoNet"} {shape[0]}-way {shape[1]}-shot {shape[2]}-query'


def quick_shape(kind, shape):
    """--quick: the same rows with the smallest batches, to check the harness and not to measure."""
    return (8, shape[1]) if kind == 'pretrain' else (min(shape[0], 5), 1, 1)


def tasks(options):
    """The rows to run: TASKS filtered by --only, shrunk by --quick, at --threads if given (duplicates dropped)."""
    chosen = []
    for backbone, kind, shape, threads in TASKS:
        task = (backbone, kind, quick_shape(kind, shape) if options.quick else shape, options.threads or threads)
        name = task_name(*task[:3])
        if task not in chosen and (not options.only or any(o in name for o in options.only)):
            chosen.append(task)
    return chosen


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


def worker_command(impl, task, options):
    backbone, kind, shape, threads = task
    if impl == 'ours':  # bench_train_step.py's worker: our step, as the trainer takes it
        return [sys.executable, os.path.join(HERE, 'bench_train_step.py'), '--worker', 'paddle', backbone, kind,
                json.dumps(shape), str(threads)]
    if impl == 'shared':  # the same step with each batch shared by processes of 1 thread (one per thread)
        return [sys.executable, os.path.join(HERE, 'bench_train_step.py'), '--worker', 'shared', backbone, kind,
                json.dumps(shape), str(shared_processes(task, options))]
    return [options.torch_python, os.path.abspath(__file__), '--worker', impl, options.official, backbone, kind,
            json.dumps(shape), str(threads)]


def shared_processes(task, options):
    """Processes of the 'shared' column: --share_processes, else one per thread of the row."""
    return getattr(options, 'share_processes', None) or task[3]


def measure_steps(task, options, log):
    """{'official': {...}, 'ours': {...}, 'shared': {...}}: step times, peak RSS, or the error that stopped a worker.

    'shared' (rows of more than one thread, or with --share_processes): our step with each batch shared
    by that many processes of one thread each (--share_batches), on as many cores."""
    impls = ['official', 'ours'] + (['shared'] if shared_processes(task, options) > 1 else [])
    result = {impl: {'seconds': [], 'rss_mb': None, 'error': None} for impl in impls}
    heavy = task[0] in HEAVY

    def start(impl):
        try:
            return Worker(worker_command(impl, task, options), cwd=REPO)
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
    backbone, kind, shape, threads = task
    row = {'task': task_name(backbone, kind, shape), 'backbone': backbone, 'kind': kind, 'shape': list(shape),
           'threads': threads, 'images': images_per_step(kind, shape)}
    for impl in impls:
        row[impl] = summary(result[impl]['seconds'], result[impl]['rss_mb'], result[impl]['error'])
    row['ratio'] = ratio(row['official'], row['ours'])
    if 'shared' in row:
        row['ratio_shared'] = ratio(row['official'], row['shared'])
        row['shared_processes'] = shared_processes(task, options)
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
    threads = options.threads or 2
    for backbone, shot in VALIDATIONS:
        row = {'task': f'{backbone} validation, {val_episodes(options)} episodes 5-way {shot}-shot 16-query',
               'threads': threads, 'images': None}
        for impl, python in (('official', options.val_torch_python), ('ours', sys.executable)):
            command = [python, os.path.abspath(__file__), '--worker', f'{impl}_validation', options.official,
                       options.val_data, backbone, str(shot), str(val_episodes(options)), str(threads)]
            try:
                out = Worker(command, cwd=REPO).ready  # the worker replies once, when its validation is done
                row[impl] = summary([out['seconds']], out['rss_mb'])
            except RuntimeError as err:
                row[impl] = summary([], None, str(err))
        row['ratio'] = ratio(row['official'], row['ours'])
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
    shared = (f' | shared by {row["shared_processes"]} processes {cell(row["shared"], row["images"])}, official / shared '
              f'{row["ratio_shared"]:.2f}x' if row.get('ratio_shared') else '')
    return (f'{row["task"]} | {row["threads"]} thread(s) | official {cell(row["official"], row["images"])} | '
            f'ours {cell(row["ours"], row["images"])} | official / ours {ratio}' + shared)


def markdown(rows):
    lines = ['| step | threads | official (s/step, min-max, images/s) | ours, one process | official / ours | '
             'ours, processes of 1 thread sharing each batch | official / shared | '
             'peak RSS official / ours / shared (MB) |', '|---|---|---|---|---|---|---|---|']
    for row in rows:
        impls = ('official', 'ours', 'shared')
        rss = ' / '.join('-' if i not in row or row[i]['rss_mb'] is None else f'{row[i]["rss_mb"]:,.0f}' for i in impls)
        ratio = f'**{row["ratio"]:.2f}x**' if row['ratio'] else '-'
        shared = f"{cell(row['shared'], row['images'])} ({row['shared_processes']} processes)" if 'shared' in row else '-'
        ratio_shared = f'**{row["ratio_shared"]:.2f}x**' if row.get('ratio_shared') else '-'
        lines.append(f'| {row["task"]} | {row["threads"]} | {cell(row["official"], row["images"])} | '
                     f'{cell(row["ours"], row["images"])} | {ratio} | {shared} | {ratio_shared} | {rss} |')
    return '\n'.join(lines)


def val_episodes(options):
    return 5 if options.quick else options.val_episodes


def quick(options):
    """--quick: one timed step per implementation and row, one process round."""
    if options.quick:
        options.steps, options.heavy_steps, options.rounds = 1, 1, 1
    return options


def plan(options):
    """[(row, timed steps, images per step)] per implementation: what a run of these options computes."""
    quick(options)
    out = []
    for task in tasks(options):
        backbone, kind, shape, _ = task
        steps = options.rounds * (options.heavy_steps + 1) if backbone in HEAVY else options.steps + 1
        out.append((task_name(*task[:3]), task, steps, images_per_step(kind, shape)))
    return out


def run(options, log=print):
    quick(options)
    rows = [measure_steps(task, options, log) for task in tasks(options)]
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
    p.add_argument('--threads', type=int, default=None, help='run every row at this many threads (default: per row)')
    p.add_argument('--share_processes', type=int, default=None,
                   help="processes of one thread that share each batch in the 'shared' column (default: the row's "
                        "threads; a row of 1 thread then has none)")
    p.add_argument('--quick', action='store_true',
                   help='check the harness: shrunk shapes, one timed step, 5 validation episodes (no measurement)')
    p.add_argument('--json', default=None, help='also write the rows here')
    return p


def main():
    if len(sys.argv) > 1 and sys.argv[1] == '--worker':
        impl, official, *rest = sys.argv[2:]
        if impl == 'official':
            official_worker(official, rest[0], rest[1], tuple(json.loads(rest[2])), int(rest[3]))
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
