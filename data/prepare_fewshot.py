"""Few-shot CUB-200-2011 and FGVC-Aircraft folders, built from the original archives as FRN builds them.

What the official scripts do (github.com/Tsingularity/FRN, data/init_CUB_fewshot.py and
data/init_Aircraft_fewshot.py), and so what this module does:
- Class split, both datasets: class number i goes to train if i % 2 == 0, to val if i % 4 == 1,
  to test if i % 4 == 3 (half, a quarter, a quarter). CUB numbers its classes 1..200 as in
  classes.txt (100/50/50); Aircraft numbers the lines of variants.txt 0..99 (50/25/25).
- CUB: every image of images.txt, cropped to its bounding_boxes.txt box `x y w h` (floats) as
  PIL crops (x, y, x + w, y + h): each edge rounded to the nearest integer, halves to even.
  The crops go to CUB_fewshot_cropped/, the untouched files to CUB_fewshot_raw/, in folders
  named as in classes.txt.
- Aircraft: every image of images_variant_trainval.txt and images_variant_test.txt (all
  10,000), cropped to PIL's (xmin, ymin, xmax, ymax) from images_box.txt, the numbers used as
  they are. The FGVC README counts pixels from (1, 1), so this crop is the box moved by one
  pixel up and left; we keep it, to match the official files. The 20-pixel copyright banner at
  the bottom of each image is not handled apart: only a box that reaches into it keeps some of
  it. Class folders are named by the variant's number ('0'..'99'): names like F/A-18 hold '/'.
- Crops are saved as PNG (lossless) under the image's name with `.png`, as the official
  scripts save them; `image_format='jpeg'` writes JPEG at quality 95 instead. Each output
  folder also gets `split.json`: per split, class folder -> original class id or name, and
  the image count (the printed summary comes from the same record).
- The official scripts also write `val_pre/` and `test_pre/` (pre-resized 84x84 copies);
  this one does not: `--cache_dir` (tools/build_image_cache.py) does that job here.

Everything is checked on the way (metadata present and well-formed, every listed image there
and decodable, every box inside its image with a positive size), and everything is built in a
temp folder beside the target and renamed into place at the end, so a failure leaves nothing.
An archive is read as a stream, twice: once for the metadata and once for the images; nothing
is extracted to disk.
"""
import contextlib
import io
import os
import shutil
import sys
import tarfile
import tempfile
import zlib

from PIL import Image, UnidentifiedImageError

from utils import FRNError, atomic_write_json

SPLITS = ('train', 'val', 'test')
IMAGE_FORMATS = {'png': ('PNG', '.png', {}), 'jpeg': ('JPEG', '.jpg', {'quality': 95})}
SPLIT_FILE = 'split.json'   # in each output folder: per split, class folder -> original class, and counts

CUB_PAGE = 'https://www.vision.caltech.edu/datasets/cub_200_2011/'
AIRCRAFT_PAGE = 'https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/'
CUB_META = ('classes.txt', 'images.txt', 'image_class_labels.txt', 'bounding_boxes.txt')
AIRCRAFT_META = ('variants.txt', 'images_variant_trainval.txt', 'images_variant_test.txt', 'images_box.txt')


def fewshot_split(number):
    """FRN's split of class `number` (CUB: 1-based class id; Aircraft: 0-based variant line)."""
    if number % 2 == 0:
        return 'train'
    return 'val' if number % 4 == 1 else 'test'


# --- reading an archive or its extracted folder ---------------------------------------------------

class FolderSource:
    """An extracted archive: metadata and images are files under `root`."""

    def __init__(self, root):
        self.root = root

    def where(self, rel):
        return os.path.join(self.root, rel)

    def read_all(self, rels):
        """The bytes of each file in `rels` that exists."""
        found = {}
        for rel in rels:
            if os.path.isfile(self.where(rel)):
                with open(self.where(rel), 'rb') as f:
                    found[rel] = f.read()
        return found

    def missing(self, rels):
        """Files of `rels` that are not there: known before any image is processed."""
        return [rel for rel in rels if not os.path.isfile(self.where(rel))]

    def iter_files(self, rels):
        """(rel, bytes) for each file of `rels` that exists, in the order given."""
        for rel in rels:
            if os.path.isfile(self.where(rel)):
                with open(self.where(rel), 'rb') as f:
                    yield rel, f.read()


class TarSource:
    """A .tgz / .tar.gz read front to back as a stream, since seeking back in gzip means decompressing again."""

    def __init__(self, path, prefix):
        self.path, self.prefix = path, prefix

    def where(self, rel):
        return f'{self.path}:{self.prefix}{rel}'

    def _members(self, wanted):
        """(rel, bytes) of the regular files whose name is `prefix + rel` for a rel in `wanted`."""
        wanted, seen = set(wanted), set()
        try:
            with tarfile.open(self.path, mode='r|*') as tar:
                for member in tar:
                    name = os.path.normpath(member.name)
                    rel = name[len(self.prefix):] if name.startswith(self.prefix) else None
                    if rel in wanted and rel not in seen and member.isfile():
                        seen.add(rel)
                        yield rel, tar.extractfile(member).read()
                        if seen == wanted:
                            return
        except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
            raise FRNError(f'cannot read archive {self.path!r} ({type(err).__name__}: {err}); it is truncated '
                           f'or damaged: download it again, or give its extracted folder') from None

    def read_all(self, rels):
        return dict(self._members(rels))

    def missing(self, rels):
        return []   # only known once the stream has been read

    def iter_files(self, rels):
        return self._members(rels)


def open_source(path, tar_prefix, folder_candidates, key, archive_name):
    """A FolderSource or TarSource for `path`, which must be the archive or a folder it extracts to."""
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        for sub in folder_candidates:
            if os.path.isfile(os.path.join(path, sub, key)):
                return FolderSource(os.path.normpath(os.path.join(path, sub)))
        looked = ', '.join(os.path.normpath(os.path.join(path, sub, key)) for sub in folder_candidates)
        raise FRNError(f'{path!r} is not an extracted {archive_name}: found none of {looked}; give the archive '
                       f'{archive_name} or the folder it extracts to')
    if not os.path.exists(path):
        raise FRNError(f'{path!r} does not exist; give the archive {archive_name} or the folder it extracts to')
    if not tarfile.is_tarfile(path):
        raise FRNError(f'{path!r} is not a tar archive; give the archive {archive_name} '
                       f'(or the folder it extracts to)')
    return TarSource(path, tar_prefix)


def read_metadata(source, names, archive_name, page):
    """The text of each metadata file; a clear error naming the first one that is absent."""
    texts = source.read_all(names)
    if not texts:
        raise FRNError(f'{source.where("")} holds none of {", ".join(names)}: this is not {archive_name} '
                       f'(another archive?). Give {archive_name} from {page}, or the folder it extracts to')
    for name in names:
        if name not in texts:
            raise FRNError(f'{source.where(name)} is missing: this is not a complete {archive_name}. '
                           f'Download {archive_name} again from {page} and give it (or its extracted folder)')
    try:
        return {name: texts[name].decode('utf-8') for name in names}
    except UnicodeDecodeError as err:
        raise FRNError(f'{source.where(name)} is not a text file ({err}); the archive is damaged, '
                       f'download {archive_name} again') from None


def rows(text, where, n_fields, maxsplit=-1):
    """(line number, fields) of each non-blank line, which must have exactly `n_fields` fields."""
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.strip().split(None if maxsplit < 0 else ' ', maxsplit)
        if len(fields) != n_fields:
            raise FRNError(f'{where} line {number} is {line.strip()!r}, expected {n_fields} fields; '
                           f'the file is damaged: download the archive again')
        yield number, fields


def numbers(fields, convert, where, number):
    """The fields converted by `convert` (int or float), with the line named when one is not a number."""
    try:
        return [convert(x) for x in fields]
    except ValueError:
        raise FRNError(f'{where} line {number} has {" ".join(fields)!r} where numbers belong; '
                       f'the file is damaged: download the archive again') from None


def unique(mapping, key, where, number):
    """Refuse a key seen twice: a repeated image or class means a damaged or edited list."""
    if key in mapping:
        raise FRNError(f'{where} line {number} repeats {key!r}; the file is damaged: download the archive again')


# --- what goes where --------------------------------------------------------------------------------

class Item:
    """One image: its file in the source, its split and class folder, and the PIL crop box."""
    __slots__ = ('rel', 'split', 'folder', 'stem', 'box')

    def __init__(self, rel, split, folder, stem, box):
        self.rel, self.split, self.folder, self.stem, self.box = rel, split, folder, stem, box


def cub_plan(source):
    """Items of CUB-200-2011 and {class folder: class id}, from its four metadata files."""
    text = read_metadata(source, CUB_META, 'CUB_200_2011.tgz', CUB_PAGE)
    where = source.where
    classes, paths, labels, boxes = {}, {}, {}, {}
    for number, (cid, name) in rows(text['classes.txt'], where('classes.txt'), 2):
        cid, = numbers([cid], int, where('classes.txt'), number)
        unique(classes, cid, where('classes.txt'), number)
        classes[cid] = name
    for number, (iid, path) in rows(text['images.txt'], where('images.txt'), 2):
        iid, = numbers([iid], int, where('images.txt'), number)
        unique(paths, iid, where('images.txt'), number)
        paths[iid] = path
    for number, fields in rows(text['image_class_labels.txt'], where('image_class_labels.txt'), 2):
        iid, cid = numbers(fields, int, where('image_class_labels.txt'), number)
        unique(labels, iid, where('image_class_labels.txt'), number)
        if cid not in classes:
            raise FRNError(f'{where("image_class_labels.txt")} line {number} gives class {cid}, which '
                           f'{where("classes.txt")} does not list; the archive is damaged: download it again')
        labels[iid] = cid
    for number, fields in rows(text['bounding_boxes.txt'], where('bounding_boxes.txt'), 5):
        iid, x, y, w, h = numbers(fields, float, where('bounding_boxes.txt'), number)
        unique(boxes, iid, where('bounding_boxes.txt'), number)
        if w <= 0 or h <= 0:
            raise FRNError(f'{where("bounding_boxes.txt")} line {number}: the box of image {int(iid)} has width '
                           f'{w:g} and height {h:g}, which must be positive; the file is damaged')
        boxes[int(iid)] = (x, y, x + w, y + h)
    items = []
    for iid, path in sorted(paths.items()):
        for table, name in ((labels, 'image_class_labels.txt'), (boxes, 'bounding_boxes.txt')):
            if iid not in table:
                raise FRNError(f'image {iid} ({path}) of {where("images.txt")} has no line in {where(name)}; '
                               f'the archive is incomplete: download CUB_200_2011.tgz again')
        cid = labels[iid]
        stem = os.path.splitext(os.path.basename(path))[0]
        items.append(Item('images/' + path, fewshot_split(cid), classes[cid], stem, boxes[iid]))
    empty = sorted(set(classes) - set(labels.values()))
    if empty:
        raise FRNError(f'class {empty[0]} ({classes[empty[0]]}) of {where("classes.txt")} has no images in '
                       f'{where("image_class_labels.txt")}; the archive is incomplete: download it again')
    return items, {name: cid for cid, name in classes.items()}


def aircraft_plan(source):
    """Items of FGVC-Aircraft 2013b (all 10,000 images) and {class folder: variant name}."""
    text = read_metadata(source, AIRCRAFT_META, 'fgvc-aircraft-2013b.tar.gz', AIRCRAFT_PAGE)
    where = source.where
    variants = [line.strip() for line in text['variants.txt'].splitlines() if line.strip()]
    index = {}
    for number, name in enumerate(variants):
        unique(index, name, where('variants.txt'), number + 1)
        index[name] = number
    variant_of, boxes = {}, {}
    for list_name in ('images_variant_trainval.txt', 'images_variant_test.txt'):
        for number, (image, variant) in rows(text[list_name], where(list_name), 2, maxsplit=1):
            unique(variant_of, image, where(list_name), number)
            if variant not in index:
                raise FRNError(f'{where(list_name)} line {number} gives variant {variant!r}, which '
                               f'{where("variants.txt")} does not list; the archive is damaged: download it again')
            variant_of[image] = index[variant]
    for number, (image, *box) in rows(text['images_box.txt'], where('images_box.txt'), 5):
        xmin, ymin, xmax, ymax = numbers(box, int, where('images_box.txt'), number)
        unique(boxes, image, where('images_box.txt'), number)
        if xmax <= xmin or ymax <= ymin:
            raise FRNError(f'{where("images_box.txt")} line {number}: the box of image {image} is '
                           f'{xmin} {ymin} {xmax} {ymax} (xmin ymin xmax ymax), which has no area; the file is damaged')
        boxes[image] = (xmin, ymin, xmax, ymax)
    items = []
    for image, number in sorted(variant_of.items()):
        if image not in boxes:
            raise FRNError(f'image {image} has a variant but no line in {where("images_box.txt")}; '
                           f'the archive is incomplete: download fgvc-aircraft-2013b.tar.gz again')
        items.append(Item(f'images/{image}.jpg', fewshot_split(number), str(number), image, boxes[image]))
    empty = sorted(set(range(len(variants))) - set(variant_of.values()))
    if empty:
        raise FRNError(f'variant {variants[empty[0]]!r} of {where("variants.txt")} has no images in '
                       f'images_variant_trainval.txt or images_variant_test.txt; the archive is incomplete')
    return items, {str(number): name for number, name in enumerate(variants)}


# --- writing ----------------------------------------------------------------------------------------

def crop(data, box, where):
    """The decoded image cut to `box` rounded edge by edge, as PIL rounds it; refuses boxes outside the image."""
    left, top, right, bottom = (int(round(v)) for v in box)
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if not (0 <= left < right <= width and 0 <= top < bottom <= height):
                raise FRNError(f'the bounding box of {where} is ({left}, {top}, {right}, {bottom}) as (left, top, '
                               f'right, bottom), which is not inside the {width}x{height} image; the box list is '
                               f'damaged or belongs to other images: download the archive again')
            img.load()
            image = img if img.mode in ('L', 'RGB') else img.convert('RGB')   # e.g. CMYK cannot be a PNG
            return image.crop((left, top, right, bottom))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise FRNError(f'cannot read image {where} ({err}); the archive is damaged: download it again') from None


@contextlib.contextmanager
def staged_output(dst, names, overwrite):
    """A temp folder in `dst` to build `names` in; they are renamed into `dst` at the end, or all deleted."""
    dst = os.path.abspath(os.fspath(dst))
    if os.path.exists(dst) and not os.path.isdir(dst):
        raise FRNError(f'--dst {dst!r} is a file; give a folder')
    refuse_existing(dst, names, overwrite)
    created = not os.path.exists(dst)
    os.makedirs(dst, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f'.{names[0]}.', suffix='.partial', dir=dst)
    try:
        yield tmp
        refuse_existing(dst, names, overwrite)   # someone may have made it in the meantime
        for name in names:
            target = os.path.join(dst, name)
            old = os.path.join(tmp, f'{name}.old')   # a replaced folder goes with tmp below
            if os.path.exists(target):
                os.rename(target, old)
            try:
                os.rename(os.path.join(tmp, name), target)
            except BaseException:
                if os.path.exists(old):
                    os.rename(old, target)
                raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created and not os.listdir(dst):
            os.rmdir(dst)
        raise
    shutil.rmtree(tmp, ignore_errors=True)


def refuse_existing(dst, names, overwrite):
    for name in names:
        if os.path.exists(os.path.join(dst, name)) and not overwrite:
            raise FRNError(f'{os.path.join(dst, name)} already exists; remove it, choose another --dst, '
                           f'or pass --overwrite to replace it')


def progress(iterable, total, desc):
    """A tqdm bar on a terminal, nothing in logs."""
    from tqdm import tqdm
    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, disable=not sys.stdout.isatty())


def write_images(source, items, crop_root, raw_root, image_format, desc):
    """Crop (and for CUB copy) every item into its split/class folder; every listed image must be found."""
    pil_format, ext, options = IMAGE_FORMATS[image_format]
    by_rel = {item.rel: item for item in items}
    absent = source.missing(list(by_rel))
    done = set()
    if not absent:
        for rel, data in progress(source.iter_files(list(by_rel)), len(by_rel), desc):
            item = by_rel[rel]
            folder = os.path.join(item.split, item.folder)
            image = crop(data, item.box, source.where(rel))
            os.makedirs(os.path.join(crop_root, folder), exist_ok=True)
            image.save(os.path.join(crop_root, folder, item.stem + ext), pil_format, **options)
            if raw_root:
                os.makedirs(os.path.join(raw_root, folder), exist_ok=True)
                with open(os.path.join(raw_root, folder, os.path.basename(rel)), 'wb') as f:
                    f.write(data)   # the original bytes, as the official script copies them
            done.add(rel)
        absent = sorted(set(by_rel) - done)
    if absent:
        raise FRNError(f'{len(absent)} listed image(s) are not in the source, e.g. {source.where(absent[0])}; '
                       f'the archive is incomplete: download it again (the annotations-only archive has no images)')


def summarize(dataset, source_path, outputs, items, class_names, image_format):
    """Per split, the classes (folder -> original class) and image counts: the one record both outputs share."""
    splits = {split: {'classes': {}, 'images': 0} for split in SPLITS}
    split_of = {}
    for item in items:
        split_of[item.folder] = item.split
        splits[item.split]['images'] += 1
    for folder, name in class_names.items():   # in the order of the dataset's class list
        splits[split_of[folder]]['classes'][folder] = name
    return {'dataset': dataset, 'source': os.path.abspath(os.fspath(source_path)), 'outputs': outputs,
            'crop_format': image_format, 'split_rule': 'class i: train if i % 2 == 0, val if i % 4 == 1, '
                                                      'test if i % 4 == 3', 'splits': splits}


def format_summary(summary):
    """The summary for people: one line per split, then what was written."""
    lines = [f'{summary["dataset"]} from {summary["source"]}:']
    for split, entry in summary['splits'].items():
        lines.append(f'  {split:<5} {len(entry["classes"]):>4} classes {entry["images"]:>7,} images')
    lines += [f'wrote {path}' for path in summary['outputs']]
    return '\n'.join(lines)


def build(dataset, source, source_path, items, class_names, dst, names, image_format, overwrite):
    """Write the crops to names[0] (and the raw images to names[1] if given) under `dst`, atomically."""
    if image_format not in IMAGE_FORMATS:
        raise FRNError(f'image format {image_format!r} is not one of {", ".join(IMAGE_FORMATS)}')
    dst = os.path.abspath(os.fspath(dst))
    summary = summarize(dataset, source_path, [os.path.join(dst, name) for name in names], items, class_names,
                        image_format)
    with staged_output(dst, names, overwrite) as tmp:
        roots = [os.path.join(tmp, name) for name in names]
        write_images(source, items, roots[0], roots[1] if len(roots) > 1 else None, image_format,
                     desc=f'{dataset} images')
        for root in roots:
            atomic_write_json(summary, os.path.join(root, SPLIT_FILE))
    return summary


def prepare_cub(src, dst, overwrite=False, image_format='png'):
    """CUB_200_2011.tgz (or its folder) -> dst/CUB_fewshot_cropped and dst/CUB_fewshot_raw. Returns the summary."""
    source = open_source(src, 'CUB_200_2011/', ('.', 'CUB_200_2011'), 'images.txt', 'CUB_200_2011.tgz')
    items, class_ids = cub_plan(source)
    return build('CUB-200-2011', source, src, items, class_ids, dst, ('CUB_fewshot_cropped', 'CUB_fewshot_raw'),
                 image_format, overwrite)


def prepare_aircraft(src, dst, overwrite=False, image_format='png'):
    """fgvc-aircraft-2013b.tar.gz (or its folder) -> dst/Aircraft_fewshot. Returns the summary."""
    source = open_source(src, 'fgvc-aircraft-2013b/data/', ('.', 'data', 'fgvc-aircraft-2013b/data'),
                         'variants.txt', 'fgvc-aircraft-2013b.tar.gz')
    items, variant_names = aircraft_plan(source)
    return build('FGVC-Aircraft 2013b', source, src, items, variant_names, dst, ('Aircraft_fewshot',),
                 image_format, overwrite)
