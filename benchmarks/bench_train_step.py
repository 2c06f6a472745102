"""Our training step under Paddle-level variants: dygraph against to_static, MKL's kernels, another Paddle version.

    python benchmarks/bench_train_step.py                    # small (default without a GPU): a few minutes
    python benchmarks/bench_train_step.py --full             # 20-way 5-shot 15-query episodes, batches of 128
    python benchmarks/bench_train_step.py --other_paddle_python ../venv26/bin/python   # adds Paddle 2.6

The comparison with the official PyTorch code is bench_official.py's (its unmodified code at the recipes'
shapes); this file compares ways of running our own step. A step is what the trainer does for one batch:
meta_train.py's episode step (query NLL plus auxrank) or pretrain.py's step (NLL over the 64 class
matrices), backward, and the Momentum (Nesterov, weight decay) update; 84 px random images, so data loading
is left out (bench_data.py measures it). Small mode shrinks the batches (5-way 1-shot 1-query episodes of 10
images, pretraining batches of 8); full mode uses 20-way 5-shot 15-query (400 images) and 128.

Each variant runs in its own process, which reports its peak RSS; in small mode the processes stay alive
and take steps in turn, so all see the same machine load (full mode runs them one after the other, as
ResNet-12 episodes need most of the memory each). Per variant: the median of the timed steps after one
warm-up step, and the largest difference of its losses from the product's (0 means bitwise the same steps).
- paddle (product): dygraph, as pretrain.py and meta_train.py run;
- paddle, to_static backbone: `paddle.jit.to_static` on the feature extractor (small mode: Conv-4 only;
  on Conv-4 it traces the plain block, since the eager training shortcut cannot be traced);
- paddle, generic MKL kernels (AMD CPUs with AVX2 only): the product with FRN_MKL_AVX2=0, i.e. without
  the MKL_DEBUG_CPU_TYPE=5 that runtime/process.py sets on AMD CPUs with AVX2;
- with --other_paddle_python: the product's step under that Python's Paddle (e.g. 2.6 against 3.x).
The ratio column is the variant's time over the product's.
"""
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from benchmarks.workers import Worker, clean_env, median, peak_rss_mb, reply  # noqa: E402  (no paddle there)
IMAGE = 84


def shapes(small):
    """{kind: shape}: 'frn' episodes (way, shot, query), 'pretrain' batches (batch, classes)."""
    return {'frn': (5, 1, 1), 'pretrain': (8, 64)} if small else {'frn': (20, 5, 15), 'pretrain': (128, 64)}


# ---- workers: one process per variant, driven over stdin/stdout ----

def our_step(backbone, kind, shape, variant='paddle'):
    """One training step as engine/trainer.py takes it: step, clear_grad, backward, optimizer step, loss.item().

    kind: 'frn' or 'proto' episodes of shape (way, shot, query), or 'pretrain' batches of shape (batch, classes);
    the optimizer is the recipes' (SGD, lr 0.1, Nesterov momentum, weight decay 5e-4). bench_official.py
    runs this too, as our side of its comparison.
    """
    import argparse
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
        train_step = pretrain_step
    else:
        way, shot, query = shape
        model = (FRN if kind == 'frn' else Proto)(way=way, shots=[shot, query], backbone=backbone, image_size=IMAGE)
        batch = (paddle.to_tensor(rng.standard_normal((way, shot + query, 3, IMAGE, IMAGE)).astype('float32')), None)
        train_step = (meta_frn_step if kind == 'frn' else meta_proto_step)(way, shot, query)
    if variant == 'static':
        model.feature_extractor = paddle.jit.to_static(model.feature_extractor, full_graph=True)
    args = argparse.Namespace(opt='sgd', lr=0.1, milestones=[400], gamma=0.1, wd=5e-4)
    optimizer, _ = build_optimizer(args, model)
    model.train()

    from engine import parallel

    def step():
        loss, _ = train_step(model, batch)
        optimizer.clear_grad()
        loss.backward()
        parallel.after_backward(model)  # the gradient exchange of --share_batches; nothing in one process
        optimizer.step()
        return loss.item()
    return step


def worker(variant, backbone, kind, shape, threads):
    """Serve 'step' (time one step) and 'rss' (peak RSS in MB, then exit) on stdin/stdout, one JSON line each."""
    from runtime.process import setup_process
    setup_process()  # before paddle is imported (runtime/process.py says why)
    from runtime.device import set_threads
    set_threads(threads)
    step = our_step(backbone, kind, shape, variant)
    import paddle
    reply({'ready': True, 'paddle': paddle.__version__})
    for line in sys.stdin:
        if line.strip() == 'step':
            start = time.perf_counter()
            loss = step()
            reply({'seconds': time.perf_counter() - start, 'loss': loss})
        else:
            reply({'rss_mb': peak_rss_mb()})
            return


def free_ports(n):
    import socket
    sockets = [socket.socket() for _ in range(n)]
    for sock in sockets:
        sock.bind(('127.0.0.1', 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def gloo_env(rank, processes, ports):
    """What paddle.distributed.launch sets for a CPU process group on this machine (ports: master, then one per rank)."""
    endpoints = [f'127.0.0.1:{p}' for p in ports[1:]]
    return {'PADDLE_TRAINER_ID': str(rank), 'PADDLE_TRAINERS_NUM': str(processes), 'PADDLE_GLOBAL_RANK': str(rank),
            'PADDLE_GLOBAL_SIZE': str(processes), 'PADDLE_LOCAL_RANK': str(rank), 'PADDLE_LOCAL_SIZE': str(processes),
            'PADDLE_RANK_IN_NODE': str(rank), 'PADDLE_NNODES': '1', 'PADDLE_MASTER': f'127.0.0.1:{ports[0]}',
            'PADDLE_TRAINER_ENDPOINTS': ','.join(endpoints), 'PADDLE_CURRENT_ENDPOINT': endpoints[rank],
            'PADDLE_DISTRI_BACKEND': 'gloo'}


def shared_worker(backbone, kind, shape, processes, rank=0, ports=None):
    """Our step with each batch shared by `processes` single-threaded processes, as meta_train.py and
    pretrain.py --share_batches run under paddle.distributed.launch. Rank 0 serves stdin/stdout as
    `worker` does and starts the other ranks, which take a step for each 'step' line rank 0 writes to
    their stdin: a rank waiting in a collective keeps its core busy, so between steps they wait on a
    pipe instead, leaving the cores to the other benchmarks. Rank 0's 'rss' reply is the sum of every
    rank's peak RSS."""
    import subprocess
    partners = []
    if rank == 0:
        ports = free_ports(processes + 1)
        partners = [subprocess.Popen([sys.executable, os.path.abspath(__file__), '--worker', 'shared_rank', backbone,
                                      kind, json.dumps(shape), str(processes), str(r), json.dumps(ports)],
                                     env={**os.environ, **gloo_env(r, processes, ports)}, stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, text=True)
                    for r in range(1, processes)]
    os.environ.update(gloo_env(rank, processes, ports))
    from runtime.process import setup_process
    setup_process()
    from runtime.device import set_threads
    set_threads(1)
    import paddle
    import paddle.distributed as dist
    from engine import parallel
    parallel.init()
    parallel.share_batches()
    step = our_step(backbone, kind, shape)
    if rank > 0:
        for line in sys.stdin:
            if line.strip() != 'step':
                break
            step()
    else:
        reply({'ready': True, 'paddle': paddle.__version__})
        for line in sys.stdin:
            if line.strip() != 'step':
                break
            for partner in partners:
                partner.stdin.write('step\n')
                partner.stdin.flush()
            start = time.perf_counter()
            loss = step()
            reply({'seconds': time.perf_counter() - start, 'loss': loss})
        for partner in partners:
            partner.stdin.write('stop\n')
            partner.stdin.flush()
    total = paddle.to_tensor([float(peak_rss_mb())])
    dist.all_reduce(total)
    if rank == 0:
        for partner in partners:
            partner.wait()
        reply({'rss_mb': float(total.item())})


# ---- the driver ----

VARIANTS = [('paddle', 'paddle (product): dygraph'), ('static', 'paddle, to_static backbone'),
            ('generic', 'paddle, generic MKL kernels (FRN_MKL_AVX2=0)'), ('other', 'paddle {version}: dygraph')]


def start_worker(kind, backbone, task, shape, threads, other_python):
    env = clean_env(MKL_DEBUG_CPU_TYPE=None, FRN_MKL_AVX2='0') if kind == 'generic' else None
    python = other_python if kind == 'other' else sys.executable
    command = [python, os.path.abspath(__file__), '--worker', 'paddle' if kind == 'other' else kind, backbone, task,
               json.dumps(shape), str(threads)]
    return Worker(command, cwd=REPO, env=env)


def measure(backbone, task, shape, threads, repeats, interleave, other_python, log):
    # to_static is measured on Conv-4 only in small mode: on ResNet-12 it costs minutes
    static = ['static'] if backbone == 'Conv4' or not interleave else []
    from runtime.process import amd_cpu_with_avx2
    generic = ['generic'] if amd_cpu_with_avx2() else []  # elsewhere it would be the product itself
    kinds = ['paddle'] + static + generic + (['other'] if other_python else [])
    steps = {k: [] for k in kinds}
    rss, errors, versions = {}, {}, {}

    def run(group):
        workers = {}
        for k in group:
            try:
                workers[k] = start_worker(k, backbone, task, shape, threads, other_python)
                versions[k] = workers[k].ready.get('paddle')
            except RuntimeError as err:
                errors[k] = str(err)
        for _ in range(repeats + 1):  # the first step warms up: its time is not kept, its loss is compared
            for k, w in list(workers.items()):
                try:
                    steps[k].append(w.ask('step'))
                except RuntimeError as err:
                    errors[k] = str(err)
                    del workers[k]
        for k, w in workers.items():
            rss[k] = w.close()

    if interleave:
        run(kinds)
    else:
        for k in kinds:
            run([k])
    rows = []
    product = [s['seconds'] for s in steps['paddle'][1:]]
    base = median(product) if product else None
    for kind, name in VARIANTS:
        if kind not in kinds:
            continue
        timed = [s['seconds'] for s in steps[kind][1:]]
        row = {'backbone': backbone, 'task': task, 'shape': list(shape), 'kind': kind,
               'variant': name.format(version=versions.get(kind) or '?'),
               'seconds': median(timed) if timed else None, 'rss_mb': rss.get(kind), 'error': errors.get(kind),
               'steps': len(timed), 'threads': threads}
        row['ratio'] = row['seconds'] / base if timed and base else None
        if steps[kind] and steps['paddle']:
            row['max_loss_diff'] = max(abs(a['loss'] - b['loss']) for a, b in zip(steps[kind], steps['paddle']))
        rows.append(row)
        if log:
            log(format_row(row))
    return rows


def run(small=True, threads=None, log=None, other_python=None, repeats=3):
    from runtime.device import default_threads
    threads = threads or min(2, default_threads())
    rows = []
    for backbone in ('Conv4', 'ResNet12'):
        for task, shape in shapes(small).items():
            rows += measure(backbone, task, shape, threads, repeats=repeats, interleave=small,
                            other_python=other_python, log=log)
    return rows


def describe(row):
    if row['task'] == 'frn':
        way, shot, query = row['shape']
        return f'meta-train episode {way}-way {shot}-shot {query}-query ({way * (shot + query)} images)'
    return f'pretrain batch of {row["shape"][0]}'


HEADER = f'{"backbone":<10}{"step":<48}{"variant":<34}{"s/step":>9}{"ratio":>8}{"peak RSS MB":>13}{"loss diff":>11}'


def format_row(row):
    if row['seconds'] is None:
        return f'{row["backbone"]:<10}{describe(row):<48}{row["variant"]:<34}  failed: {row["error"]}'
    diff = row.get('max_loss_diff')
    ratio = f'{row["ratio"]:>7.2f}x' if row['ratio'] else f'{"-":>8}'
    return (f'{row["backbone"]:<10}{describe(row):<48}{row["variant"]:<34}{row["seconds"]:>9.3f}{ratio}'
            f'{row["rss_mb"] or 0:>13.0f}{"" if diff is None else f"{diff:.1e}":>11}')


def markdown(rows):
    lines = ['| backbone | step | variant | s/step (median) | vs product | peak RSS (MB) | '
             'max loss difference from the product |', '|---|---|---|---|---|---|---|']
    for r in rows:
        if r['seconds'] is None:
            lines.append(f'| {r["backbone"]} | {describe(r)} | {r["variant"]} | failed: {r["error"]} | | | |')
            continue
        diff = r.get('max_loss_diff')
        ratio = f'{r["ratio"]:.2f}x' if r['ratio'] else '-'
        rss = '-' if r['rss_mb'] is None else f'{r["rss_mb"]:,.0f}'
        lines.append(f'| {r["backbone"]} | {describe(r)} | {r["variant"]} | {r["seconds"]:.3f} | {ratio} | {rss} | '
                     f'{"" if diff is None else ("0 (bitwise)" if diff == 0 else f"{diff:.1e}")} |')
    return '\n'.join(lines)


def main():
    if len(sys.argv) > 2 and sys.argv[1] == '--worker' and sys.argv[2].startswith('shared'):
        backbone, kind, shape, processes, *rank = sys.argv[3:]
        rank_args = (int(rank[0]), json.loads(rank[1])) if rank else ()
        shared_worker(backbone, kind, tuple(json.loads(shape)), int(processes), *rank_args)
        return
    if len(sys.argv) > 1 and sys.argv[1] == '--worker':
        variant, backbone, kind, shape, threads = sys.argv[2:7]
        worker(variant, backbone, kind, tuple(json.loads(shape)), int(threads))
        return
    from benchmarks.bench_data import size_args
    parser = size_args(__doc__.split('\n')[0])
    parser.add_argument('--other_paddle_python', default=None,
                        help='a Python with another Paddle version (e.g. ../venv26/bin/python), for one more variant')
    parser.add_argument('--repeats', type=int, default=3, help='timed steps per variant, after one warm-up step')
    args = parser.parse_args()
    print(HEADER)
    run(small=not args.full, threads=args.threads, log=print, other_python=args.other_paddle_python,
        repeats=args.repeats)


if __name__ == '__main__':
    main()
