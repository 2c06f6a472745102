"""mini-ImageNet from ILSVRC-2012's training images and Ravi & Larochelle's split CSVs, in the seed's layout.

Output: `mini-ImageNet/images/<name>.jpg` (60,000 images) plus `train.csv`, `val.csv`,
`test.csv` (the split files given, byte for byte), ready for `write_miniImagenet_filelist.py`.

Which ILSVRC file a CSV name stands for. The CSVs name images `<wnid><8 digits>.jpg`
(`n0153282900000005.jpg`); the widely used generator, mini_imagenet_generator.py of
github.com/yaoyao-liu/mini-imagenet-tools, takes the class's ILSVRC training files, sorts them
by the number after the last `_` as a number (`n01532829_2.JPEG` before `n01532829_10.JPEG`),
and gives the name the file at 1-based position int(digits), so `...00000005.jpg` is the 5th.
This module does the same. (The official FRN `data/init_mini-ImageNet.py` maps nothing: it
copies `images/<name>` from a folder such a generator already wrote into class folders.)

Pixels. By default each image is squashed to 84x84 as the common distributions are: the
generator's cv2.resize(INTER_AREA) is area averaging, done here exactly in numpy (each output
pixel the mean of the input area it covers, fractional pixels weighted by their share), after
turning the image upright by its EXIF orientation as cv2.imread does; saved as JPEG at
quality 95, cv2's default. `image_size=0` keeps the original files, byte for byte.

Source: ILSVRC2012_img_train.tar (a tar of 1,000 per-class tars, about 138 GB), read as a
stream, opening only the 100 classes' tars (one at a time, in memory); or an extracted train
folder, with one folder (`n01532829/`) or one tar (`n01532829.tar`) per class.
"""
import csv
import io
import os
import re
import tarfile

import numpy as np
from PIL import Image, ImageOps

from data.decode import decode_image
from data.prepare_output import progress, save_bytes, staged_output
from data.prepare_sources import ARCHIVE_ERRORS, check_tar, damaged_archive, tar_members
from utils import FRNError, atomic_write_json, inside

SPLITS = ('train', 'val', 'test')
CSV_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'splits', 'mini_imagenet')
OUTPUT = 'mini-ImageNet'
ARCHIVE = 'ILSVRC2012_img_train.tar'
PAGE = 'https://image-net.org/download-images.php'
CSV_NAME = re.compile(r'^(n\d{8})(\d{8})\.jpg$')


def read_csvs(csv_dir):
    """({wnid: {position: csv name}}, {split: (csv bytes, [wnid...])}) from the three split files, all checked."""
    wanted, splits, split_of = {}, {}, {}
    for split in SPLITS:
        path = os.path.join(csv_dir, f'{split}.csv')
        try:
            with open(path, 'rb') as f:
                data = f.read()
            lines = data.decode('utf-8').splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise FRNError(f'cannot read split file {path!r} ({err}); give --split_dir a folder with the Ravi & '
                           f'Larochelle train.csv, val.csv and test.csv') from None
        if not lines or lines[0].strip() != 'filename,label':
            raise FRNError(f'{path} does not start with the header "filename,label"; it is not a mini-ImageNet '
                           f'split file')
        classes = []
        for number, row in enumerate(csv.reader(lines[1:]), 2):
            match = CSV_NAME.match(row[0]) if len(row) == 2 else None
            if not match or match.group(1) != row[1] or int(match.group(2)) < 1:
                raise FRNError(f'{path} line {number} is {",".join(row)!r}; expected "<wnid><8-digit position>.jpg,'
                               f'<wnid>", e.g. n0153282900000005.jpg,n01532829')
            wnid, position = row[1], int(match.group(2))
            if split_of.setdefault(wnid, split) != split:
                raise FRNError(f'{path} line {number}: class {wnid} is also in {split_of[wnid]}.csv; a class '
                               f'belongs to one split')
            if position in wanted.setdefault(wnid, {}):
                raise FRNError(f'{path} line {number} repeats {row[0]}')
            wanted[wnid][position] = row[0]
            if wnid not in classes:
                classes.append(wnid)
        splits[split] = (data, classes, len(lines) - 1)
    return wanted, splits


def area_resize(image, size):
    """`image` squashed to size x size by exact area averaging (cv2's INTER_AREA when shrinking)."""
    pixels = np.asarray(image, dtype=np.float64)
    rows, cols = area_weights(pixels.shape[0], size), area_weights(pixels.shape[1], size)
    out = np.tensordot(np.tensordot(rows, pixels, axes=(1, 0)), cols, axes=(1, 1)).transpose(0, 2, 1)
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), 'RGB')


def area_weights(n_in, n_out):
    """[n_out, n_in]: the share of each input pixel in the input span [i, i+1) * n_in / n_out of output pixel i."""
    edges = np.arange(n_out + 1) * (n_in / n_out)
    starts, ends = np.arange(n_in), np.arange(n_in) + 1
    overlap = np.minimum(ends[None, :], edges[1:, None]) - np.maximum(starts[None, :], edges[:-1, None])
    return np.clip(overlap, 0, None) / (n_in / n_out)


def convert(data, where, image_size):
    """The bytes to write for one ILSVRC file: resized JPEG, or the file itself when image_size is 0."""
    if not image_size:
        decode_image(data, where)   # still checked: a damaged file is an error, not a broken output
        return data
    image = ImageOps.exif_transpose(decode_image(data, where)).convert('RGB')
    buffer = io.BytesIO()
    area_resize(image, image_size).save(buffer, 'JPEG', quality=95)
    return buffer.getvalue()


def class_files(names, wnid, where):
    """The class's file names sorted by the number after the last '_', as the generator sorts them."""
    numbered = {}
    pattern = re.compile(rf'^{wnid}_(\d+)\.jpe?g$', re.IGNORECASE)
    for name in names:
        match = pattern.match(os.path.basename(name))
        if match:
            if int(match.group(1)) in numbered:
                raise FRNError(f'{where} holds two files numbered {match.group(1)} for class {wnid}; the order '
                               f'of its images is ambiguous: extract or download it again')
            numbered[int(match.group(1))] = name
    return [numbered[n] for n in sorted(numbered)]


def inner_tar(data, where):
    """{name: bytes} of the files of a class tar held in memory."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode='r:') as tar:
            return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    except ARCHIVE_ERRORS as err:
        raise damaged_archive(where, err) from None


def class_sources(src, wnids):
    """(wnid, where, file names, read(name) -> bytes) for each class found, from the archive or the folder."""
    if os.path.isdir(src):
        for wnid in sorted(wnids):
            folder, tar = os.path.join(src, wnid), os.path.join(src, f'{wnid}.tar')
            if os.path.isdir(folder):
                yield wnid, folder, os.listdir(folder), lambda name, folder=folder: read_file(os.path.join(folder,
                                                                                                         name))
            elif os.path.isfile(tar):
                files = inner_tar(read_file(tar), tar)
                yield wnid, tar, list(files), files.get
        return
    check_tar(src, ARCHIVE)
    for name, data in tar_members(src, lambda name: name.endswith('.tar') and name[:-4] in wnids):
        files = inner_tar(data, f'{src}:{name}')
        yield name[:-4], f'{src}:{name}', list(files), files.get


def read_file(path):
    try:
        with open(path, 'rb') as f:
            return f.read()
    except OSError as err:
        raise FRNError(f'cannot read {path} ({err.strerror}); check its permissions') from None


def prepare_mini_imagenet(src, dst, overwrite=False, image_size=84, split_dir=CSV_DIR):
    """ILSVRC2012_img_train.tar (or its extracted train folder) -> dst/mini-ImageNet. Returns the summary."""
    src = os.path.abspath(os.fspath(src))
    if not os.path.exists(src):
        raise FRNError(f'{src!r} does not exist; give {ARCHIVE} from {PAGE}, or its extracted train folder')
    if image_size < 0:
        raise FRNError(f'--image_size {image_size} must be a positive side in pixels, or 0 to keep the originals')
    wanted, splits = read_csvs(split_dir)
    dst = os.path.abspath(os.fspath(dst))
    summary = {'dataset': 'mini-ImageNet', 'source': src, 'outputs': [os.path.join(dst, OUTPUT)],
               'image_size': image_size or 'original', 'split_dir': os.path.abspath(split_dir),
               'mapping': "CSV <wnid><n>.jpg = the class's n-th ILSVRC file, sorted by the number after '_'",
               'splits': {s: {'classes': {w: w for w in classes}, 'images': count}
                          for s, (_, classes, count) in splits.items()}}
    with staged_output(dst, (OUTPUT,), overwrite) as tmp:
        root = os.path.join(tmp, OUTPUT)
        bar = progress(None, sum(len(p) for p in wanted.values()), 'mini-ImageNet images')
        done = set()
        for wnid, where, names, read in class_sources(src, set(wanted)):
            files = class_files(names, wnid, where)
            for position, name in sorted(wanted[wnid].items()):
                if position > len(files):
                    raise FRNError(f'{where} has {len(files)} images of class {wnid}, but the split files ask for '
                                   f'the {position}th ({name}); the class is incomplete: extract or download it again')
                data = read(files[position - 1])
                save_bytes(convert(data, os.path.join(where, files[position - 1]), image_size),
                           inside(root, 'images', name))
                bar.update()
            done.add(wnid)
        bar.close()
        missing = sorted(set(wanted) - done)
        if missing:
            what = f'{src} has no {missing[0]}/ or {missing[0]}.tar' if os.path.isdir(src) else \
                f'{src} has no {missing[0]}.tar'
            raise FRNError(f'{what} ({len(missing)} of the {len(wanted)} classes are missing); give the full '
                           f'{ARCHIVE} from {PAGE}, or its extracted train folder')
        for split, (data, _, _) in splits.items():
            save_bytes(data, os.path.join(root, f'{split}.csv'))
        atomic_write_json(summary, os.path.join(root, 'split.json'))
    return summary
