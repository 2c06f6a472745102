"""Few-shot Stanford Cars and Stanford Dogs folders, built from the original files (the benchmarks of Bi-FRN and TDM).

Both are laid out as CUB and Aircraft are (data/prepare_fewshot.py): `{train,val,test}/<class>/`
bounding-box crops as PNG (or JPEG), `split.json`, FRN's class rule by default (class id i:
train if i % 2 == 0, val if i % 4 == 1, test if i % 4 == 3) or a published split from a file.

Stanford Cars (Krause et al. 2013), 196 classes, 16,185 images, from either packaging:
- `car_ims.tgz` + `cars_annos.mat` (every image, `car_ims/000001.jpg` ...): images keep
  their six-digit names;
- `cars_train.tgz`, `cars_test.tgz`, `car_devkit.tgz` (class names in `devkit/cars_meta.mat`,
  training boxes and labels in `devkit/cars_train_annos.mat`) and
  `cars_test_annos_withlabels.mat`: both halves number their images from 00001, so the
  crops are named `cars_train_00001` and `cars_test_00001`.
Class folders are `<id>.<model name>`, the id zero-padded to three digits and every run of
characters other than letters and digits in the name made one `_`
(`Ram C/V Cargo Van Minivan 2012` -> `174.Ram_C_V_Cargo_Van_Minivan_2012`).

Stanford Dogs (Khosla et al. 2011), 120 breeds, 20,580 images, from `images.tar`,
`annotation.tar` (one PASCAL VOC XML file per image) and `lists.tar` (`file_list.mat`: every
image with its label 1..120). Class folders keep the dataset's names (`n02085620-Chihuahua`:
the ImageNet wnid, which shows the overlap with ImageNet-trained models). An image with
several dogs has several boxes; the crop is the largest box (by area; the first of equals):
the breed label names the photo's main dog, and the largest box is the most likely to be it.

Boxes, both datasets: the devkit's `bbox_x1 y1 x2 y2` and VOC's `xmin ymin xmax ymax` are
1-based and inclusive (a box from pixel 1 to pixel 1 is one pixel wide), so the PIL crop is
(x1 - 1, y1 - 1, x2, y2): exactly the annotated pixels. A box that reaches past the image's
edge is cut to the image and listed in the summary and `split.json` (`clipped_boxes`); a box
with x2 < x1 or y2 < y1, or with no pixel inside its image, is refused.
"""
import os
import re
import xml.etree.ElementTree as ET

from data.prepare_fewshot import SPLITS, Item, build, fewshot_split, FRN_RULE
from data.prepare_sources import load_mat, locate, mat_field, mat_records, read_member
from utils import FRNError

CARS_PAGE = 'https://ai.stanford.edu/~jkrause/cars/car_dataset.html'
DOGS_PAGE = 'http://vision.stanford.edu/aditya86/ImageNetDogs/'
CARS_FILES = {'car_ims': (('car_ims.tgz', 'car_ims.tar.gz', 'car_ims.tar'), 'car_ims'),
              'annos': ((), 'cars_annos.mat'),
              'train': (('cars_train.tgz', 'cars_train.tar.gz', 'cars_train.tar'), 'cars_train'),
              'test': (('cars_test.tgz', 'cars_test.tar.gz', 'cars_test.tar'), 'cars_test'),
              'devkit': (('car_devkit.tgz', 'car_devkit.tar.gz', 'car_devkit.tar'), 'devkit'),
              'test_labels': ((), 'cars_test_annos_withlabels.mat')}
CARS_PACKAGINGS = (('car_ims', 'annos'), ('train', 'test', 'devkit', 'test_labels'))
DOGS_FILES = {'images': (('images.tar',), 'Images'), 'annotation': (('annotation.tar',), 'Annotation'),
              'lists': (('lists.tar',), 'file_list.mat')}


def folder_name(class_id, name):
    """`<id>.<name>` with the id zero-padded to 3 digits and each run of non-alphanumerics as one `_`."""
    return f'{class_id:03d}.' + re.sub(r'[^A-Za-z0-9]+', '_', name).strip('_')


def read_split_file(path, classes):
    """{class id: split} from a text file of `<split> <class>` lines, the class named by its id, folder or name.

    classes: {id: (folder, name)}. Blank lines and lines starting with # are skipped. Every
    class must be named exactly once.
    """
    keys = {}
    for cid, names in classes.items():
        for key in (str(cid), *names):
            keys.setdefault(key, cid)
    try:
        with open(path, encoding='utf-8') as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise FRNError(f'cannot read --split_file {path!r} ({err}); give a UTF-8 text file of '
                       f'"<split> <class>" lines') from None
    split_of = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith('#'):
            continue
        split, _, name = line.strip().partition(' ')
        name = name.strip()
        cid = keys.get(str(int(name)) if name.isdigit() else name)
        if split not in SPLITS or cid is None:
            raise FRNError(f'--split_file {path} line {number} is {line.strip()!r}: expected "<split> <class>" with '
                           f'split one of {", ".join(SPLITS)} and a class given by its id, folder or name')
        if cid in split_of:
            raise FRNError(f'--split_file {path} line {number} names class {cid} ({classes[cid][0]}) again')
        split_of[cid] = split
    missing = [cid for cid in classes if cid not in split_of]
    if missing:
        raise FRNError(f'--split_file {path} does not name {len(missing)} class(es), e.g. {missing[0]} '
                       f'({classes[missing[0]][0]}); every class must be in one split')
    return split_of


def class_splits(classes, split_file):
    """(split of each class id, the rule for the summary): FRN's rule, or the published split of `split_file`."""
    if split_file is None:
        return {cid: fewshot_split(cid) for cid in classes}, FRN_RULE
    return read_split_file(split_file, classes), f'from {os.path.abspath(split_file)}'


def devkit_box(x1, y1, x2, y2, where, number):
    """The PIL box of a 1-based inclusive box; refuses an inverted one."""
    if x2 < x1 or y2 < y1:
        raise FRNError(f'{where} entry {number}: the box {x1} {y1} {x2} {y2} (x1 y1 x2 y2) is inverted, so it '
                       f'holds no pixel; the file is damaged: download it again')
    return x1 - 1, y1 - 1, x2, y2


# --- Stanford Cars ---------------------------------------------------------------------------------------

def cars_records(source, rel, fields, download):
    """The annotation structs of one of the Cars MATLAB files, each as {field: value}."""
    mat = load_mat(read_member(source, rel, download), source.where(rel), download)
    records = mat_records(mat, 'annotations', source.where(rel), download)
    return [{field: mat_field(r, field, kind, source.where(rel), n, download) for field, kind in fields}
            for n, r in enumerate(records, 1)], mat


def cars_class_names(mat, where, download):
    names = mat_records(mat, 'class_names', where, download)
    if not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise FRNError(f'{where} has no list of class names; the file is damaged: {download}')
    return [n.strip() for n in names]


BOX_FIELDS = (('bbox_x1', int), ('bbox_y1', int), ('bbox_x2', int), ('bbox_y2', int), ('class', int))


def cars_plan(found):
    """[(source, items)] and {folder: (id, name)} from whichever packaging was given."""
    for packaging in CARS_PACKAGINGS:
        if any(key in found for key in packaging):
            absent = [CARS_FILES[key][1] if not CARS_FILES[key][0] else CARS_FILES[key][0][0]
                      for key in packaging if key not in found]
            if absent:
                raise FRNError(f'Stanford Cars also needs {", ".join(absent)} beside what was given; download '
                               f'{"them" if len(absent) > 1 else "it"} from {CARS_PAGE} and give '
                               f'{"them" if len(absent) > 1 else "it"} too')
            break
    else:
        raise FRNError(f'give the Stanford Cars files: car_ims.tgz and cars_annos.mat, or cars_train.tgz, '
                       f'cars_test.tgz, car_devkit.tgz and cars_test_annos_withlabels.mat ({CARS_PAGE})')
    download = f'download it again from {CARS_PAGE}'
    if packaging[0] == 'car_ims':
        records, mat = cars_records(found['annos'], 'cars_annos.mat', BOX_FIELDS + (('relative_im_path', str),),
                                    download)
        names = cars_class_names(mat, found['annos'].where('cars_annos.mat'), download)
        halves = [(found['car_ims'], found['annos'].where('cars_annos.mat'), [(r, r['relative_im_path'],
                                                         os.path.splitext(os.path.basename(r['relative_im_path']))[0])
                                                        for r in records])]
    else:
        meta = found['devkit']
        mat = load_mat(read_member(meta, 'devkit/cars_meta.mat', download), meta.where('devkit/cars_meta.mat'),
                       download)
        names = cars_class_names(mat, meta.where('devkit/cars_meta.mat'), download)
        halves = []
        for key, annos, rel in (('train', found['devkit'], 'devkit/cars_train_annos.mat'),
                                ('test', found['test_labels'], 'cars_test_annos_withlabels.mat')):
            records, _ = cars_records(annos, rel, BOX_FIELDS + (('fname', str),), download)
            halves.append((found[key], annos.where(rel), [(r, f'cars_{key}/{r["fname"]}',
                                              f'cars_{key}_' + os.path.splitext(r['fname'])[0]) for r in records]))
    classes = {cid: (folder_name(cid, name), name) for cid, name in enumerate(names, 1)}
    return halves, classes


def cars_items(halves, classes, split_of):
    parts, used = [], set()
    for source, where, entries in halves:
        items = []
        for number, (r, image, stem) in enumerate(entries, 1):
            if r['class'] not in classes:
                raise FRNError(f'{where} entry {number} gives class {r["class"]}, but there are {len(classes)} class '
                               f'names; the file is damaged or from another dataset: download it again')
            box = devkit_box(r['bbox_x1'], r['bbox_y1'], r['bbox_x2'], r['bbox_y2'], where, number)
            items.append(Item(image, split_of[r['class']], classes[r['class']][0], stem, box))
            used.add(r['class'])
        parts.append((source, items))
    empty = sorted(set(classes) - used)
    if empty:
        raise FRNError(f'class {empty[0]} ({classes[empty[0]][1]}) has no images in the annotations; they are '
                       f'incomplete: download them again from {CARS_PAGE}')
    return parts


def prepare_cars(sources, dst, overwrite=False, image_format='png', split_file=None):
    """The Stanford Cars files (either packaging) -> dst/Cars_fewshot. Returns the summary."""
    found = locate(sources, CARS_FILES, 'Stanford Cars', CARS_PAGE)
    halves, classes = cars_plan(found)
    split_of, rule = class_splits(classes, split_file)
    parts = cars_items(halves, classes, split_of)
    return build('Stanford Cars', parts, os.path.commonpath([os.path.abspath(s) for s in sources]),
                 {folder: cid for cid, (folder, _) in classes.items()}, dst, ('Cars_fewshot',), image_format,
                 overwrite, split_rule=rule, clip=True)


# --- Stanford Dogs ---------------------------------------------------------------------------------------

def voc_largest_box(data, where):
    """The PIL box of the largest object box of a VOC XML file (the first of equals)."""
    try:
        root = ET.fromstring(data)
        boxes = [tuple(int(float(obj.find('bndbox').find(tag).text)) for tag in ('xmin', 'ymin', 'xmax', 'ymax'))
                 for obj in root.iter('object')]
    except (ET.ParseError, AttributeError, TypeError, ValueError) as err:
        raise FRNError(f'{where} is not a VOC annotation with numeric boxes ({type(err).__name__}: {err}); '
                       f'the archive is damaged: download annotation.tar again from {DOGS_PAGE}') from None
    if not boxes:
        raise FRNError(f'{where} has no <object> box; the archive is damaged: download annotation.tar again '
                       f'from {DOGS_PAGE}')
    for box in boxes:
        devkit_box(*box, where, boxes.index(box) + 1)
    return devkit_box(*max(boxes, key=lambda b: (b[2] - b[0] + 1) * (b[3] - b[1] + 1)), where, 0)


def dogs_plan(found):
    """[(source, items)] and {id: (folder, breed)} from file_list.mat and the VOC files."""
    for key, (archives, member) in DOGS_FILES.items():
        if key not in found:
            raise FRNError(f'Stanford Dogs also needs {archives[0]} (or its extracted {member}) beside what was '
                           f'given; download it from {DOGS_PAGE}')
    download = f'download lists.tar again from {DOGS_PAGE}'
    lists = found['lists']
    where = lists.where('file_list.mat')
    mat = load_mat(read_member(lists, 'file_list.mat', download), where, download)
    files = [str(f) for f in mat_records(mat, 'file_list', where, download)]
    annotations = [str(a) for a in mat_records(mat, 'annotation_list', where, download)]
    labels = mat_records(mat, 'labels', where, download)
    if not (len(files) == len(annotations) == len(labels)) or not files:
        raise FRNError(f'{where} lists {len(files)} files, {len(annotations)} annotations and {len(labels)} labels; '
                       f'the file is damaged: {download}')
    classes, folder_id = {}, {}
    for number, (file, label) in enumerate(zip(files, labels), 1):
        folder = file.split('/')[0]
        try:
            cid = int(label)
        except (TypeError, ValueError):
            cid = None
        if cid is None or '/' not in file or classes.setdefault(cid, (folder, folder.partition('-')[2])) != \
                (folder, folder.partition('-')[2]) or folder_id.setdefault(folder, cid) != cid:
            raise FRNError(f'{where} entry {number} ({file}, label {label}) does not agree with the other entries '
                           f'(one folder per label); the file is damaged: {download}')
    xml = found['annotation'].read_all([f'Annotation/{a}' for a in annotations])
    return files, annotations, labels, xml, classes


def dogs_items(found, plan, split_of):
    files, annotations, labels, xml, classes = plan
    items = []
    for file, annotation, label in zip(files, annotations, labels):
        rel = f'Annotation/{annotation}'
        if rel not in xml:
            raise FRNError(f'{found["annotation"].where(rel)} is missing; download annotation.tar again '
                           f'from {DOGS_PAGE}')
        box = voc_largest_box(xml[rel], found['annotation'].where(rel))
        cid = int(label)
        items.append(Item(f'Images/{file}', split_of[cid], classes[cid][0],
                          os.path.splitext(os.path.basename(file))[0], box))
    return [(found['images'], items)]


def prepare_dogs(sources, dst, overwrite=False, image_format='png', split_file=None):
    """images.tar, annotation.tar and lists.tar of Stanford Dogs -> dst/Dogs_fewshot. Returns the summary."""
    found = locate(sources, DOGS_FILES, 'Stanford Dogs', DOGS_PAGE)
    plan = dogs_plan(found)
    classes = dict(sorted(plan[-1].items()))
    split_of, rule = class_splits(classes, split_file)
    parts = dogs_items(found, plan, split_of)
    return build('Stanford Dogs', parts, os.path.commonpath([os.path.abspath(s) for s in sources]),
                 {folder: breed for folder, breed in classes.values()}, dst, ('Dogs_fewshot',), image_format,
                 overwrite, split_rule=rule, clip=True)
