"""Omniglot from its two official zips (or their extracted folders), as `SplitList`s.

Omniglot is small: 32,460 PNGs of 105x105 pixels at 1 bit. So each part is decoded once
per process straight from its zip and kept in memory as packed bits (48 MB for both
parts; decoding takes about 3 s of one core). Nothing is written next to the data, so
a read-only folder works, and there is no cache to go stale.

Schemes (how characters become train/val/test classes):
- 'vinyals': the character split of Vinyals et al. (2016) as shipped by Prototypical
  Networks, `splits_vinyals/{train,val,test}.txt` with one `Alphabet/characterNN/rotXXX`
  class per line: 4112 / 688 / 1692 classes, each character rotated by 0/90/180/270
  degrees. It mixes background and evaluation alphabets, so every line is looked up in both.
- 'background': Lake et al.'s alphabet split, without rotations. Test is the 20 evaluation
  alphabets (659 characters), the usual one-shot test set, left whole. Validation must not
  touch it, so it is taken from the background alphabets: the five that Vinyals' split also
  validates on (VAL_ALPHABETS, 172 characters); train is the other 25 (792 characters).

Rotations are counter-clockwise, like np.rot90 and PIL's Image.rotate (which Prototypical
Networks' loader calls), and exact: a square image turned by quarter turns, no resampling.
"""
import dataclasses
import os
import re
import zipfile
import zlib

import numpy as np
from PIL import Image

from data.decode import decode_image
from data.filelist import SPLIT_NAMES, SplitList
from utils import FRNError

PARTS = ('images_background', 'images_evaluation')
IMAGE_SIZE = 105
SCHEMES = ('vinyals', 'background')
SPLITS_DIR = 'splits_vinyals'
VAL_ALPHABETS = ('Armenian', 'Bengali', 'Early_Aramaic', 'Hebrew', 'Mkhedruli_(Georgian)')
CLASS_LINE = re.compile(r'([^/\s]+/character\d+)/rot(000|090|180|270)')

VINYALS_CLASSES = {'train': 4112, 'val': 688, 'test': 1692}


def placement_help(folder):
    return (f'put the official images_background.zip and images_evaluation.zip '
            f'(https://github.com/brendenlake/omniglot/tree/master/python) in {folder}, or their extracted '
            f'folders images_background/ and images_evaluation/; with internet, '
            f'`python tools/download_omniglot.py --dst {folder}` fetches and verifies them')


def splits_help(folder):
    return (f'put the Vinyals split files train.txt, val.txt and test.txt in {os.path.join(folder, SPLITS_DIR)}/ '
            f'(from https://github.com/jakesnell/prototypical-networks/tree/master/data/omniglot/splits/vinyals, '
            f'also in the shared data folder as data/omniglot/{SPLITS_DIR}/; '
            f'`python tools/download_omniglot.py --dst {folder}` fetches them), or use the background scheme')


# --- decoding -------------------------------------------------------------------------------------

class OmniglotImages:
    """Every image of one part, decoded: sorted names and pixels as packed bits [N, 105, 14]."""

    def __init__(self, part, names, bits, source):
        self.part, self.names, self.bits, self.source = part, names, bits, source
        self.row = {name: i for i, name in enumerate(names)}
        self.characters = {}   # 'Alphabet/characterNN' -> its image names, in drawer order
        for name in names:
            self.characters.setdefault(name.split('/', 1)[1].rsplit('/', 1)[0], []).append(name)

    def pixels(self, name):
        """uint8 [105, 105] as in the PNG: 255 background, 0 strokes."""
        return np.unpackbits(self.bits[self.row[name]], axis=-1, count=IMAGE_SIZE) * np.uint8(255)


def part_source(data_path, part):
    """The zip of `part` in `data_path` (preferred: complete and CRC-checked), else its extracted folder, else None."""
    for candidate, exists in ((os.path.join(data_path, part + '.zip'), os.path.isfile),
                              (os.path.join(data_path, part), os.path.isdir)):
        if exists(candidate):
            return candidate
    return None


def is_omniglot_folder(data_path):
    """True when `data_path` holds a zip or extracted folder of either part (read_omniglot says what is missing)."""
    return any(part_source(data_path, part) for part in PARTS)


def _png_members(source, part):
    """(name, PNG bytes) of each `part/Alphabet/characterNN/file.png` in a zip or an extracted folder."""
    if os.path.isdir(source):
        root = os.path.dirname(source)
        for folder, dirs, files in os.walk(source):
            dirs.sort()
            for file in sorted(files):
                path = os.path.join(folder, file)
                name = os.path.relpath(path, root).replace(os.sep, '/')
                if file.endswith('.png') and name.count('/') == 3:
                    with open(path, 'rb') as f:
                        yield name, f.read()
        return
    with zipfile.ZipFile(source) as archive:
        for info in archive.infolist():   # skips __MACOSX/ and folder entries
            name = info.filename
            if name.startswith(part + '/') and name.endswith('.png') and name.count('/') == 3:
                yield name, archive.read(info)


def _decode(source, part):
    names, bits = [], []
    try:
        for name, data in _png_members(source, part):
            image = decode_image(data, f'{name} in {source}',
                                 fix='replace the file, or delete the zip and download it again')
            if image.size != (IMAGE_SIZE, IMAGE_SIZE):
                raise FRNError(f'{source}: {name} is {image.size[0]}x{image.size[1]}; Omniglot images are '
                               f'{IMAGE_SIZE}x{IMAGE_SIZE}. ' + placement_help(os.path.dirname(source)))
            # white = True; the PNGs are 1-bit, anything else is thresholded at mid-grey
            white = np.asarray(image) if image.mode == '1' else np.asarray(image.convert('L')) >= 128
            names.append(name)
            bits.append(np.packbits(white, axis=-1))
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:   # PIL's UnidentifiedImageError is an OSError
        raise FRNError(f'cannot read {source} ({type(err).__name__}: {err}); if it is corrupt or incomplete, '
                       f'delete it and download it again: ' + placement_help(os.path.dirname(source))) from None
    if not names:
        raise FRNError(f'{source} holds no images {part}/<Alphabet>/<character>/<file>.png; '
                       + placement_help(os.path.dirname(source)))
    order = sorted(range(len(names)), key=names.__getitem__)
    return [names[i] for i in order], np.stack([bits[i] for i in order])


_DECODED = {}   # (real path, size, mtime) -> OmniglotImages: a replaced zip is decoded again


def load_images(data_path, part):
    """The decoded images of `part` ('images_background' or 'images_evaluation'), once per process."""
    source = part_source(data_path, part)
    if source is None:
        raise FRNError(f'Omniglot: neither {part}.zip nor the folder {part}/ is in {data_path!r}; '
                       + placement_help(data_path))
    stat = os.stat(source)
    key = (os.path.realpath(source), stat.st_size, stat.st_mtime_ns)
    if key not in _DECODED:
        _DECODED[key] = OmniglotImages(part, *_decode(source, part), source)
    return _DECODED[key]


# --- splits ---------------------------------------------------------------------------------------

@dataclasses.dataclass
class OmniglotSplit(SplitList):
    """A split whose images come from memory. `image_paths` are names `part/Alphabet/characterNN/file.png@rotXXX`."""
    images: dict = dataclasses.field(default_factory=dict, repr=False)   # part -> OmniglotImages

    def load_image(self, i):
        """Image `i` as RGB (the grey replicated: the backbones take 3 channels), turned counter-clockwise."""
        name, rotation = self.image_paths[i].rsplit('@rot', 1)
        pixels = np.rot90(self.images[name.split('/', 1)[0]].pixels(name), int(rotation) // 90)
        return Image.fromarray(np.ascontiguousarray(pixels), mode='L').convert('RGB')


def _vinyals_classes(data_path, split):
    path = os.path.join(data_path, SPLITS_DIR, split + '.txt')
    if not os.path.isfile(path):
        raise FRNError(f'the Vinyals split file {path} does not exist; ' + splits_help(data_path))
    where = {}
    for part in PARTS:
        images = load_images(data_path, part)
        where.update(dict.fromkeys(images.characters, images))
    classes, seen = [], set()
    with open(path, encoding='utf-8') as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            match = CLASS_LINE.fullmatch(line)
            if not match:
                raise FRNError(f'{path}:{n}: {line!r} is not a class of the form Alphabet/characterNN/rotXXX '
                               f'(XXX = 000, 090, 180 or 270); fix the line')
            if match[1] not in where:
                raise FRNError(f'{path}:{n}: character {match[1]!r} is in neither {PARTS[0]} nor {PARTS[1]} '
                               f'of {data_path}; fix the line, or use the complete official zips')
            if line in seen:
                raise FRNError(f'{path}:{n}: class {line!r} is listed twice; remove one line')
            seen.add(line)
            classes.append((match[1], int(match[2]), where[match[1]]))
    return classes, path


def _background_classes(data_path, split):
    images = load_images(data_path, PARTS[1] if split == 'test' else PARTS[0])
    keep = sorted(c for c in images.characters
                  if split == 'test' or (c.split('/')[0] in VAL_ALPHABETS) == (split == 'val'))
    return [(c, 0, images) for c in keep], images.source


def read_omniglot(data_path, split, scheme='vinyals'):
    """The OmniglotSplit of `split` ('train', 'val' or 'test') under `scheme` ('vinyals' or 'background').

    Labels follow the split file's line order (vinyals) or sorted character names (background);
    a class is named `Alphabet/characterNN/rotXXX` and its images are its 20 drawers, in order.
    """
    if split not in SPLIT_NAMES:
        raise ValueError(f'split must be one of {SPLIT_NAMES}, not {split!r}')
    if scheme not in SCHEMES:
        raise ValueError(f'scheme must be one of {SCHEMES}, not {scheme!r}')
    reader = _vinyals_classes if scheme == 'vinyals' else _background_classes
    classes, source = reader(data_path, split)
    if not classes:
        raise FRNError(f'the Omniglot {scheme} {split} split of {data_path} has no classes; '
                       + placement_help(data_path))
    paths, labels, label_names = [], [], []
    for label, (character, rotation, images) in enumerate(classes):
        label_names.append(f'{character}/rot{rotation:03d}')
        members = images.characters[character]
        paths += [f'{name}@rot{rotation:03d}' for name in members]
        labels += [label] * len(members)
    used = {images.part: images for _, _, images in classes}
    return OmniglotSplit(paths, labels, label_names, source=source, images=used)
