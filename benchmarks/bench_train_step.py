"""Training step time and peak memory: this code's steps, Paddle-level variants, and the official FRN step in PyTorch.

    python benchmarks/bench_train_step.py                    # small (default without a GPU): about 2 minutes
    python benchmarks/bench_train_step.py --full             # 20-way 5-shot 15-query episodes, batches of 128
    python benchmarks/bench_train_step.py --torch_python ../venv-torch/bin/python

A step is what the trainer does for one batch: meta_train.py's episode step (query NLL
plus auxrank) or pretrain.py's step (NLL over the 64 class matrices), backward, and the
Momentum (Nesterov, weight decay) update; 84 px random images, so data loading is left
out (bench_data.py measures it). Small mode shrinks the batches (5-way 1-shot 1-query
episodes of 10 images, pretraining batches of 8); full mode uses 20-way 5-shot
15-query (400 images) and 128.

Each variant runs in its own process, which reports its peak RSS; the processes stay
alive and take steps in turn (small mode), so all see the same machine load. Per
variant: the median of the timed steps after one warm-up step, and the largest
difference of its losses from the product's (0 means bitwise the same steps).
- paddle (product): dygraph, as pretrain.py and meta_train.py run;
- paddle, to_static backbone: `paddle.jit.to_static` on the feature extractor (small
  mode: Conv-4 only; on ResNet-12 it was no faster and took 50% more memory; on Conv-4 it traces
  the plain block, since the eager training shortcut cannot be traced);
- paddle, generic MKL kernels (AMD CPUs with AVX2 only): the product with FRN_MKL_AVX2=0, i.e. without
  the MKL_DEBUG_CPU_TYPE=5 that runtime/process.py sets on AMD CPUs with AVX2 (Paddle's MKL then falls
  back to its slow generic code path);
- official PyTorch (with --torch_python, a Python that has torch): the official FRN
  step, written here from the paper and the official code's structure: the same
  backbones, the d x d inverse head (Equation 10), auxrank, SGD with Nesterov momentum.
The ratio column is the variant's time over the product's; for torch, the product's
time over torch's is printed as "paddle / torch".
"""
import json
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = 84


def shapes(small):
    """{task: shape}: meta = (way, shot, query), pretrain = (batch, classes)."""
    return {'meta': (5, 1, 1), 'pretrain': (8, 64)} if small else {'meta': (20, 5, 15), 'pretrain': (128, 64)}


# ---- workers: one process per variant, driven over stdin/stdout ----

def paddle_step_fn(backbone, task, shape, variant):
    sys.path.insert(0, REPO)
    import argparse
    import numpy as np
    from runtime.process import setup_process
    setup_process()  # before paddle is imported (runtime/process.py says why)
    import paddle
    from methods.FRN import FRN
    from engine.trainer import build_optimizer
    paddle.seed(0)
    rng = np.random.default_rng(0)
    if task == 'meta':
        from methods.steps import meta_frn_step
        way, shot, query = shape
        model = FRN(way=way, shots=[shot, query], backbone=backbone, image_size=IMAGE)
        batch = (paddle.to_tensor(rng.standard_normal((way, shot + query, 3, IMAGE, IMAGE)).astype('float32')), None)
        train_step = meta_frn_step(way, shot, query)
    else:
        from methods.steps import pretrain_step
        size, classes = shape
        model = FRN(backbone=backbone, is_pretraining=True, num_cat=classes, image_size=IMAGE)
        batch = (paddle.to_tensor(rng.standard_normal((size, 3, IMAGE, IMAGE)).astype('float32')),
                 paddle.to_tensor(rng.integers(classes, size=size)))
        train_step = pretrain_step
    if variant == 'static':
        model.feature_extractor = paddle.jit.to_static(model.feature_extractor, full_graph=True)
    args = argparse.Namespace(lr=1e-3, milestones=[100], gamma=0.1, wd=5e-4)
    optimizer, _ = build_optimizer(args, model)
    model.train()

    def step():
        loss, _ = train_step(model, batch)
        optimizer.clear_grad()
        loss.backward()
        optimizer.step()
        return loss.item()
    return step


def torch_step_fn(backbone, task, shape):
    """The official FRN training step in PyTorch (d x d inverse head), for comparison only."""
    import torch
    from torch import nn
    import torch.nn.functional as F
    torch.manual_seed(0)

    def block(cin, cout):  # ResNet-12 block: three 3x3 conv-BN, LeakyReLU 0.1, 1x1 shortcut, 2x2 max-pool
        class Block(nn.Module):
            def __init__(self):
                super().__init__()
                self.convs = nn.ModuleList(nn.Conv2d(c, cout, 3, padding=1, bias=False) for c in (cin, cout, cout))
                self.bns = nn.ModuleList(nn.BatchNorm2d(cout) for _ in range(3))
                self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

            def forward(self, x):
                out = x
                for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
                    out = bn(conv(out))
                    if i < 2:
                        out = F.leaky_relu(out, 0.1)
                return F.max_pool2d(F.leaky_relu(out + self.shortcut(x), 0.1), 2)
        return Block()

    if backbone == 'ResNet12':
        features, d = nn.Sequential(block(3, 64), block(64, 160), block(160, 320), block(320, 640)), 640
    else:
        layers = []
        for cin in (3, 64, 64, 64):
            layers += [nn.Conv2d(cin, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2)]
        features, d = nn.Sequential(*layers), 64
    resolution = (IMAGE // 16) ** 2
    scale = nn.Parameter(torch.ones(1))
    r = nn.Parameter(torch.zeros(2), requires_grad=task == 'meta')
    params = list(features.parameters()) + [scale, r]

    def feature_map(x):
        fm = features(x)
        if backbone == 'ResNet12':
            fm = fm / 640 ** 0.5
        return fm.view(x.size(0), d, resolution).permute(0, 2, 1).contiguous()  # N, r, d

    def inverse(m):
        # torch 2.13's batched float32 inverse fails with more than one thread on this CPU ("Intel oneMKL
        # ERROR: Parameter 6 was incorrect on entry to SLASWP"), so it gets one thread; the rest keeps them
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return m.inverse()
        finally:
            torch.set_num_threads(threads)

    def recon_dist(query, support):  # Equation 10: the official d x d inverse
        lam = support.size(1) / support.size(2) * r[0].exp() + 1e-6
        rho = r[1].exp()
        st = support.permute(0, 2, 1)
        sts = st.matmul(support)  # way, d, d
        hat = inverse(sts + torch.eye(d).unsqueeze(0) * lam).matmul(sts)
        q_bar = query.matmul(hat) * rho  # way, M, d
        return (q_bar - query.unsqueeze(0)).pow(2).sum(2).permute(1, 0)  # M, way

    g = torch.Generator().manual_seed(0)
    if task == 'meta':
        way, shot, query = shape
        x = torch.randn(way * (shot + query), 3, IMAGE, IMAGE, generator=g)
        target = torch.arange(way).repeat_interleave(query)
        pairs = torch.tensor([(i, j) for i in range(way) for j in range(i)])

        def loss_fn():
            fm = feature_map(x)
            support = fm[:way * shot].reshape(way, shot * resolution, d)
            queries = fm[way * shot:].reshape(way * query * resolution, d)
            neg = -recon_dist(queries, support).view(way * query, resolution, way).mean(1)
            nll = F.nll_loss(F.log_softmax(neg * scale, dim=1), target)
            s = support / support.norm()  # auxrank, over the class pairs as the official code does
            gram = s.index_select(0, pairs[:, 0]).matmul(s.index_select(0, pairs[:, 1]).permute(0, 2, 1))
            return nll + 0.03 * gram.pow(2).sum()
    else:
        size, classes = shape
        x = torch.randn(size, 3, IMAGE, IMAGE, generator=g)
        y = torch.randint(classes, (size,), generator=g)
        cat_mat = nn.Parameter(torch.randn(classes, resolution, d, generator=g))
        params.append(cat_mat)

        def loss_fn():
            fm = feature_map(x).reshape(size * resolution, d)
            neg = -recon_dist(fm, cat_mat).view(size, resolution, classes).mean(1)
            return F.nll_loss(F.log_softmax(neg * scale, dim=1), y)
    optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9, nesterov=True, weight_decay=5e-4)
    features.train()

    def step():
        loss = loss_fn()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()
    return step


def worker(kind, backbone, task, shape, threads):
    """Serve 'step' (time one step) and 'rss' (peak RSS in MB) on stdin/stdout, one JSON line each."""
    if kind == 'torch':
        import torch
        torch.set_num_threads(threads)
        step = torch_step_fn(backbone, task, shape)
    else:
        sys.path.insert(0, REPO)
        from runtime.process import setup_process
        setup_process()  # before paddle is imported (runtime/process.py says why)
        from runtime.device import set_threads
        set_threads(threads)
        step = paddle_step_fn(backbone, task, shape, kind)
    reply({'ready': True})
    for line in sys.stdin:
        if line.strip() == 'step':
            start = time.perf_counter()
            loss = step()
            reply({'seconds': time.perf_counter() - start, 'loss': loss})
        elif line.strip() == 'rss':
            reply({'rss_mb': peak_rss_mb()})
        else:
            return


def peak_rss_mb():
    """This process's peak RSS. VmHWM, because ru_maxrss keeps the parent's RSS at the fork (Linux)."""
    try:
        with open('/proc/self/status') as f:
            return next(int(line.split()[1]) for line in f if line.startswith('VmHWM')) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


MARK = '@@bench '  # replies start with this; anything else a library prints is skipped


def reply(obj):
    print(MARK + json.dumps(obj), flush=True)


# ---- the driver ----

VARIANTS = [('paddle', 'paddle (product): dygraph'), ('static', 'paddle, to_static backbone'),
            ('generic', 'paddle, generic MKL kernels (FRN_MKL_AVX2=0)'), ('torch', 'official PyTorch FRN step')]


class Worker:
    def __init__(self, kind, backbone, task, shape, threads, python):
        env = dict(os.environ)
        if kind == 'generic':
            env.pop('MKL_DEBUG_CPU_TYPE', None)
            env['FRN_MKL_AVX2'] = '0'
        command = [python, os.path.abspath(__file__), '--worker', kind, backbone, task, json.dumps(shape), str(threads)]
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, env=env, cwd=REPO)
        self.ask(None)

    def ask(self, command):
        if command:
            self.proc.stdin.write(command + '\n')
            self.proc.stdin.flush()
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f'the worker stopped (exit code {self.proc.wait()})')
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])

    def close(self):
        rss = self.ask('rss')['rss_mb']
        self.proc.stdin.close()
        self.proc.wait()
        return rss


def measure(backbone, task, shape, threads, repeats, interleave, torch_python, log):
    # to_static is measured on Conv-4 only in small mode: on ResNet-12 it did not help and costs minutes
    static = ['static'] if backbone == 'Conv4' or not interleave else []
    # imported here, not at the top: the torch worker runs this file too, and must not steer torch's MKL
    sys.path.insert(0, REPO)
    from runtime.process import amd_cpu_with_avx2
    generic = ['generic'] if amd_cpu_with_avx2() else []  # elsewhere it would be the product itself
    kinds = ['paddle'] + static + generic + (['torch'] if torch_python else [])
    steps = {k: [] for k in kinds}
    rss, errors = {}, {}

    def run(group):
        workers = {}
        for k in group:
            try:
                workers[k] = Worker(k, backbone, task, shape, threads, torch_python if k == 'torch' else sys.executable)
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
    base = median([s['seconds'] for s in steps['paddle'][1:]])
    for kind, name in VARIANTS:
        if kind not in kinds:
            continue
        timed = [s['seconds'] for s in steps[kind][1:]]
        row = {'backbone': backbone, 'task': task, 'shape': list(shape), 'variant': name, 'kind': kind,
               'seconds': median(timed) if timed else None, 'rss_mb': rss.get(kind), 'error': errors.get(kind),
               'steps': len(timed), 'threads': threads}
        row['ratio'] = row['seconds'] / base if timed else None
        if kind != 'torch' and steps[kind]:
            row['max_loss_diff'] = max(abs(a['loss'] - b['loss']) for a, b in zip(steps[kind], steps['paddle']))
        rows.append(row)
        if log:
            log(format_row(row))
    return rows


def median(values):
    values = sorted(values)
    n = len(values)
    return (values[n // 2] + values[(n - 1) // 2]) / 2


def default_torch_python():
    """FRN_TORCH_PYTHON, or this Python when it has torch, else None (the torch column is skipped)."""
    if os.environ.get('FRN_TORCH_PYTHON'):
        return os.environ['FRN_TORCH_PYTHON']
    try:
        import torch  # noqa: F401
        return sys.executable
    except ImportError:
        return None


def run(small=True, threads=None, log=None, torch_python=None):
    sys.path.insert(0, REPO)
    from runtime.device import default_threads
    threads = threads or min(2, default_threads())
    torch_python = torch_python or default_torch_python()
    if log and not torch_python:
        log('torch not found (pass --torch_python or set FRN_TORCH_PYTHON): the official PyTorch column is skipped')
    rows = []
    for backbone in ('Conv4', 'ResNet12'):
        for task, shape in shapes(small).items():
            rows += measure(backbone, task, shape, threads, repeats=3, interleave=small, torch_python=torch_python,
                            log=log)
    return rows


def describe(row):
    if row['task'] == 'meta':
        way, shot, query = row['shape']
        return f'meta-train episode {way}-way {shot}-shot {query}-query ({way * (shot + query)} images)'
    return f'pretrain batch of {row["shape"][0]}'


HEADER = f'{"backbone":<10}{"step":<48}{"variant":<34}{"s/step":>9}{"ratio":>8}{"peak RSS MB":>13}{"loss diff":>11}'


def format_row(row):
    if row['seconds'] is None:
        return f'{row["backbone"]:<10}{describe(row):<48}{row["variant"]:<34}  failed: {row["error"]}'
    diff = row.get('max_loss_diff')
    return (f'{row["backbone"]:<10}{describe(row):<48}{row["variant"]:<34}{row["seconds"]:>9.3f}{row["ratio"]:>7.2f}x'
            f'{row["rss_mb"] or 0:>13.0f}{"" if diff is None else f"{diff:.1e}":>11}')


def markdown(rows):
    lines = ['| backbone | step | variant | s/step | vs product | peak RSS (MB) | max loss difference from the product |',
             '|---|---|---|---|---|---|---|']
    for r in rows:
        if r['seconds'] is None:
            lines.append(f'| {r["backbone"]} | {describe(r)} | {r["variant"]} | failed: {r["error"]} | | | |')
            continue
        ratio = (f'paddle / torch = {1 / r["ratio"]:.2f}' if r['kind'] == 'torch' else f'{r["ratio"]:.2f}x')
        diff = r.get('max_loss_diff')
        lines.append(f'| {r["backbone"]} | {describe(r)} | {r["variant"]} | {r["seconds"]:.3f} | {ratio} | '
                     f'{r["rss_mb"]:,.0f} | {"" if diff is None else ("0 (bitwise)" if diff == 0 else f"{diff:.1e}")} |')
    return '\n'.join(lines)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == '--worker':
        kind, backbone, task, shape, threads = sys.argv[2:7]
        worker(kind, backbone, task, tuple(json.loads(shape)), int(threads))
        return
    sys.path.insert(0, REPO)
    from benchmarks.bench_data import size_args
    parser = size_args(__doc__.split('\n')[0])
    parser.add_argument('--torch_python', default=None,
                        help='a Python with torch for the official step (default: FRN_TORCH_PYTHON, or this Python '
                             'if it has torch)')
    args = parser.parse_args()
    print(HEADER)
    run(small=not args.full, threads=args.threads, log=print, torch_python=args.torch_python)


if __name__ == '__main__':
    main()
