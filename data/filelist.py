"""Read a dataset split into a `SplitList`: image paths, contiguous labels, class names.

Layouts understood:
- mini-ImageNet format: `images/` plus the file lists `base.json`/`val.json`/`novel.json`
  (written by write_miniImagenet_filelist.py), or plus `train.csv`/`val.csv`/`test.csv`.
- class-per-folder format: `<root>/{train,val,test}/<class>/<image>`, as the official FRN
  code uses for tiered-ImageNet, CUB and Aircraft, and as `--dataset custom` expects.

The CSV checks live in write_miniImagenet_filelist.py, which must also run alone when
copied into a dataset folder (the seed's usage) and so imports only the standard library.
"""
import dataclasses
import hashlib
import json
import os

import write_miniImagenet_filelist as csv_lists
from data.images import load_image
from utils import FRNError

SPLIT_NAMES = tuple(csv_lists.SPLITS)            # ('train', 'val', 'test')
IMAGE_EXTENSIONS = csv_lists.IMAGE_EXTENSIONS


@dataclasses.dataclass
class SplitList:
    """One split. Images are files; subclasses may serve them from elsewhere by overriding `load_image`."""
    image_paths: list   # absolute paths (for other sources: a unique name per image)
    labels: list        # int, 0..n_classes-1
    label_names: list   # class name of each label
    source: str         # where it was read from, for messages

    def __len__(self):
        return len(self.image_paths)

    @property
    def n_classes(self):
        return len(self.label_names)

    def load_image(self, i):
        """Image `i` as an RGB PIL image."""
        return load_image(self.image_paths[i])

    def class_members(self):
        """Positions of each label's images, in list order: one list per class."""
        members = [[] for _ in self.label_names]
        for i, label in enumerate(self.labels):
            members[label].append(i)
        return members

    def fingerprint(self, root):
        """SHA-256 of the images and labels in list order: the paths relative to the dataset folder `root`
        ('/'-separated; names of images that are no files, as they are), so the same data gives the same value
        wherever it is stored. Episodes are drawn by position in this list, so equal lists mean equal images."""
        digest = hashlib.sha256()
        for path, label in zip(self.image_paths, self.labels):
            name = os.path.relpath(path, root).replace(os.sep, '/') if os.path.isabs(path) else path
            digest.update(f'{name}\t{label}\n'.encode())
        return digest.hexdigest()

    def subset(self, classes):
        """Only the given labels (renumbered 0..k-1 in the order given); for small runs and tests."""
        new_label = {old: new for new, old in enumerate(classes)}
        keep = [i for i, label in enumerate(self.labels) if label in new_label]
        return dataclasses.replace(self, image_paths=[self.image_paths[i] for i in keep],
                                   labels=[new_label[self.labels[i]] for i in keep],
                                   label_names=[self.label_names[c] for c in classes])


def read_split_json(json_path):
    """Load a CloserLook/DeepBDC file list; relative paths resolve against the JSON's folder."""
    try:
        with open(json_path, encoding='utf-8') as f:
            meta = json.load(f)
    except OSError as err:
        raise FRNError(f'cannot read file list {json_path!r}: {err.strerror}; '
                       f'create it with write_miniImagenet_filelist.py') from None
    except ValueError as err:
        raise FRNError(f'file list {json_path!r} is not valid JSON ({err}); '
                       f'regenerate it with write_miniImagenet_filelist.py') from None
    keys = ('label_names', 'image_names', 'image_labels')
    if not isinstance(meta, dict) or any(k not in meta for k in keys):
        raise FRNError(f'file list {json_path!r} must be a JSON object with the keys {", ".join(keys)}; '
                       f'regenerate it with write_miniImagenet_filelist.py')
    names, labels, label_names = meta['image_names'], meta['image_labels'], meta['label_names']
    if len(names) != len(labels):
        raise FRNError(f'file list {json_path!r} has {len(names)} image_names but {len(labels)} image_labels; '
                       f'regenerate it with write_miniImagenet_filelist.py')
    bad = [x for x in labels if not isinstance(x, int) or not 0 <= x < len(label_names)]
    if bad:
        raise FRNError(f'file list {json_path!r} has image label {bad[0]!r}, outside 0..{len(label_names) - 1}; '
                       f'regenerate it with write_miniImagenet_filelist.py')
    folder = os.path.dirname(os.path.abspath(json_path))
    paths = [os.path.normpath(os.path.join(folder, p)) for p in names]  # join keeps absolute paths as they are
    return SplitList(paths, list(labels), list(label_names), source=json_path)


def read_mini_imagenet(data_path, split):
    """A mini-ImageNet-format folder: the JSON file list when present, else the CSVs."""
    csv_name, json_name = csv_lists.SPLITS[split]
    json_path = os.path.join(data_path, json_name)
    if os.path.isfile(json_path):
        return read_split_json(json_path)
    try:
        image_dir, rows = csv_lists.read_mini_imagenet(data_path)[split]
    except csv_lists.FileListError as err:
        raise FRNError(str(err)) from None
    listing = csv_lists.file_list(image_dir, rows, image_dir)
    return SplitList([os.path.join(image_dir, p) for p in listing['image_names']], listing['image_labels'],
                     listing['label_names'], source=os.path.join(data_path, csv_name))


def read_class_folders(data_path, split):
    """`<data_path>/<split>/<class>/<image>`: classes and images in sorted order."""
    root = os.path.join(data_path, split)
    if not os.path.isdir(root):
        without_val = ' (a dataset without a validation split trains with --val last)' if split == 'val' else ''
        raise FRNError(f'split folder {root!r} does not exist; a class-per-folder dataset needs '
                       f'{data_path}/train, /val and /test, each holding one subfolder per class{without_val}')
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not classes:
        raise FRNError(f'split folder {root!r} has no class subfolders; put each class\'s images in '
                       f'{root}/<class name>/')
    paths, labels = [], []
    for label, cls in enumerate(classes):
        folder = os.path.join(root, cls)
        images = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
        if not images:
            raise FRNError(f'class folder {folder!r} holds no images ({", ".join(IMAGE_EXTENSIONS)}); '
                           f'add images or remove the folder')
        paths += [os.path.join(folder, f) for f in images]
        labels += [label] * len(images)
    return SplitList(paths, labels, classes, source=root)


def detect_layout(data_path):
    """'mini' or 'folders', from what the folder holds; a clear error when it is neither."""
    if not os.path.isdir(data_path):
        raise FRNError(f'--data_path {data_path!r} does not exist; point it at the dataset folder')
    entries = set(os.listdir(data_path))
    if entries & {name for pair in csv_lists.SPLITS.values() for name in pair}:
        return 'mini'
    if all(os.path.isdir(os.path.join(data_path, s)) for s in ('train', 'test')):  # meta-iNat has no val/
        return 'folders'
    raise FRNError(f'{data_path!r} is not a dataset folder this code can read. Expected either the mini-ImageNet '
                   f'format (images/ plus train.csv, val.csv, test.csv or base.json, val.json, novel.json) or '
                   f'one folder per split (train/, val/, test/), each with one subfolder per class')


def read_split(data_path, split, layout=None):
    """The SplitList of `split` ('train', 'val' or 'test') of the dataset at `data_path`."""
    if split not in SPLIT_NAMES:
        raise ValueError(f'split must be one of {SPLIT_NAMES}, not {split!r}')
    layout = layout or detect_layout(data_path)
    reader = {'mini': read_mini_imagenet, 'folders': read_class_folders}[layout]
    return reader(data_path, split)
