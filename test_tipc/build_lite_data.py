"""The TIPC lite data set: a few Tiny-ImageNet-32 classes in mini-ImageNet format, and folders for infer.py.

    python test_tipc/build_lite_data.py --dst test_tipc/data/lite [--archive PATH]

From the shared archive (images/ plus train.csv, val.csv, test.csv, 32 x 32 JPEGs) it keeps
the first classes of each split (sorted by name) and their first images, and writes
DST/images/, DST/{train,val,test}.csv, and DST/infer/support/<class>/ (2 images each of 3
test classes) with DST/infer/query/ (1 other image of each). It is rebuilt only when missing.
"""
import argparse
import csv
import io
import os
import shutil
import sys
import tarfile

SPLITS = {'train': (6, 20), 'val': (5, 12), 'test': (5, 12)}  # classes, images per class


def default_archive():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    shared = os.environ.get('FRN_SHARED', os.path.join(repo, '..', 'shared'))
    return os.path.join(shared, 'data', 'tinyimagenet32_miniformat.tar.gz')


def build(archive, dst):
    tmp = dst + '.partial'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, 'images'))
    keep = {}
    with tarfile.open(archive) as tar:  # the CSVs come last in the archive: a first pass reads them
        for member in tar:
            name = os.path.basename(member.name)
            if member.isfile() and name[:-4] in SPLITS and name.endswith('.csv'):
                rows = list(csv.reader(io.StringIO(tar.extractfile(member).read().decode())))[1:]
                n_classes, n_images = SPLITS[name[:-4]]
                classes = sorted({label for _, label in rows})[:n_classes]
                keep[name[:-4]] = [r for c in classes for r in [r for r in rows if r[1] == c][:n_images]]
    if sorted(keep) != sorted(SPLITS):
        raise SystemExit(f'error: {archive} lacks some of train.csv, val.csv, test.csv')
    wanted = {name for rows in keep.values() for name, _ in rows}
    with tarfile.open(archive) as tar:
        for member in tar:
            name = os.path.basename(member.name)
            if member.isfile() and name in wanted and '/images/' in '/' + member.name:
                with open(os.path.join(tmp, 'images', name), 'wb') as f:
                    f.write(tar.extractfile(member).read())
    missing = [n for n in wanted if not os.path.isfile(os.path.join(tmp, 'images', n))]
    if missing:
        raise SystemExit(f'error: {len(missing)} listed images are not in {archive}, e.g. {missing[0]}')
    for split, rows in keep.items():
        with open(os.path.join(tmp, f'{split}.csv'), 'w', newline='') as f:
            writer = csv.writer(f, lineterminator='\n')
            writer.writerow(['filename', 'label'])
            writer.writerows(rows)
    test_classes = sorted({label for _, label in keep['test']})[:3]
    os.makedirs(os.path.join(tmp, 'infer', 'query'))
    for label in test_classes:
        names = [n for n, c in keep['test'] if c == label]
        os.makedirs(os.path.join(tmp, 'infer', 'support', label))
        for n in names[:2]:
            shutil.copy(os.path.join(tmp, 'images', n), os.path.join(tmp, 'infer', 'support', label, n))
        shutil.copy(os.path.join(tmp, 'images', names[2]), os.path.join(tmp, 'infer', 'query', names[2]))
    os.replace(tmp, dst)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--dst', required=True)
    parser.add_argument('--archive', default=default_archive())
    args = parser.parse_args()
    if os.path.isfile(os.path.join(args.dst, 'test.csv')):
        print(f'{args.dst} is there already')
        return
    if not os.path.isfile(args.archive):
        sys.exit(f'error: {args.archive} not found; set FRN_SHARED to the shared data folder or pass --archive')
    build(args.archive, args.dst)
    counts = {s: len({c for _, c in csv.reader(open(os.path.join(args.dst, f'{s}.csv')))}) - 1 for s in SPLITS}
    print(f'lite data set in {args.dst}: classes per split {counts}, infer folders in {args.dst}/infer')


if __name__ == '__main__':
    main()
