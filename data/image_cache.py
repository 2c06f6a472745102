"""Pre-resized images, one uint8 file per split: each JPEG is decoded once, not in every epoch.

    python tools/build_image_cache.py --data_path DATA --cache_dir CACHE --image_size 84
    python pretrain.py ... --cache_dir CACHE     # also meta_train.py, test.py; built on first use when missing

A split is cached in one of two forms, for the transform that will read it:
- 'eval' (val and test splits): each image after the eval transform's resize and centre
  crop, Resize(round(S * 92/84)) then CenterCrop(S), so S x S. Reading it leaves only
  the normalisation (`transforms.prepared_eval_transform`), and the tensors are
  bit-identical to decoding the files.
- 'train' (the train split): each image resized (paddle's Resize: PIL bilinear, aspect
  kept) so that its shorter side is `train_short_side(S)`, 128 for S = 84; smaller images
  are kept as they are. RandomResizedCrop(S) then crops this copy instead of the
  original: the same crop boxes relative to the image, but crops smaller than S x S in
  the copy are upsampled where the original had the pixels (see docs/performance.md).

Files, per split and form:
  <cache_dir>/<split>-<form><S>-<key>.u8     every image's HWC uint8 pixels back to back (read as np.memmap)
  <cache_dir>/<split>-<form><S>-<key>.json   the manifest: format, form and resize, Pillow version, the
                                              source list with each file's size and mtime, each image's
                                              offset and shape
The key hashes the form, the resize and the source paths. The manifest is written last,
so a cache without one is incomplete and is rebuilt. A source file that changed (size or
mtime) or disappeared, or another Pillow version (whose resize may differ), makes the
cache stale: opening it raises an FRNError naming the file and the command to rebuild.
"""
import dataclasses
import hashlib
import json
import multiprocessing
import os
import sys
import time

import numpy as np
import PIL
from paddle.vision import transforms as T
from PIL import Image
from tqdm import tqdm

from data.filelist import SplitList
from data.transforms import eval_resize
from utils import FRNError, atomic_write, atomic_write_text

FORMAT = 'frn-paddle image cache 2'  # 2: data/images.py scales 16-bit images, composites alpha on white, applies EXIF
FORMS = ('eval', 'train')


def train_short_side(image_size):
    """Shorter side of the 'train' copies: 128 for 84-pixel inputs, the same ratio for others."""
    return int(round(image_size * 128 / 84))


def cache_form(split_name):
    """The train split feeds augmentation; val and test feed the eval transform."""
    return 'train' if split_name == 'train' else 'eval'


def resize_spec(form, image_size):
    if form == 'eval':
        return {'form': 'eval', 'resize_shorter_side': eval_resize(image_size), 'center_crop': image_size}
    if form == 'train':
        return {'form': 'train', 'max_shorter_side': train_short_side(image_size)}
    raise ValueError(f'unknown cache form {form!r}; choose one of {FORMS}')


def prepare(img, spec):
    """What the cache stores for a decoded RGB image (PIL -> PIL)."""
    if spec['form'] == 'eval':  # the first two steps of transforms.eval_transform
        return T.CenterCrop(spec['center_crop'])(T.Resize(spec['resize_shorter_side'])(img))
    if min(img.size) <= spec['max_shorter_side']:
        return img
    return T.Resize(spec['max_shorter_side'])(img)


def cache_stem(cache_dir, split, split_name, spec):
    size = spec.get('center_crop') or spec['max_shorter_side']
    key = hashlib.sha1(json.dumps([FORMAT, spec, split.image_paths]).encode()).hexdigest()[:12]
    return os.path.join(cache_dir, f'{split_name}-{spec["form"]}{size}-{key}')


def file_stamp(path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return [st.st_size, st.st_mtime_ns]


@dataclasses.dataclass
class CachedSplit(SplitList):
    """A SplitList whose images come from an image cache's memory-mapped file."""
    pixels_path: str = ''
    offsets: np.ndarray = None   # [n] int64: where image i starts in the file
    shapes: np.ndarray = None    # [n, 3]: its height, width, channels
    prepared: tuple = None       # ('eval', S) when the eval transform's resize and crop are done

    def __post_init__(self):
        self._pixels = None

    def __getstate__(self):  # workers open the file themselves rather than receive a copy of it
        state = dict(self.__dict__)
        state['_pixels'] = None
        return state

    def pixels(self, i):
        """Image `i` as a read-only uint8 array [H, W, 3]."""
        if self._pixels is None:
            self._pixels = np.memmap(self.pixels_path, dtype=np.uint8, mode='r')
        h, w, c = (int(v) for v in self.shapes[i])
        start = int(self.offsets[i])
        return self._pixels[start:start + h * w * c].reshape(h, w, c)

    def load_image(self, i):
        return Image.fromarray(self.pixels(i))

    def subset(self, classes):
        keep_labels = set(classes)
        keep = [i for i, label in enumerate(self.labels) if label in keep_labels]  # SplitList.subset's order
        return dataclasses.replace(super().subset(classes), offsets=self.offsets[keep], shapes=self.shapes[keep])


def _prepared_pixels(args):
    split, spec, i = args
    return np.ascontiguousarray(np.asarray(prepare(split.load_image(i), spec), dtype=np.uint8))


def worker_pool(num_workers):
    """A process pool whose workers start from a fresh fork server, not from this process.

    This process may run paddle's threads; a fork of it inherits their locks and its garbage, which a
    child can block on for ever (data/forking.py). The cache's workers only decode and resize images,
    so they need nothing of this process's state and start clean."""
    return multiprocessing.get_context('forkserver').Pool(num_workers)


def build(split, stem, spec, num_workers=0, log=print):
    """Decode, prepare and store every image of `split`; the manifest is written last."""
    n = len(split)
    log(f'image cache: building {stem}.u8 from {n} images of {split.source} '
        f'({spec["form"]}: {", ".join(f"{k} {v}" for k, v in spec.items() if k != "form")})')
    start = time.perf_counter()
    stamps = [file_stamp(p) for p in split.image_paths]  # before reading: a file changed meanwhile is stale
    offsets, shapes = np.zeros(n, dtype=np.int64), np.zeros((n, 3), dtype=np.int64)
    jobs = ((split, spec, i) for i in range(n))

    def write(tmp):
        pool = worker_pool(num_workers) if num_workers > 0 else None
        try:
            pixels = pool.imap(_prepared_pixels, jobs, chunksize=64) if pool else map(_prepared_pixels, jobs)
            offset = 0
            with open(tmp, 'wb') as f:
                for i, arr in enumerate(tqdm(pixels, desc='image cache', total=n, leave=False, disable=not sys.stdout.isatty())):
                    f.write(arr.tobytes())
                    offsets[i], shapes[i] = offset, arr.shape
                    offset += arr.nbytes
        finally:
            if pool:
                pool.terminate()  # done, or after an error: the images still queued are not read
                pool.join()

    atomic_write(stem + '.u8', write)
    manifest = {'format': FORMAT, 'resize': spec, 'pillow': PIL.__version__, 'source': split.source,
                'n_images': n, 'bytes': int(offsets[-1] + np.prod(shapes[-1])) if n else 0,
                'files': [[p] + s for p, s in zip(split.image_paths, stamps)],
                'offsets': offsets.tolist(), 'shapes': shapes.tolist()}
    # one key per line, each list on its line: readable at the top, compact for 60,000 images
    atomic_write_text('{\n' + ',\n'.join(f'  {json.dumps(k)}: {json.dumps(v, separators=(",", ":"))}'
                                          for k, v in manifest.items()) + '\n}\n', stem + '.json')
    seconds = time.perf_counter() - start
    log(f'image cache: {n} images, {os.path.getsize(stem + ".u8") / 1e6:.0f} MB, built in {seconds:.1f} s '
        f'({n / max(seconds, 1e-9):.0f} images/s)')


def stale_reason(manifest, split, spec, pixels_path):
    """Why a cache no longer matches its sources, or None."""
    if manifest.get('format') != FORMAT or manifest.get('resize') != spec:
        return f'it was written in another format or with another resize ({manifest.get("resize")})'
    if manifest.get('pillow') != PIL.__version__:
        return (f'it was built with Pillow {manifest.get("pillow")} and this is Pillow {PIL.__version__}, '
                f'whose resize may give other pixels')
    files = manifest['files']
    if [f[0] for f in files] != split.image_paths:
        return 'its list of source images differs from the split\'s'
    changed = [(f[0], f[1:]) for f in files if file_stamp(f[0]) != f[1:]]
    if changed:
        path, (size, mtime) = changed[0]
        now = file_stamp(path)
        what = 'is missing' if now is None else (f'has size {now[0]} and mtime {now[1]}, '
                                                 f'cached with size {size} and mtime {mtime}')
        return f'{len(changed)} of {len(files)} source images changed since it was built: {path} {what}'
    if os.path.getsize(pixels_path) != manifest['bytes']:
        return f'{pixels_path} has {os.path.getsize(pixels_path)} bytes, not {manifest["bytes"]}'
    return None


def open_cache(split, cache_dir, split_name, image_size, build_missing=True, num_workers=0, log=print):
    """`split` served from its image cache in `cache_dir`, built first when missing (unless `build_missing` is off)."""
    spec = resize_spec(cache_form(split_name), image_size)
    stem = cache_stem(cache_dir, split, split_name, spec)
    manifest_path, pixels_path = stem + '.json', stem + '.u8'
    if not (os.path.isfile(manifest_path) and os.path.isfile(pixels_path)):
        if not build_missing:
            raise FRNError(f'no image cache for the {split_name} split of {split.source} in {cache_dir}; build it '
                           f'with `python tools/build_image_cache.py --data_path DATA --cache_dir {cache_dir} '
                           f'--image_size {image_size}`')
        os.makedirs(cache_dir, exist_ok=True)
        build(split, stem, spec, num_workers=num_workers, log=log)
    try:
        with open(manifest_path, encoding='utf-8') as f:
            manifest = json.load(f)
    except ValueError as err:
        raise FRNError(f'image cache manifest {manifest_path!r} is not valid JSON ({err}); delete {stem}.* '
                       f'and it is rebuilt on first use') from None
    reason = stale_reason(manifest, split, spec, pixels_path)
    if reason:
        raise FRNError(f'image cache {manifest_path} is out of date: {reason}. Rebuild it with `python '
                       f'tools/build_image_cache.py --data_path DATA --cache_dir {cache_dir} --image_size '
                       f'{image_size} --rebuild`, or delete {stem}.json and {stem}.u8')
    return CachedSplit(split.image_paths, split.labels, split.label_names, split.source, pixels_path=pixels_path,
                       offsets=np.asarray(manifest['offsets'], dtype=np.int64),
                       shapes=np.asarray(manifest['shapes'], dtype=np.int64),
                       prepared=('eval', image_size) if spec['form'] == 'eval' else None)
