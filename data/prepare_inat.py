"""meta-iNat and tiered meta-iNat (FRN paper, Table 4) from iNat2017's training images and boxes, as FRN builds them.

What the official script does (github.com/Tsingularity/FRN, data/init_meta_iNat.py), and so
what this module does, from `train_val_images.tar.gz` and `train_2017_bboxes.json`:
- Categories: each annotation (box) of the JSON adds its image to its category's set of
  images; a category is kept if it has 50 to 1,000 boxed images (1,135 categories).
- Images: every image of a kept category, converted to RGB and squashed to 84x84 with PIL's
  bilinear filter (no crop), saved as `<category id>/<file name>.png`.
- meta-iNat: train and test categories from the official lists (908 / 227;
  data/splits/meta_inat/, the ids of FRN's data/meta_iNat_split/*.pth).
- tiered meta-iNat: split by super-category: train Animalia, Aves, Reptilia, Amphibia,
  Mammalia, Actinopterygii, Mollusca (781 categories); test Insecta, Arachnida (354).
- Each dataset gets `train/` and `test/` (all images of their categories), and each test
  category is also halved into `refr/` (the first len // 5 of its images) and `query/` (the
  rest), in the order the official script lists them: the iteration order of a Python set
  of image ids filled in annotation order, which this module rebuilds the same way.
- `box_coords.json`: per `<category>/<file>.png`, its boxes as [xmin, ymin, xmax, ymax]
  scaled to a 10x10 image (the official script's `box_coords.pth`, as JSON).
The official script keeps the 84x84 images once in `inat2017_84x84/` and fills both datasets
with symbolic links to them; here each image is written once and hard-linked into both
datasets (copied where the file system has no hard links), so each folder stands alone.
"""
import errno
import io
import json
import math
import os
import shutil
import zipfile

from PIL import Image

from data.decode import decode_image
from data.prepare_output import output_path, progress, save_image, staged_output, write_file
from data.prepare_sources import decode_text, locate, read_member
from utils import FILE_SYSTEM_ERRNOS, FRNError, atomic_write_json

PAGE = 'https://github.com/visipedia/inat_comp/tree/master/2017'
SPLIT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'splits', 'meta_inat')
FILES = {'images': (('train_val_images.tar.gz', 'train_val_images.tgz', 'train_val_images.tar'), 'train_val_images'),
         'json': ((), 'train_2017_bboxes.json'), 'zip': ((), 'train_2017_bboxes.zip')}
MIN_IMAGES, MAX_IMAGES = 50, 1000
SIZE = 84
TIERED = {'train': ('Animalia', 'Aves', 'Reptilia', 'Amphibia', 'Mammalia', 'Actinopterygii', 'Mollusca'),
          'test': ('Insecta', 'Arachnida')}
OUTPUTS = ('meta_iNat', 'tiered_meta_iNat')
SPLITS = ('train', 'test', 'refr', 'query')


def official_split(split_dir=SPLIT_DIR):
    """{'train': [ids], 'test': [ids]} of meta-iNat, as shipped (one id a line)."""
    lists = {}
    for split in ('train', 'test'):
        with open(os.path.join(split_dir, f'{split}.txt'), encoding='ascii') as f:
            lists[split] = [int(line) for line in f if line.strip()]
    return lists


def read_boxes_json(found):
    """The parsed train_2017_bboxes.json, from the JSON or the zip it is downloaded as."""
    download = f'download train_2017_bboxes.zip again from {PAGE}'
    if 'json' in found:
        source, rel = found['json'], 'train_2017_bboxes.json'
        data = read_member(source, rel, download)
    elif 'zip' in found:
        source, rel = found['zip'], 'train_2017_bboxes.zip'
        try:
            with zipfile.ZipFile(io.BytesIO(read_member(source, rel, download))) as archive:
                data = archive.read('train_2017_bboxes.json')
        except (zipfile.BadZipFile, KeyError, OSError) as err:
            raise FRNError(f'cannot read train_2017_bboxes.json from {source.where(rel)} ({err}); {download}') from None
    else:
        raise FRNError(f'give train_2017_bboxes.json (or the train_2017_bboxes.zip it comes in) beside the images; '
                       f'{download.replace("again ", "")}')
    where = source.where(rel)
    try:
        info = json.loads(decode_text(data, where, 'train_2017_bboxes.zip'))
        if not all(isinstance(info.get(key), list) for key in ('images', 'annotations', 'categories')):
            raise ValueError('it lacks the lists "images", "annotations" and "categories"')
    except ValueError as err:
        raise FRNError(f'{where} is not iNat2017\'s box annotations ({err}); {download}') from None
    return info, where


def index(info, where):
    """(categories {id: (name, supercategory)}, files {image id: file name}, sets {category: set of images}, boxes)."""
    def bad(what, entry, n):
        return FRNError(f'{where}: {what} {n} is {str(entry)[:120]}; the file is damaged: download '
                        f'train_2017_bboxes.zip again from {PAGE}')
    categories, files = {}, {}
    for n, c in enumerate(info['categories']):
        if not isinstance(c, dict) or not isinstance(c.get('id'), int) or not isinstance(c.get('supercategory'), str):
            raise bad('category', c, n)
        categories[c['id']] = (str(c.get('name', c['id'])), c['supercategory'])
    for n, image in enumerate(info['images']):
        if not isinstance(image, dict) or not isinstance(image.get('id'), int) or \
                not isinstance(image.get('file_name'), str) or image['id'] in files:
            raise bad('image', image, n)
        files[image['id']] = image['file_name']
    sets, boxes = {}, {}
    for n, a in enumerate(info['annotations']):
        box = a.get('bbox') if isinstance(a, dict) else None
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) and math.isfinite(v)
                                                               for v in box)) or a.get('image_id') not in files \
                or a.get('category_id') not in categories:
            raise bad('annotation (its bbox, image_id or category_id)', a, n)
        boxes.setdefault(a['image_id'], []).append(box)
        if a['category_id'] in sets:   # as the official script fills them: their order is the refr/query order
            sets[a['category_id']].add(a['image_id'])
        else:
            sets[a['category_id']] = set([a['image_id']])
    return categories, files, sets, boxes


def dataset_splits(categories, kept, lists, where):
    """{output: {split: [category ids]}} of meta-iNat (official lists) and tiered meta-iNat (super-categories)."""
    for split, ids in lists.items():
        for c in ids:
            if c not in kept:
                raise FRNError(f'category {c} of the official meta-iNat {split} list does not have {MIN_IMAGES} to '
                               f'{MAX_IMAGES} boxed images in {where}; it is not iNat2017\'s train_2017_bboxes.json: '
                               f'download it again from {PAGE}')
    tiered = {split: [c for c in categories if c in kept and categories[c][1] in supers]
              for split, supers in TIERED.items()}
    for split, ids in tiered.items():
        if not ids:
            raise FRNError(f'no category of {", ".join(TIERED[split])} has {MIN_IMAGES} to {MAX_IMAGES} boxed images '
                           f'in {where}, so tiered meta-iNat would have no {split} split; it is not iNat2017\'s '
                           f'train_2017_bboxes.json: download it again from {PAGE}')
    return {'meta_iNat': lists, 'tiered_meta_iNat': tiered}


def link(src, dst):
    """A hard link, or a copy where the file system has none."""
    try:
        os.link(src, dst)
    except OSError as err:
        if err.errno in FILE_SYSTEM_ERRNOS - {errno.EPERM, errno.EXDEV}:
            raise
        shutil.copyfile(src, dst)


def prepare_inat(sources, dst, overwrite=False, split_dir=SPLIT_DIR):
    """train_val_images.tar.gz and train_2017_bboxes.json -> dst/meta_iNat, dst/tiered_meta_iNat. Returns summaries."""
    found = locate(sources, FILES, 'iNat2017', PAGE)
    if 'images' not in found:
        raise FRNError(f'give train_val_images.tar.gz (or its extracted train_val_images/) beside the boxes; '
                       f'download it from {PAGE}')
    info, where = read_boxes_json(found)
    categories, files, sets, boxes = index(info, where)
    kept = [c for c in sets if MIN_IMAGES <= len(sets[c]) <= MAX_IMAGES]
    layouts = dataset_splits(categories, set(kept), official_split(split_dir), where)
    wanted = {c for layout in layouts.values() for ids in layout.values() for c in ids}
    by_file = {}
    for c in sorted(wanted):
        for image in sets[c]:
            by_file.setdefault(files[image], []).append((c, image))
    dst = os.path.abspath(os.fspath(dst))
    summaries = []
    with staged_output(dst, OUTPUTS, overwrite) as tmp:
        store, taken, written, coords, seen = os.path.join(tmp, 'images'), {}, {}, {}, set()
        source = found['images']
        bar = progress(None, len(by_file), 'iNat2017 images')
        for rel, data in source.iter_files(list(by_file)):
            image = decode_image(data, source.where(rel))
            width, height = image.size
            small = image.convert('RGB').resize((SIZE, SIZE), Image.BILINEAR)
            name = os.path.splitext(os.path.basename(rel))[0] + '.png'
            for c, image_id in by_file[rel]:
                path = output_path(store, f'{SIZE}x{SIZE}', str(c), name, taken, source.where(rel))
                save_image(small, path, 'PNG', {})
                written[image_id, c] = path
                coords[f'{c}/{name}'] = [[x * 10 / width, y * 10 / height, (x + w) * 10 / width, (y + h) * 10 / height]
                                         for x, y, w, h in boxes[image_id]]
            seen.add(rel)
            bar.update()
        bar.close()
        absent = sorted(set(by_file) - seen)
        if absent:
            raise FRNError(f'{len(absent)} image(s) of the boxes file are not in the images, e.g. '
                           f'{source.where(absent[0])}; the archive is incomplete: download train_val_images.tar.gz '
                           f'again from {PAGE}')
        for output, layout in layouts.items():
            root = os.path.join(tmp, output)
            summary = {'dataset': output, 'source': os.path.commonpath([os.path.abspath(s) for s in sources]),
                       'outputs': [os.path.join(dst, output)], 'splits': {}}
            for split in SPLITS:
                ids = layout['train' if split == 'train' else 'test']
                entry = summary['splits'][split] = {'classes': {}, 'images': 0}
                for c in ids:
                    images = list(sets[c])
                    images = {'refr': images[:len(images) // 5], 'query': images[len(images) // 5:]}.get(split, images)
                    entry['classes'][str(c)] = categories[c][0]
                    entry['images'] += len(images)
                    for image_id in images:
                        stored = written[image_id, c]
                        write_file(os.path.join(root, split, str(c), os.path.basename(stored)),
                                   lambda target, stored=stored: link(stored, target))
            used = {str(c) for c in layout['train'] + layout['test']}
            atomic_write_json({k: coords[k] for k in sorted(coords) if k.split('/')[0] in used},
                              os.path.join(root, 'box_coords.json'))
            atomic_write_json(summary, os.path.join(root, 'split.json'))
            summaries.append(summary)
    return summaries
