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
and decodable, every box inside its image with a positive size, no two images of a class with
one file name, every name kept inside the output), and everything is built in a temp folder
beside the target and renamed into place at the end, so a failure leaves nothing
(data/prepare_output.py). An archive is read as a stream, twice: once for the metadata and
once for the images; nothing is extracted to disk (data/prepare_sources.py). The crop and
write steps here also serve Stanford Cars and Dogs (data/prepare_cars_dogs.py).
"""
import os

from data.decode import decode_image
from data.prepare_output import output_path, progress, save_bytes, save_image, staged_output
from data.prepare_sources import open_source, read_metadata, rows, numbers, unique
from utils import FRNError, atomic_write_json

SPLITS = ('train', 'val', 'test')
IMAGE_FORMATS = {'png': ('PNG', '.png', {}), 'jpeg': ('JPEG', '.jpg', {'quality': 95})}
SPLIT_FILE = 'split.json'   # in each output folder: per split, class folder -> original class, and counts
FRN_RULE = 'class i: train if i % 2 == 0, val if i % 4 == 1, test if i % 4 == 3'

CUB_PAGE = 'https://www.vision.caltech.edu/datasets/cub_200_2011/'
AIRCRAFT_PAGE = 'https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/'
CUB_META = ('classes.txt', 'images.txt', 'image_class_labels.txt', 'bounding_boxes.txt')
AIRCRAFT_META = ('variants.txt', 'images_variant_trainval.txt', 'images_variant_test.txt', 'images_box.txt')


def fewshot_split(number):
    """FRN's split of class `number` (CUB: 1-based class id; Aircraft: 0-based variant line)."""
    if number % 2 == 0:
        return 'train'
    return 'val' if number % 4 == 1 else 'test'


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

def crop(data, box, where, clip=False):
    """(the decoded image cut to `box`, rounded edge by edge as PIL rounds it, whether the box was clipped).

    A box outside the image is refused; with `clip`, a box reaching past the image's edge is cut
    to the image instead (and reported), and only one with no area inside the image is refused.
    """
    image = decode_image(data, where)
    width, height = image.size
    left, top, right, bottom = edges = tuple(int(round(v)) for v in box)
    if clip:
        left, top, right, bottom = max(left, 0), max(top, 0), min(right, width), min(bottom, height)
    if not (0 <= left < right <= width and 0 <= top < bottom <= height):
        raise FRNError(f'the bounding box of {where} is {edges} as (left, top, right, bottom), which is not '
                       f'inside the {width}x{height} image; the box list is damaged or belongs to other images: '
                       f'download the archive again')
    if image.mode not in ('L', 'RGB'):
        image = image.convert('RGB')   # e.g. CMYK cannot be a PNG
    return image.crop((left, top, right, bottom)), (left, top, right, bottom) != edges


def write_images(parts, crop_root, raw_root, image_format, desc, clip=False):
    """Crop (and for CUB copy) every item of each (source, items) into its split/class folder.

    Every listed image must be found. Returns the names of the images whose box was clipped.
    """
    pil_format, ext, options = IMAGE_FORMATS[image_format]
    crops, raws, clipped = {}, {}, []
    planned = []
    for source, items in parts:
        for item in items:
            where = source.where(item.rel)
            planned.append((source, item, output_path(crop_root, item.split, item.folder, item.stem + ext, crops,
                                                      where),
                            raw_root and output_path(raw_root, item.split, item.folder, os.path.basename(item.rel),
                                                     raws, where)))
    total = sum(len(items) for _, items in parts)
    bar = progress(None, total, desc)
    for source, items in parts:
        by_rel = {item.rel: (item, crop_path, raw_path) for src, item, crop_path, raw_path in planned
                  if src is source}
        absent = source.missing(list(by_rel))
        if not absent:
            done = set()
            for rel, data in source.iter_files(list(by_rel)):
                item, crop_path, raw_path = by_rel[rel]
                image, was_clipped = crop(data, item.box, source.where(rel), clip)
                save_image(image, crop_path, pil_format, options)
                if raw_path:
                    save_bytes(data, raw_path)   # the original bytes, as the official script copies them
                if was_clipped:
                    clipped.append(source.where(rel))
                done.add(rel)
                bar.update()
            absent = sorted(set(by_rel) - done)
        if absent:
            raise FRNError(f'{len(absent)} listed image(s) are not in the source, e.g. {source.where(absent[0])}; '
                           f'the archive is incomplete: download it again (an annotations-only archive has no '
                           f'images)')
    bar.close()
    return clipped


def summarize(dataset, source_path, outputs, items, class_names, image_format, split_rule=FRN_RULE):
    """Per split, the classes (folder -> original class) and image counts: the one record both outputs share."""
    splits = {split: {'classes': {}, 'images': 0} for split in SPLITS}
    split_of = {}
    for item in items:
        split_of[item.folder] = item.split
        splits[item.split]['images'] += 1
    for folder, name in class_names.items():   # in the order of the dataset's class list
        splits[split_of[folder]]['classes'][folder] = name
    return {'dataset': dataset, 'source': os.path.abspath(os.fspath(source_path)), 'outputs': outputs,
            'crop_format': image_format, 'split_rule': split_rule, 'splits': splits}


def build(dataset, parts, source_path, class_names, dst, names, image_format, overwrite, split_rule=FRN_RULE,
          clip=False):
    """Write the crops of each (source, items) to names[0] (and the raw images to names[1] if given), atomically."""
    if image_format not in IMAGE_FORMATS:
        raise FRNError(f'image format {image_format!r} is not one of {", ".join(IMAGE_FORMATS)}')
    dst = os.path.abspath(os.fspath(dst))
    items = [item for _, part in parts for item in part]
    summary = summarize(dataset, source_path, [os.path.join(dst, name) for name in names], items, class_names,
                        image_format, split_rule)
    with staged_output(dst, names, overwrite) as tmp:
        roots = [os.path.join(tmp, name) for name in names]
        clipped = write_images(parts, roots[0], roots[1] if len(roots) > 1 else None, image_format,
                               desc=f'{dataset} images', clip=clip)
        if clip:
            summary['clipped_boxes'] = clipped
            if clipped:
                summary['notes'] = [f'{len(clipped)} box(es) reached past the edge of their image and were cut to '
                                    f'it, e.g. {clipped[0]} (all are listed in {SPLIT_FILE})']
        for root in roots:
            atomic_write_json(summary, os.path.join(root, SPLIT_FILE))
    return summary


def prepare_cub(src, dst, overwrite=False, image_format='png'):
    """CUB_200_2011.tgz (or its folder) -> dst/CUB_fewshot_cropped and dst/CUB_fewshot_raw. Returns the summary."""
    source = open_source(src, 'CUB_200_2011/', ('.', 'CUB_200_2011'), 'images.txt', 'CUB_200_2011.tgz')
    items, class_ids = cub_plan(source)
    return build('CUB-200-2011', [(source, items)], src, class_ids, dst, ('CUB_fewshot_cropped', 'CUB_fewshot_raw'),
                 image_format, overwrite)


def prepare_aircraft(src, dst, overwrite=False, image_format='png'):
    """fgvc-aircraft-2013b.tar.gz (or its folder) -> dst/Aircraft_fewshot. Returns the summary."""
    source = open_source(src, 'fgvc-aircraft-2013b/data/', ('.', 'data', 'fgvc-aircraft-2013b/data'),
                         'variants.txt', 'fgvc-aircraft-2013b.tar.gz')
    items, variant_names = aircraft_plan(source)
    return build('FGVC-Aircraft 2013b', [(source, items)], src, variant_names, dst, ('Aircraft_fewshot',),
                 image_format, overwrite)
