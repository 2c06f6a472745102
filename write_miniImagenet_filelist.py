"""Write base.json, val.json and novel.json for a mini-ImageNet folder.

Usage, as in the DeepBDC/CloserLook lineage: copy this file into the dataset folder
(the one holding images/ and train.csv, val.csv, test.csv) and run it there with no
arguments. Or run it from anywhere:

    python write_miniImagenet_filelist.py --data_path /data/mini_imagenet [--out_dir DIR]

The output is the CloserLook/DeepBDC file-list format,
{"label_names": [...], "image_names": [...], "image_labels": [...]}, with classes
sorted, labels contiguous per split and image paths relative to the JSON file.
Everything is checked before anything is written, so bad input leaves no JSON behind.

This file needs only the Python standard library, so that a lone copy works. The
frn-paddle data package reuses its checks when it reads a folder that has only CSVs.
"""
import argparse
import csv
import json
import os
import sys
import tempfile

# split used by the training scripts -> (Ravi & Larochelle CSV, file-list JSON)
SPLITS = {'train': ('train.csv', 'base.json'), 'val': ('val.csv', 'val.json'), 'test': ('test.csv', 'novel.json')}
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff', '.webp')


class FileListError(ValueError):
    """Bad dataset input; the message says what is wrong and how to fix it."""


def read_split_csv(csv_path):
    """Rows of one split file as [(filename, class), ...], validated."""
    if not os.path.isfile(csv_path):
        raise FileListError(f'split file {csv_path!r} is missing. A mini-ImageNet folder holds images/ and '
                            f'train.csv, val.csv, test.csv (the Ravi & Larochelle splits); put it there or '
                            f'point --data_path at the folder that has it.')
    with open(csv_path, newline='', encoding='utf-8-sig') as f:
        rows = list(csv.reader(f))
    if not rows or [c.strip() for c in rows[0]] != ['filename', 'label']:
        found = ','.join(rows[0]) if rows else '(empty file)'
        raise FileListError(f'{csv_path!r} has header {found!r}, expected "filename,label". Use the original '
                            f'Ravi & Larochelle split files, whose rows look like n0153282900000005.jpg,n01532829.')
    out = []
    for line_no, row in enumerate(rows[1:], start=2):
        if not row:  # a blank line
            continue
        fields = [c.strip() for c in row]
        if len(fields) != 2 or not fields[1] or not fields[0].lower().endswith(IMAGE_EXTENSIONS):
            raise FileListError(f'{csv_path}, line {line_no}: malformed row {",".join(row)!r}. Every row must be '
                                f'"<image file>,<class>", for example n0153282900000005.jpg,n01532829.')
        out.append((fields[0], fields[1]))
    if not out:
        raise FileListError(f'{csv_path!r} lists no images; it needs one "<image file>,<class>" row per image.')
    return out


def read_mini_imagenet(data_path):
    """Read and cross-check the three splits of a mini-ImageNet folder.

    Returns {'train': (image_dir, rows), 'val': ..., 'test': ...} with rows
    sorted by (class, filename).
    """
    data_path = os.path.abspath(data_path)
    if not os.path.isdir(data_path):
        raise FileListError(f'data folder {data_path!r} does not exist. Pass the mini-ImageNet folder '
                            f'(the one holding images/ and train.csv, val.csv, test.csv).')
    rows = {split: read_split_csv(os.path.join(data_path, csv_name)) for split, (csv_name, _) in SPLITS.items()}
    image_dir = os.path.join(data_path, 'images')
    if not os.path.isdir(image_dir):
        raise FileListError(f'image folder {image_dir!r} does not exist. The mini-ImageNet JPEGs belong in '
                            f'images/ beside train.csv, val.csv and test.csv.')

    file_owner, class_owner = {}, {}
    for split, split_rows in rows.items():
        csv_name = SPLITS[split][0]
        for filename, cls in split_rows:
            if filename in file_owner:
                raise FileListError(f'{filename!r} is listed twice (in {file_owner[filename]} and {csv_name}). '
                                    f'Each image may appear only once across the three split files.')
            file_owner[filename] = csv_name
            owner = class_owner.setdefault(cls, csv_name)
            if owner != csv_name:
                raise FileListError(f'class {cls!r} appears in both {owner} and {csv_name}. Few-shot splits '
                                    f'must have disjoint classes; fix the split files.')

    present = set(os.listdir(image_dir))
    missing = [fn for fn in file_owner if fn not in present]
    if missing:
        shown = ', '.join(missing[:5]) + (', ...' if len(missing) > 5 else '')
        raise FileListError(f'{len(missing)} image(s) listed in the CSV files are missing from {image_dir}: '
                            f'{shown}. Copy the complete images/ folder or remove those rows.')
    return {split: (image_dir, sorted(split_rows, key=lambda r: (r[1], r[0]))) for split, split_rows in rows.items()}


def file_list(image_dir, rows, json_dir):
    """The JSON object for one split; image paths relative to `json_dir`."""
    label_names = sorted({cls for _, cls in rows})
    label_of = {name: i for i, name in enumerate(label_names)}
    return {'label_names': label_names,
            'image_names': [os.path.relpath(os.path.join(image_dir, fn), json_dir) for fn, _ in rows],
            'image_labels': [label_of[cls] for _, cls in rows]}


def write_json_atomically(obj, path):
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp', dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as f:
            json.dump(obj, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     epilog='Run it inside the dataset folder with no arguments, or pass --data_path.')
    parser.add_argument('--data_path', default='.',
                        help='mini-ImageNet folder with images/ and train.csv, val.csv, test.csv (default: .)')
    parser.add_argument('--out_dir', default=None,
                        help='where to write base.json, val.json and novel.json (default: --data_path); '
                             'image paths inside are stored relative to this folder')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        splits = read_mini_imagenet(args.data_path)
        out_dir = os.path.abspath(args.out_dir or args.data_path)
        if os.path.exists(out_dir) and not os.path.isdir(out_dir):
            raise FileListError(f'--out_dir {out_dir!r} is a file; give a folder for the JSON file lists.')
        os.makedirs(out_dir, exist_ok=True)
    except FileListError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    lists = {split: file_list(image_dir, rows, out_dir) for split, (image_dir, rows) in splits.items()}
    for split, (_, json_name) in SPLITS.items():
        path = os.path.join(out_dir, json_name)
        write_json_atomically(lists[split], path)
        print(f'{split:<5} {len(lists[split]["label_names"]):>4} classes {len(lists[split]["image_names"]):>7} '
              f'images -> {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
