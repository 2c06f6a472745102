"""Run every benchmark and write benchmarks/RESULTS.md, from one run on this machine.

    python benchmarks/run_all.py                                   # our own benchmarks, small sizes
    python benchmarks/run_all.py --official ../official --torch_python ../venvtorch/bin/python \
        --val_data ../data/cars_fewshot/val --val_torch_python ../venvtv/bin/python \
        --whole_run_data ../data/cars_fewshot                      # adds the official comparisons
    python benchmarks/run_all.py ... --plan                        # what that run computes, and about how long
    python benchmarks/run_all.py ... --quick --threads 1           # checks the harness in minutes; measures nothing

Each benchmark reports medians of several runs and ratios against a baseline measured in the same run;
RESULTS.md starts with the machine, the versions, the load average and the command, since timings on a
shared machine move with them. A section whose flags were not given says so.
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
import shlex  # noqa: E402

from benchmarks import (bench_data, bench_eval, bench_frn_head, bench_official, bench_train_step,  # noqa: E402
                        bench_whole_run)
from benchmarks.workers import cpu_model  # noqa: E402
from runtime.device import default_threads, set_threads  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


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


def machine(threads, mode, torch_python):
    return [f'- date: {datetime.datetime.now().isoformat(timespec="seconds")}; mode: {mode}',
            f'- CPU: {cpu_model()}, {os.cpu_count()} logical cores ({default_threads()} usable), '
            f'{memory_gb():.0f} GB RAM; benchmarks use {threads} thread(s)',
            f'- device: {"GPU" if bench_data.has_gpu() else "CPU"}; Python {platform.python_version()}, '
            f'paddlepaddle {paddle.__version__}, numpy {np.__version__}, Pillow {PIL.__version__}, '
            f'torch {torch_version(torch_python)} (separate interpreter, the official code only)',
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


def small(args):
    return args.quick or not args.full


SECTIONS = [
    ('FRN head solver', 'benchmarks/bench_frn_head.py',
     'One episode\'s FRN loss, forward and backward, float32, ResNet-12 shapes (d = 640, 25 positions per image): '
     'the official d x d inverse against our solver (Cholesky on the smaller matrix). Ratio = official / ours.',
     lambda args, threads: bench_frn_head.run(small=small(args), threads=threads), head_markdown, ()),
    ('Evaluation: cached feature maps vs per episode', 'benchmarks/bench_eval.py',
     'Gain = time of the per-episode path (the official protocol, `--no_feature_cache`) / time of the cached path, '
     'for E episodes of a test split the size of mini-ImageNet\'s (20 classes x 600), from per-image and per-episode '
     'costs measured on real photos (see the script\'s docstring). The cached path embeds each distinct image once, '
     'so its cost stops growing with the images once every image is in; the gain grows with E. At 2,000 5-shot '
     'episodes (100 images each) the per-episode path runs the backbone 200,000 times and the cached path 12,000 '
     'times, so 16.7x is the ceiling there; test.py\'s default of 5 tasks x 2,000 episodes shares one cache '
     '(the 10,000 column). "same accuracies": both paths gave identical accuracies on the measured episodes.',
     lambda args, threads: bench_eval.run(small=small(args), threads=threads), bench_eval.markdown, ()),
    ('Data: JPEG decoding vs the image cache', 'benchmarks/bench_data.py',
     'Images per second of the loader\'s per-image work, from the files vs from `--cache_dir` (one process, medians '
     'of alternating passes). "read + transform" is what a DataLoader worker does per image; "image read only" '
     'is the part the cache replaces. Train transforms still run the whole augmentation (RandomResizedCrop, '
     'ColorJitter, flip), which bounds their gain. The DataLoader rows compare workers against 0 workers on the '
     'same source, worker start-up included.',
     lambda args, threads: bench_data.run(small=small(args), threads=threads), bench_data.markdown, ()),
    ('Training step: ways of running ours', 'benchmarks/bench_train_step.py',
     'Seconds per optimizer step (forward, loss, backward, Momentum update) of our step on random 84 px images, '
     'median of the timed steps after a warm-up, each variant in its own process (taking steps in turn with the '
     'others in small mode); peak RSS of that process. "max loss difference": the largest difference of the '
     'variant\'s losses from the product\'s over the same steps (0 = bitwise the same training). The generic MKL '
     'rows are the product without the `MKL_DEBUG_CPU_TYPE=5` that `runtime/process.py` sets on AMD CPUs with '
     'AVX2; the Paddle-version rows (with `--other_paddle_python`) run the same step under another Paddle.',
     lambda args, threads: bench_train_step.run(small=small(args), threads=threads,
                                                other_python=args.other_paddle_python,
                                                repeats=1 if args.quick else 3),
     bench_train_step.markdown, ()),
]

OFFICIAL_NOTE = (
    'Our training step against the unmodified official PyTorch code (its models, optimizer and training loops; '
    '`.cuda()` made a no-op) at the recipes\' shapes, on the same random 84 px images; each implementation in its '
    'own process, one warm-up step, then steps in turn (ResNet-12 rows: whole processes in turn, as each needs '
    'most of the memory). Cells: median s/step (min-max), images/s; official / ours above 1 means ours is faster. '
    '"Shared": the same step with each batch shared by processes of one thread each, one per thread of the row '
    '(`--share_batches`, network/rank_split.py: the same maths as one process), on the same cores; its peak RSS '
    'is the sum over its processes. '
    'A step that failed shows its error (the official 640 x 640 inverse can fail under torch 2.13 with 2 threads, '
    'so the ResNet-12 rows run at 1 and 2 threads). The validation rows (with `--val_data`) time one validation '
    'as each trainer runs it on real photos: the official `trainers/eval.meta_test` (its DataLoader, 3 workers) '
    'against ours (feature cache), data loading included.')
WHOLE_RUN_NOTE = (
    'Whole epochs of the Cars Conv-4 FRN recipe (20-way 5-shot 15-query pass epochs, then one validation): the '
    'official `train.py` (its 3 loader workers, torch on all cores; the final test skipped) against our '
    '`meta_train.py` at several `--threads`/`--num_workers`, and as 2 processes sharing each episode under '
    '`paddle.distributed.launch` (`--share_batches`; rank 0 validates with its one thread), on the same photos. '
    'Wall time of the whole process, split into training and validation.')


def official_options(args, threads):
    return bench_official.parser().parse_args(
        ['--official', args.official, '--torch_python', args.torch_python]
        + (['--val_data', args.val_data, '--val_torch_python', args.val_torch_python or args.torch_python]
           if args.val_data else []) + (['--quick'] if args.quick else [])
        + (['--threads', str(args.threads)] if args.threads else [])
        + (['--only', *args.only] if args.only else [])
        + (['--val_episodes', str(args.val_episodes)] if args.val_episodes else []))


def whole_run_options(args):
    return bench_whole_run.parser().parse_args(
        ['--official', args.official, '--torch_python', args.val_torch_python or args.torch_python,
         '--data', args.whole_run_data] + (['--quick'] if args.quick else []))


COMPARISONS = [
    ('Training steps and validation against the official PyTorch code', 'benchmarks/bench_official.py',
     OFFICIAL_NOTE, lambda args, threads: bench_official.run(official_options(args, threads)),
     bench_official.markdown, ('official', 'torch_python')),
    ('Whole run against the official trainer', 'benchmarks/bench_whole_run.py', WHOLE_RUN_NOTE,
     lambda args, threads: bench_whole_run.run(whole_run_options(args)), bench_whole_run.markdown,
     ('official', 'torch_python', 'whole_run_data')),
]

# rough seconds per image of one training step (forward and backward), from issue 21's measurements on a
# 2-core AMD EPYC (Conv-4 400-image episodes about 5-8 s at 2 threads, ResNet-12 100-image episodes about
# 29 s at 1 thread): for --plan's estimate of a run's length, never a result
STEP_SECONDS_PER_IMAGE = {('Conv4', 2): 0.016, ('Conv4', 1): 0.028, ('ResNet12', 2): 0.17, ('ResNet12', 1): 0.29}
FORWARD_SHARE = 0.35  # a validation image costs a forward pass, about a third of a training step's
PROCESS_START = 15  # seconds to start a worker process (imports, model)
SMALL_SECTIONS = 5 * 60  # the four benchmarks of ours in small mode, from their docstrings


def plan(args):
    """Lines saying what the run computes and about how long it takes, from the number of steps and images."""
    lines, total = [], SMALL_SECTIONS if not args.full else float('nan')
    lines.append(f'our benchmarks (head, evaluation, data, step variants): about {SMALL_SECTIONS // 60} min '
                 f'in small mode')
    if args.official and args.torch_python:
        options = official_options(args, args.threads)
        for name, task, steps, n_images in bench_official.plan(options):
            per_step = n_images * STEP_SECONDS_PER_IMAGE[(task[0], task[3])]
            processes = options.rounds if task[0] in bench_official.HEAVY else 1
            seconds = 2 * (steps * per_step + processes * PROCESS_START)
            total += seconds
            lines.append(f'{name}, {task[3]} thread(s): {steps} steps (warm-ups included) of {n_images} images per implementation, '
                         f'about {seconds / 60:.0f} min')
        if args.val_data:
            for backbone, shot in bench_official.VALIDATIONS:
                episodes = bench_official.val_episodes(options)
                n_images = episodes * 5 * (shot + 16)
                split = sum(len(files) for _, _, files in os.walk(args.val_data))
                seconds = FORWARD_SHARE * STEP_SECONDS_PER_IMAGE[(backbone, 2)] * (n_images + split)
                total += seconds
                lines.append(f'{backbone} {shot}-shot validation: official {n_images:,} images through the backbone, '
                             f'ours {split:,} (each image once): about {seconds / 60:.0f} min')
    if args.official and args.torch_python and args.whole_run_data:
        processes, epochs, episodes = bench_whole_run.plan(whole_run_options(args))
        n_images = 400 * epochs if args.quick else bench_whole_run.images(args.whole_run_data, epochs)
        val_images = episodes * 5 * 21
        split = sum(len(files) for _, _, files in os.walk(os.path.join(args.whole_run_data, 'val')))
        per_image = STEP_SECONDS_PER_IMAGE[('Conv4', 2)]
        seconds = processes * (n_images * per_image + PROCESS_START) + FORWARD_SHARE * per_image * (
            val_images + (processes - 1) * split)
        total += seconds
        lines.append(f'whole run: {processes} runs of {epochs} epoch(s) of {n_images:,} training images; official '
                     f'validation {val_images:,} images, ours {split:,} each: about {seconds / 60:.0f} min')
    lines.append(f'total: about {total / 3600:.1f} h' if total >= 3600 else f'total: about {total / 60:.0f} min')
    return lines


def section(title, script, note, seconds, body):
    return ['', f'## {title}', '', f'`{script}`{"" if seconds is None else f", {seconds:.0f} s here"}. {note}', '',
            body]


def parse_args():
    parser = bench_data.size_args(__doc__.split('\n')[0])
    parser.add_argument('--official', default=None, help='a copy of the official FRN repository (Tsingularity/FRN)')
    parser.add_argument('--torch_python', default=None, help='a Python with torch, for the official training steps')
    parser.add_argument('--val_data', default=None,
                        help='a class-folder split (e.g. ../data/cars_fewshot/val), for the validation rows')
    parser.add_argument('--val_torch_python', default=None,
                        help='a Python with torch and torchvision, for the official validation and whole run '
                             '(default: --torch_python)')
    parser.add_argument('--whole_run_data', default=None,
                        help='a class-folder dataset (train/, val/, test/), for the whole-run comparison')
    parser.add_argument('--other_paddle_python', default=None,
                        help='a Python with another Paddle version (e.g. ../venv26/bin/python), for the step variants')
    parser.add_argument('--only', nargs='+', default=None,
                        help='official comparison: only the step rows whose name contains one of these')
    parser.add_argument('--val_episodes', type=int, default=None,
                        help='official comparison: validation episodes (default: the official 1,000)')
    parser.add_argument('--quick', action='store_true',
                        help='check the harness end to end in minutes: smallest shapes, one step (measures nothing)')
    parser.add_argument('--plan', action='store_true', help='print what the run computes and its rough length, '
                                                            'then stop')
    parser.add_argument('--out', default=os.path.join(HERE, 'RESULTS.md'), help='where to write the results')
    args = parser.parse_args()
    for flag in ('official', 'val_data', 'whole_run_data'):
        if getattr(args, flag) and not os.path.isdir(getattr(args, flag)):
            parser.error(f'--{flag} {getattr(args, flag)}: no such folder')
    if (args.val_data or args.whole_run_data) and not (args.official and args.torch_python):
        parser.error('--val_data and --whole_run_data need --official and --torch_python')
    return args


def not_run(needs):
    return 'not run (needs ' + ' and '.join(f'--{flag}' for flag in needs) + ')'


def main():
    args = parse_args()
    command = shlex.join([sys.executable] + sys.argv)
    if args.plan:
        print('\n'.join([command] + plan(args)))
        return
    threads = set_threads(args.threads or min(2, default_threads()))
    mode = ('quick (checks the harness; the numbers measure nothing)' if args.quick
            else 'full' if args.full else 'small')
    parts = ['# Benchmarks', '', f'Written by one run of `{command}`.', '',
             'Rerun it to regenerate this file; each script also runs alone (see its docstring).', '',
             '## Machine', ''] + machine(threads, mode, args.torch_python)
    for title, script, note, run, markdown, needs in SECTIONS + COMPARISONS:
        if not all(getattr(args, flag) for flag in needs):
            parts += section(title, script, note, None, not_run(needs))
            continue
        print(f'== {title} ({script})', flush=True)
        start = time.perf_counter()
        rows = run(args, threads)
        seconds = time.perf_counter() - start
        parts += section(title, script, note, seconds, markdown(rows))
        if script.endswith('bench_official.py') and not args.val_data:
            parts += ['', 'Validation rows: ' + not_run(('val_data',)) + '.']
        print(markdown(rows), flush=True)
    parts += ['', f'Load average (1/5/15 min) at the end: {load_average()}.', '']
    utils.atomic_write_text('\n'.join(parts), args.out)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
