"""Run every benchmark and write benchmarks/RESULTS.md.

    python benchmarks/run_all.py                                   # small sizes (default without a GPU)
    python benchmarks/run_all.py --full                            # full sizes, for a GPU
    python benchmarks/run_all.py --torch_python ../venv-torch/bin/python   # adds the official PyTorch step

Each benchmark reports medians of several runs and ratios against a baseline measured
in the same run; RESULTS.md starts with the machine, the versions and the load average,
since timings on a shared machine move with it.
"""
import datetime
import os
import platform
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runtime.process import setup_process  # noqa: E402

PROCESS = setup_process()  # before paddle is imported and does math (runtime/process.py says why)

import numpy as np  # noqa: E402
import PIL  # noqa: E402

import utils  # noqa: E402
import paddle  # noqa: E402
from benchmarks import bench_data, bench_eval, bench_frn_head, bench_train_step  # noqa: E402
from runtime.device import default_threads, set_threads  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def cpu_model():
    try:
        with open('/proc/cpuinfo') as f:
            return next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def memory_gb():
    try:
        with open('/proc/meminfo') as f:
            return int(f.readline().split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        return float('nan')


def torch_version(python):
    if not python:
        return 'not used'
    result = subprocess.run([python, '-c', 'import torch; print(torch.__version__)'], capture_output=True, text=True)
    return result.stdout.strip() or 'not importable'


def load_average():
    return ' / '.join(f'{x:.2f}' for x in os.getloadavg()) if hasattr(os, 'getloadavg') else 'n/a'


def machine(threads, full, torch_python):
    return [f'- date: {datetime.datetime.now().isoformat(timespec="seconds")}; mode: {"full" if full else "small"}',
            f'- CPU: {cpu_model()}, {os.cpu_count()} logical cores ({default_threads()} usable), '
            f'{memory_gb():.0f} GB RAM; benchmarks use {threads} thread(s)',
            f'- device: {"GPU" if bench_data.has_gpu() else "CPU"}; Python {platform.python_version()}, '
            f'paddlepaddle {paddle.__version__}, numpy {np.__version__}, Pillow {PIL.__version__}, '
            f'torch {torch_version(torch_python)} (separate interpreter, comparison only)',
            f'- MKL_DEBUG_CPU_TYPE: {os.environ.get("MKL_DEBUG_CPU_TYPE", "not set")}'
            f'{" (set by runtime/process.py: AMD CPU with AVX2)" if PROCESS.mkl_avx2_set else ""}; '
            f'load average (1/5/15 min) at the start: {load_average()}']


def head_markdown(rows):
    lines = ['| 5-way / 20-way shape | kr | query rows | official d x d inverse (ms) | ours (ms) | wall ratio | '
             'CPU-time ratio | our max rel. error | official max rel. error |', '|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        lines.append(f'| {r["shape"]} | {r["kr"]} | {r["query_rows"]} | {r["official_ms"]:.0f} | {r["ours_ms"]:.0f} | '
                     f'{r["speedup"]:.1f}x | {r["cpu_speedup"]:.1f}x | {r["ours_max_rel_err"]:.1e} | '
                     f'{r["official_max_rel_err"]:.1e} |')
    return '\n'.join(lines)


SECTIONS = [
    ('FRN head solver', 'benchmarks/bench_frn_head.py',
     'One episode\'s FRN loss, forward and backward, float32, ResNet-12 shapes (d = 640, 25 positions per image): '
     'the official d x d inverse against our solver (Cholesky on the smaller matrix). Ratio = official / ours.',
     lambda small, threads, torch_python: bench_frn_head.run(small=small, threads=threads), head_markdown),
    ('Evaluation: cached feature maps vs per episode', 'benchmarks/bench_eval.py',
     'Gain = time of the per-episode path (the official protocol, `--no_feature_cache`) / time of the cached path, '
     'for E episodes of a test split the size of mini-ImageNet\'s (20 classes x 600), from per-image and per-episode '
     'costs measured on real photos (see the script\'s docstring). The cached path embeds each distinct image once, '
     'so its cost stops growing with the images once every image is in; the gain grows with E. At 2,000 5-shot '
     'episodes (100 images each) the per-episode path runs the backbone 200,000 times and the cached path 12,000 '
     'times, so 16.7x is the ceiling there; test.py\'s default of 5 tasks x 2,000 episodes shares one cache '
     '(the 10,000 column). "same accuracies": both paths gave identical accuracies on the measured episodes.',
     lambda small, threads, torch_python: bench_eval.run(small=small, threads=threads), bench_eval.markdown),
    ('Data: JPEG decoding vs the image cache', 'benchmarks/bench_data.py',
     'Images per second of the loader\'s per-image work, from the files vs from `--cache_dir` (one process, medians '
     'of alternating passes). "read + transform" is what a DataLoader worker does per image; "image read only" '
     'is the part the cache replaces. Train transforms still run the whole augmentation (RandomResizedCrop, '
     'ColorJitter, flip), which bounds their gain. The DataLoader rows compare workers against 0 workers on the '
     'same source, worker start-up included.',
     lambda small, threads, torch_python: bench_data.run(small=small, threads=threads), bench_data.markdown),
    ('Training step', 'benchmarks/bench_train_step.py',
     'Seconds per optimizer step (forward, loss, backward, Momentum update) on random 84 px images, median of 3 '
     'steps after a warm-up, each variant in its own process taking steps in turn with the others; peak RSS of '
     'that process. "max loss difference": the largest difference of the variant\'s losses from the product\'s over '
     'the same steps (0 = bitwise the same training). Tried and not kept: `paddle.jit.to_static` on the backbone '
     '(on ResNet-12 bitwise the same, no faster, about 50% more memory; on Conv-4 it traces the plain block, as '
     'the eager training shortcut of network/conv4.py cannot be traced, and is slower); `FLAGS_use_mkldnn` '
     '(dygraph convolutions give bitwise the same output with it, so the same im2col + GEMM kernel runs); AMP '
     '(a no-op on CPU). Kept: on AMD CPUs with AVX2, `runtime/process.py` sets `MKL_DEBUG_CPU_TYPE=5` (unless you set it, '
     'or `FRN_MKL_AVX2=0`), so that the MKL inside Paddle uses its AVX2 kernels instead of slow generic ones; the '
     '"generic MKL kernels" rows are the product without it. A different summation order (losses differ by ~1e-6), '
     'not a different computation.',
     lambda small, threads, torch_python: bench_train_step.run(small=small, threads=threads,
                                                               torch_python=torch_python),
     bench_train_step.markdown),
]


def main():
    parser = bench_data.size_args(__doc__.split('\n')[0])
    parser.add_argument('--torch_python', default=None,
                        help='a Python with torch, for the official PyTorch training step (default: FRN_TORCH_PYTHON)')
    parser.add_argument('--out', default=os.path.join(HERE, 'RESULTS.md'), help='where to write the results')
    args = parser.parse_args()
    threads = set_threads(args.threads or min(2, default_threads()))
    torch_python = args.torch_python or bench_train_step.default_torch_python()
    command = 'python benchmarks/run_all.py' + (' --full' if args.full else '') + (
        ' --torch_python PYTHON_WITH_TORCH' if torch_python else '')
    parts = ['# Benchmarks', '', f'Written by `{command}` (about 10 minutes on 2 CPU cores in small mode). '
             f'Rerun it to regenerate this file; each script also runs alone (`--small`, `--full`).', '',
             '## Machine', ''] + machine(threads, args.full, torch_python)
    for title, script, note, run, markdown in SECTIONS:
        print(f'== {title} ({script})', flush=True)
        start = time.perf_counter()
        rows = run(not args.full, threads, torch_python)
        seconds = time.perf_counter() - start
        parts += ['', f'## {title}', '', f'`python {script}{" --full" if args.full else ""}`, '
                  f'{seconds:.0f} s here. {note}', '', markdown(rows)]
        print(markdown(rows), flush=True)
    parts += ['', f'Load average (1/5/15 min) at the end: {load_average()}.', '']
    utils.atomic_write_text('\n'.join(parts), args.out)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
