"""Data loading speed: images per second, decoding the JPEGs vs reading the image cache.

    python benchmarks/bench_data.py            # small (default without a GPU): about a minute on 2 cores
    python benchmarks/bench_data.py --full     # more images and passes

Each row times the product's own code on the same images, one process, files and cache
both in the OS page cache: `split.load_image(i)` plus the loader's transform, for a
plain split (decode the JPEG) and for its `--cache_dir` copy (data/image_cache.py).
Passes alternate between the two, and each side reports its median pass.
- eval, read + transform: the eval transform (resize, centre crop, normalise) vs the
  'eval' cache, whose tensors are bit-identical (checked here too);
- train, read + transform: the train transform (RandomResizedCrop, ColorJitter, flip,
  normalise) vs the 'train' cache (shorter side 128), which still runs the augmentation;
- train, image read only: decoding the file vs reading the cached copy, the part the
  cache replaces;
on real photos (Tiny-ImageNet, 32 x 32 JPEGs, from ../shared) and on synthetic
full-size 500 x 375 JPEGs. The last rows run a DataLoader (batches of 128, train
transform) from the files and from the cache with 0 or 2 workers, through pipes or
shared memory; their baseline is the same source with 0 workers.
"""
import argparse
import csv
import os
import statistics
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runtime.process import setup_process  # noqa: E402

setup_process()  # before paddle is imported and does math (runtime/process.py says why)

import numpy as np  # noqa: E402
from PIL import Image, ImageFilter  # noqa: E402

import data.datamgr as datamgr  # noqa: E402
from data.datamgr import EpochLoader, split_transform  # noqa: E402
from data.dataset import ShuffleBatchSampler, SimpleDataset, transform_input  # noqa: E402
from data.filelist import read_split  # noqa: E402
from runtime.device import default_threads, gpu_usable, set_threads  # noqa: E402
from data.image_cache import open_cache  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_TAR = os.path.join(os.environ.get('FRN_SHARED', os.path.join(os.path.dirname(REPO), 'shared')),
                        'data', 'tinyimagenet32_miniformat.tar.gz')


# ---- data for the benchmarks (also used by bench_eval.py) ----

def real_photos(dest, n_classes, per_class, split='test'):
    """Class-per-folder copy of the first classes of a Tiny-ImageNet split: dest/<split>/<class>/<file>.

    Returns the folder, or None when the archive is not there (callers fall back to synthetic photos).
    """
    if not os.path.isfile(TINY_TAR):
        return None
    with tarfile.open(TINY_TAR) as tar:  # the CSVs come last in the archive
        rows = next(list(csv.reader(tar.extractfile(m).read().decode().splitlines()))[1:]
                    for m in tar if m.name.endswith(f'/{split}.csv'))
    classes = sorted({label for _, label in rows})[:n_classes]
    wanted = {}
    for cls in classes:
        for name, _ in [r for r in rows if r[1] == cls][:per_class]:
            wanted[name] = cls
    with tarfile.open(TINY_TAR) as tar:
        for member in tar:
            name = os.path.basename(member.name)
            if name in wanted:
                folder = os.path.join(dest, split, wanted[name])
                os.makedirs(folder, exist_ok=True)
                with open(os.path.join(folder, name), 'wb') as f:
                    f.write(tar.extractfile(member).read())
    return dest


def synthetic_photos(dest, n_classes, per_class, size=(500, 375), split='test', seed=0):
    """Class-per-folder JPEGs (quality 90) of blurred coloured noise with edges: they compress like photos."""
    rng = np.random.default_rng(seed)
    w, h = size
    for c in range(n_classes):
        folder = os.path.join(dest, split, f'class{c:03d}')
        os.makedirs(folder, exist_ok=True)
        for i in range(per_class):
            coarse = Image.fromarray(rng.integers(0, 256, (h // 25, w // 25, 3), dtype=np.uint8)).resize(size)
            fine = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).filter(ImageFilter.GaussianBlur(2))
            Image.blend(coarse, fine, 0.35).save(os.path.join(folder, f'{i:05d}.jpg'), quality=90)
    return dest


def photo_split(dest, n_classes, per_class, split='test'):
    """(SplitList, description): real photos when the archive is there, else synthetic 84 x 84 ones."""
    root = real_photos(dest, n_classes, per_class, split)
    what = f'Tiny-ImageNet {split} photos (32 x 32 JPEG)'
    if root is None:
        root = synthetic_photos(dest, n_classes, per_class, size=(84, 84), split=split)
        what = f'synthetic 84 x 84 JPEGs ({TINY_TAR} not found)'
    return read_split(root, split, layout='folders'), what


def median(values):
    return float(statistics.median(values))


# ---- the benchmark ----

def images_per_second(load, transform, n, passes):
    """Median over passes of n / seconds to load and transform images 0..n-1."""
    rates = []
    for _ in range(passes):
        start = time.perf_counter()
        for i in range(n):
            transform(load(i))
        rates.append(n / (time.perf_counter() - start))
    return rates


def compare(split, what, form, cache_dir, passes, log, load_only=False):
    """One row: the loader's per-image work (or, with load_only, the image read alone) from the files vs the cache."""
    name = 'train' if form == 'train' else 'test'
    aug = form == 'train'
    start = time.perf_counter()
    cached = open_cache(split, cache_dir, name, 84, log=lambda m: None)
    build_rate = len(split) / (time.perf_counter() - start)
    plain_transform, cached_transform = (split_transform(s, 84, aug, 'mini_imagenet') for s in (split, cached))
    if load_only:
        plain_transform = cached_transform = lambda img: img  # noqa: E731
    same = None
    if form == 'eval':
        same = all(np.array_equal(plain_transform(transform_input(split, i)), cached_transform(transform_input(cached, i)))
                   for i in range(0, len(split), 7))
    decode, cache = [], []
    for _ in range(passes):  # alternate, so both sides see the same machine load
        decode += images_per_second(lambda i: transform_input(split, i), plain_transform, len(split), 1)
        cache += images_per_second(lambda i: transform_input(cached, i), cached_transform, len(split), 1)
    task = f'{form}, {"image read only" if load_only else "read + transform"}: {what}'
    row = {'task': task, 'images': len(split), 'passes': passes, 'decode_per_s': median(decode),
           'cache_per_s': median(cache), 'build_per_s': build_rate, 'bit_identical': same}
    row['ratio'] = row['cache_per_s'] / row['decode_per_s']
    if log:
        log(format_row(row))
    return row


def loader_rows(split, what, cache_dir, n_batches, passes, log):
    """A DataLoader, batches of 128 with the train transform, from the files and from the cache:
    0 workers, 2 workers through pipes, 2 workers through shared memory (worker start-up included)."""
    cached = open_cache(split, cache_dir, 'train', 84, log=lambda m: None)
    setups = [(source, workers, shm) for source in ('files', 'cache') for workers, shm in ((0, False), (2, False),
                                                                                          (2, True))]
    rates, saved = {s: [] for s in setups}, datamgr.SHARED_MEMORY_MIN_FREE
    try:
        for _ in range(passes):
            for source, workers, shm in setups:
                datamgr.SHARED_MEMORY_MIN_FREE = 0 if shm else 2**62
                images = split if source == 'files' else cached
                dataset = SimpleDataset(images, split_transform(images, 84, True, 'mini_imagenet'))
                loader = EpochLoader(dataset, ShuffleBatchSampler(len(images), 128, seed=0), workers)
                start, n = time.perf_counter(), 0
                for b, (x, _) in enumerate(loader):
                    n += x.shape[0]
                    if b + 1 == n_batches:
                        break
                rates[(source, workers, shm)].append(n / (time.perf_counter() - start))
    finally:
        datamgr.SHARED_MEMORY_MIN_FREE = saved
    rows = []
    for source, workers, shm in setups:
        base = median(rates[(source, 0, False)])
        how = f'{workers} workers' + (', shared memory' if shm else ', pipes' if workers else '')
        row = {'task': f'DataLoader from the {source}, train transform, batch 128, {how}: {what}',
               'images': n_batches * 128, 'passes': passes, 'decode_per_s': base,
               'cache_per_s': median(rates[(source, workers, shm)]), 'build_per_s': None, 'bit_identical': None}
        row['ratio'] = row['cache_per_s'] / base
        rows.append(row)
        if log:
            log(format_row(row))
    return rows


def run(small=True, threads=None, log=None):
    """All rows; `decode_per_s` is the baseline of each row (for the DataLoader rows: 0 workers)."""
    set_threads(threads or min(2, default_threads()))
    n_real, n_full, passes = (1000, 256, 5) if small else (4000, 1280, 7)
    rows = []
    with tempfile.TemporaryDirectory(prefix='frn-bench-data-') as tmp:
        real, real_what = photo_split(os.path.join(tmp, 'real'), 10, n_real // 10)
        full = read_split(synthetic_photos(os.path.join(tmp, 'full'), 4, n_full // 4), 'test', layout='folders')
        full_what = 'synthetic 500 x 375 JPEGs'
        cache_dir = os.path.join(tmp, 'cache')
        for form, load_only in (('eval', False), ('train', False), ('train', True)):
            for split, what in ((real, real_what), (full, full_what)):
                rows.append(compare(split, what, form, cache_dir, passes, log, load_only))
        rows += loader_rows(full, full_what, cache_dir, n_batches=len(full) // 128, passes=passes, log=log)
    return rows


HEADER = f'{"task":<80}{"images":>7}{"decode/s":>10}{"cache/s":>10}{"ratio":>8}'


def format_row(row):
    return (f'{row["task"]:<80}{row["images"]:>7}{row["decode_per_s"]:>10.0f}{row["cache_per_s"]:>10.0f}'
            f'{row["ratio"]:>7.1f}x')


def markdown(rows):
    lines = ['| task | images | baseline images/s | cache images/s | ratio | eval tensors bit-identical |',
             '|---|---|---|---|---|---|']
    for r in rows:
        same = '' if r['bit_identical'] is None else ('yes' if r['bit_identical'] else '**no**')
        lines.append(f'| {r["task"]} | {r["images"]} | {r["decode_per_s"]:,.0f} | {r["cache_per_s"]:,.0f} | '
                     f'{r["ratio"]:.1f}x | {same} |')
    return '\n'.join(lines)


def has_gpu():
    return gpu_usable()


def size_args(description):
    """--small / --full (default: full with a GPU, small without) and --threads, shared by the benchmarks."""
    parser = argparse.ArgumentParser(description=description)
    size = parser.add_mutually_exclusive_group()
    size.add_argument('--small', dest='full', action='store_false', help='CPU-sized run (under 2 minutes on 2 cores)')
    size.add_argument('--full', dest='full', action='store_true', help='full-sized run (for GPUs or patience)')
    parser.set_defaults(full=has_gpu())
    parser.add_argument('--threads', type=int, default=None, help='CPU threads (default: up to 2)')
    return parser


def main():
    args = size_args(__doc__.split('\n')[0]).parse_args()
    print('images per second: decode = the JPEG files, cache = the --cache_dir copy (medians)')
    print(HEADER)
    run(small=not args.full, threads=args.threads, log=print)


if __name__ == '__main__':
    main()
