"""Where a Conv-4 training step still loses to the official code: one 64 -> 64 3x3 convolution, Paddle's
eager kernel against torch's, at the shapes of Conv-4's blocks 2 to 4.

    python benchmarks/bench_conv.py --torch_python ../venvtorch/bin/python [--threads 2] [--steps 3] \
        [--out benchmarks/CONV.md]

Our first block and the FRN head are faster than the official ones (docs/performance.md); blocks 2 to 4
are plain convolutions, BatchNorm and pooling, and there the convolution is most of the time (the
profile of a step: paddle.profiler's operator view). This times that convolution alone, forward and
forward + backward (gradients of the input and the weight), in each library on the same shapes: the
batch of a 20-way 5-shot 15-query episode (400 images) and a pretraining batch (128), inputs of 42, 21
and 10 pixels. Each library runs in its own process, the two in turn, `--steps` timed repetitions after
one warm-up; the median is reported, with torch / paddle (above 1: Paddle is faster). --out writes the
table with the machine, the versions and the load average (timings on a shared machine move with it).
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
from benchmarks.workers import Worker, cpu_model, median, reply  # noqa: E402  (no paddle or torch there)

SHAPES = [(400, 42), (400, 21), (400, 10), (128, 42), (128, 21), (128, 10)]  # (images, side) of a block's input
CHANNELS = 64
VERSION = "import {0}, json; print('@@bench ' + json.dumps({{'version': {0}.__version__}}))"


def worker(library, images, side, threads, steps):
    """Time forward and forward + backward of one convolution; reply once with both medians."""
    if library == 'torch':
        import torch
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        x = torch.randn(images, CHANNELS, side, side, requires_grad=True)
        w = torch.randn(CHANNELS, CHANNELS, 3, 3, requires_grad=True)
        grad = torch.randn(images, CHANNELS, side, side)

        def forward():
            with torch.no_grad():
                torch.nn.functional.conv2d(x, w, padding=1)

        def both():
            x.grad = w.grad = None
            torch.nn.functional.conv2d(x, w, padding=1).backward(grad)
    else:
        from runtime.process import setup_process
        setup_process()  # as every command of ours does, before paddle is imported
        from runtime.device import set_threads
        set_threads(threads)
        import paddle
        import paddle.nn.functional as F
        paddle.seed(0)
        x = paddle.randn([images, CHANNELS, side, side])
        x.stop_gradient = False
        w = paddle.randn([CHANNELS, CHANNELS, 3, 3])
        w.stop_gradient = False
        grad = paddle.randn([images, CHANNELS, side, side])

        def forward():
            with paddle.no_grad():
                F.conv2d(x, w, padding=1)

        def both():
            x.clear_gradient()
            w.clear_gradient()
            F.conv2d(x, w, padding=1).backward(grad)

    times = {}
    for name, fn in (('forward', forward), ('forward_backward', both)):
        fn()
        seconds = []
        for _ in range(steps):
            start = time.perf_counter()
            fn()
            seconds.append(time.perf_counter() - start)
        times[name] = median(seconds)
    reply(times)


def measure(torch_python, threads, steps, log=print):
    rows = []
    for images, side in SHAPES:
        row = {'images': images, 'side': side, 'threads': threads}
        for library, python in (('torch', torch_python), ('paddle', sys.executable)):
            command = [python, os.path.abspath(__file__), '--worker', library, str(images), str(side), str(threads),
                       str(steps)]
            row[library] = Worker(command, cwd=REPO).ready
        for part in ('forward', 'forward_backward'):
            row[f'ratio_{part}'] = row['torch'][part] / row['paddle'][part]
        log(format_row(row))
        rows.append(row)
    return rows


def format_row(row):
    return (f"{row['images']} x {CHANNELS} x {row['side']} x {row['side']}, {row['threads']} threads | forward: "
            f"torch {row['torch']['forward']:.3f} s, paddle {row['paddle']['forward']:.3f} s "
            f"({row['ratio_forward']:.2f}x) | forward + backward: torch {row['torch']['forward_backward']:.3f} s, "
            f"paddle {row['paddle']['forward_backward']:.3f} s ({row['ratio_forward_backward']:.2f}x)")


def markdown(rows):
    lines = ['| input (images x channels x side x side) | threads | forward: torch / paddle (s) | torch / paddle '
             '| forward + backward: torch / paddle (s) | torch / paddle |', '|---|---|---|---|---|---|']
    for r in rows:
        lines.append(f"| {r['images']} x {CHANNELS} x {r['side']} x {r['side']} | {r['threads']} "
                     f"| {r['torch']['forward']:.3f} / {r['paddle']['forward']:.3f} | {r['ratio_forward']:.2f} "
                     f"| {r['torch']['forward_backward']:.3f} / {r['paddle']['forward_backward']:.3f} "
                     f"| {r['ratio_forward_backward']:.2f} |")
    return '\n'.join(lines)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == '--worker':
        library, images, side, threads, steps = sys.argv[2:7]
        worker(library, int(images), int(side), int(threads), int(steps))
        return
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--torch_python', required=True, help='a Python with torch (CPU) installed')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--steps', type=int, default=3, help='timed repetitions after one warm-up')
    parser.add_argument('--out', help='write the table, with the machine and the command, to this Markdown file')
    args = parser.parse_args()
    load = os.getloadavg()[0]
    rows = measure(args.torch_python, args.threads, args.steps)
    table = markdown(rows)
    print(table)
    if args.out:
        versions = {row_lib: Worker([python, '-c', VERSION.format(row_lib)], cwd=REPO).ready['version']
                    for row_lib, python in (('torch', args.torch_python), ('paddle', sys.executable))}
        text = (f"# Conv-4's 64 -> 64 convolution: Paddle's eager kernel against torch's\n\n{cpu_model()}, "
                f"{os.cpu_count()} logical cores; paddle {versions['paddle']}, torch {versions['torch']}; load "
                f'average {load:.2f} at the start. Written by `python benchmarks/bench_conv.py --threads '
                f'{args.threads} --steps {args.steps} --out ...`; docs/performance.md says what it shows.\n\n'
                f'{table}\n\n```json\n{json.dumps(rows)}\n```\n')
        with open(args.out + '.tmp', 'w') as f:
            f.write(text)
        os.replace(args.out + '.tmp', args.out)


if __name__ == '__main__':
    main()
