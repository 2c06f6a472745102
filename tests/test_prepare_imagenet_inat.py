"""mini-ImageNet from ILSVRC-2012 and (tiered) meta-iNat from iNat2017: the official mappings, pixels, splits, errors.

The inputs are small archives in the real formats: a tar of per-class tars named like
ILSVRC2012_img_train.tar's, and a gzip tar with iNat2017's train_val_images/<super>/<species>/
layout beside a JSON in the schema of train_2017_bboxes.json.
"""
import io
import json
import os
import pathlib
import pickle
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, shared_path
from data import prepare_inat as inat
from data import prepare_mini_imagenet as mini
from data.filelist import read_split
from test_prepare_datasets import run_failing, run_tool, tree

# --- mini-ImageNet -------------------------------------------------------------------------------------

CLASSES = {'train': 'n01532829', 'val': 'n02110341', 'test': 'n01930112'}
NUMBERS = (1, 2, 3, 10, 7, 25)   # sorted as numbers: 1 2 3 7 10 25; as text: 1 10 2 25 3 7
POSITIONS = (1, 4, 5)            # the 1st, 4th and 5th by number: _1, _7, _10


def colour(wnid, number):
    return (int(wnid[-3:]) % 200, 9 * number, 40 + 7 * number)


def write_ilsvrc_class(folder, wnid):
    folder.mkdir(parents=True)
    for number in NUMBERS:
        Image.new('RGB', (100 + number, 90), colour(wnid, number)).save(folder / f'{wnid}_{number}.JPEG', quality=95)
    (folder / 'notes.txt').write_text('not an image of the class')


def tar_bytes(files):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w') as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def make_ilsvrc(base, tmp_path):
    """base/train/<wnid>/ (extracted) and tmp_path/ILSVRC2012_img_train.tar (a tar of class tars)."""
    class_tars = []
    for wnid in list(CLASSES.values()) + ['n09999999']:   # one class the split does not use
        write_ilsvrc_class(base / 'train' / wnid, wnid)
        files = sorted((p.name, p.read_bytes()) for p in (base / 'train' / wnid).iterdir())
        class_tars.append((f'{wnid}.tar', tar_bytes(files)))
    archive = tmp_path / 'ILSVRC2012_img_train.tar'
    archive.write_bytes(tar_bytes(class_tars[::-1]))
    return archive


def write_split_csvs(folder):
    folder.mkdir(parents=True)
    for split, wnid in CLASSES.items():
        rows = ''.join(f'{wnid}{p:08d}.jpg,{wnid}\n' for p in POSITIONS)
        (folder / f'{split}.csv').write_text('filename,label\n' + rows)
    return folder


@pytest.fixture
def ilsvrc(tmp_path):
    base = tmp_path / 'ilsvrc'
    return make_ilsvrc(base, tmp_path), base / 'train', write_split_csvs(tmp_path / 'splits')


def test_the_shipped_split_files_are_ravi_and_larochelles(tmp_path):
    folder = pathlib.Path(mini.CSV_DIR)
    for split, (n_classes, n_rows) in {'train': (64, 38400), 'val': (16, 9600), 'test': (20, 12000)}.items():
        lines = (folder / f'{split}.csv').read_text().splitlines()
        assert lines[0] == 'filename,label' and len(lines) - 1 == n_rows
        assert len({line.split(',')[1] for line in lines[1:]}) == n_classes
    assert 'MIT License' in (folder / 'LICENSE').read_text()
    for split in ('train', 'val', 'test'):
        shared = shared_path('data', 'miniimagenet_splits', f'{split}.csv')
        assert (folder / f'{split}.csv').read_bytes() == shared.read_bytes()


def test_a_csv_name_is_the_classs_nth_ilsvrc_file_sorted_by_number(ilsvrc, tmp_path):
    archive, _, splits = ilsvrc
    mini.prepare_mini_imagenet(archive, tmp_path / 'out', split_dir=splits)
    images = tmp_path / 'out' / 'mini-ImageNet' / 'images'
    assert len(os.listdir(images)) == 9
    for wnid in CLASSES.values():
        for position, number in zip(POSITIONS, (1, 7, 10)):
            with Image.open(images / f'{wnid}{position:08d}.jpg') as img:
                assert img.size == (84, 84) and img.format == 'JPEG'
                mean = np.asarray(img, dtype=np.float64).mean(axis=(0, 1))
            assert np.abs(mean - colour(wnid, number)).max() < 1.5, (wnid, position, mean)


def test_area_resize_averages_exactly_the_input_area_of_each_output_pixel():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (168, 252, 3), dtype=np.uint8)
    out = np.asarray(mini.area_resize(Image.fromarray(pixels), 84))
    blocks = pixels.astype(np.float64).reshape(84, 2, 84, 3, 3).mean(axis=(1, 3))   # 2x3 blocks
    assert np.abs(out - blocks).max() <= 0.5 + 1e-9   # each the block mean, rounded
    weights = mini.area_weights(100, 84)   # fractional: each output pixel covers 100/84 input pixels
    assert np.allclose(weights.sum(axis=1), 1) and np.allclose(weights.sum(axis=0), 84 / 100)


def test_originals_are_kept_byte_for_byte_with_image_size_0_and_csvs_are_copied(ilsvrc, tmp_path):
    archive, train, splits = ilsvrc
    mini.prepare_mini_imagenet(archive, tmp_path / 'out', image_size=0, split_dir=splits)
    root = tmp_path / 'out' / 'mini-ImageNet'
    wnid = CLASSES['val']
    assert (root / 'images' / f'{wnid}00000005.jpg').read_bytes() == (train / wnid / f'{wnid}_10.JPEG').read_bytes()
    assert all((root / f'{s}.csv').read_bytes() == (splits / f'{s}.csv').read_bytes() for s in CLASSES)
    lists = {s: read_split(str(root), s) for s in CLASSES}   # the seed's loaders read it through the CSVs
    assert [(lists[s].n_classes, len(lists[s])) for s in CLASSES] == [(1, 3)] * 3


def test_extracted_class_folders_and_class_tars_give_the_archives_output(ilsvrc, tmp_path, capsys):
    archive, train, splits = ilsvrc
    run_tool('prepare_mini_imagenet', str(archive), '--dst', str(tmp_path / 'a'), '--split_dir', str(splits))
    out = capsys.readouterr().out.splitlines()
    assert out[1:4] == ['  train    1 classes       3 images', '  val      1 classes       3 images',
                        '  test     1 classes       3 images']
    assert out[-1] == f'next: --dataset mini_imagenet --data_path {tmp_path / "a" / "mini-ImageNet"}'
    mini.prepare_mini_imagenet(train, tmp_path / 'b', split_dir=splits)
    tars = tmp_path / 'tars'
    tars.mkdir()
    for wnid in CLASSES.values():
        (tars / f'{wnid}.tar').write_bytes(tar_bytes(sorted((p.name, p.read_bytes()) for p in (train / wnid).iterdir())))
    mini.prepare_mini_imagenet(tars, tmp_path / 'c', split_dir=splits)
    a, b, c = (tree(tmp_path / x) for x in 'abc')
    assert a.keys() == b.keys() == c.keys() and len(a) == 13
    assert all(a[k] == b[k] == c[k] for k in a if not k.endswith('split.json'))


MINI_BREAKS = {   # name: (break the extracted train folder or the split folder, text of the error)
    'missing class': (lambda train, splits: [p.unlink() for p in (train / CLASSES['test']).iterdir()] and
                      (train / CLASSES['test']).rmdir(), 'has no n01930112.tar (1 of the 3 classes are missing)'),
    'too few images': (lambda train, splits: (train / CLASSES['val'] / f'{CLASSES["val"]}_25.JPEG').unlink() or
                       (train / CLASSES['val'] / f'{CLASSES["val"]}_10.JPEG').unlink(),
                       'has 4 images of class n02110341, but the split files ask for the 5th'),
    'unreadable image': (lambda train, splits: (train / CLASSES['train'] / f'{CLASSES["train"]}_7.JPEG')
                         .write_bytes(b'\xff\xd8 cut'), 'n01532829.tar/n01532829_7.JPEG'),
    'missing split file': (lambda train, splits: (splits / 'test.csv').unlink(), 'test.csv'),
    'malformed split row': (lambda train, splits: (splits / 'val.csv').write_text('filename,label\nx.jpg,n1\n'),
                            "val.csv line 2 is 'x.jpg,n1'"),
}


@pytest.mark.parametrize('case', list(MINI_BREAKS))
def test_broken_ilsvrc_inputs_fail_with_one_line_naming_the_file_and_write_nothing(case, tmp_path, capsys):
    base = tmp_path / 'ilsvrc'
    make_ilsvrc(base, tmp_path)
    splits = write_split_csvs(tmp_path / 'splits')
    breaks, expected = MINI_BREAKS[case]
    breaks(base / 'train', splits)
    archive = make_ilsvrc_from(base / 'train', tmp_path)
    code, err = run_failing('prepare_mini_imagenet', capsys, str(archive), '--dst', str(tmp_path / 'out'),
                            '--split_dir', str(splits))
    assert code == 2 and err.startswith('error: ') and len(err.strip().splitlines()) == 1, err
    assert expected in err and 'Traceback' not in err
    assert not (tmp_path / 'out').exists()


def make_ilsvrc_from(train, tmp_path):
    class_tars = [(f'{d.name}.tar', tar_bytes(sorted((p.name, p.read_bytes()) for p in d.iterdir())))
                  for d in sorted(train.iterdir())]
    archive = tmp_path / 'ILSVRC2012_img_train.tar'
    archive.write_bytes(tar_bytes(class_tars))
    return archive


def test_the_validation_archive_is_named_as_the_wrong_one(ilsvrc, tmp_path, capsys):
    _, train, splits = ilsvrc
    val = tmp_path / 'ILSVRC2012_img_val.tar'   # 50,000 JPEGs, no class tars
    val.write_bytes(tar_bytes([('ILSVRC2012_val_00000001.JPEG', (train / 'n01532829' / 'n01532829_1.JPEG')
                                .read_bytes())]))
    code, err = run_failing('prepare_mini_imagenet', capsys, str(val), '--dst', str(tmp_path / 'out'),
                            '--split_dir', str(splits))
    assert code == 2 and 'has no n01532829.tar (3 of the 3 classes are missing)' in err
    assert 'ILSVRC2012_img_train.tar' in err


# --- meta-iNat and tiered meta-iNat --------------------------------------------------------------------

SUPER = {101: 'Aves', 102: 'Insecta', 103: 'Mammalia', 104: 'Arachnida', 105: 'Aves', 106: 'Reptilia',
         107: 'Plantae'}
COUNTS = {101: 50, 102: 52, 103: 55, 104: 61, 105: 49, 106: 1001, 107: 50}   # 105 and 106 fall outside 50..1000
META_SPLIT = {'train': [103, 101], 'test': [104, 102]}


def make_inat(base, with_box_of_3=False):
    """base/train_val_images/<super>/<species>/<id>.jpg and base/train_2017_bboxes.json, iNat2017's schema."""
    images, annotations, categories = [], [], []
    rng = np.random.default_rng(0)
    for c, count in COUNTS.items():
        categories.append({'id': c, 'name': f'Species {c}', 'supercategory': SUPER[c],
                           'kingdom': 'Animalia'})
        folder = base / 'train_val_images' / SUPER[c] / f'Species {c}'
        folder.mkdir(parents=True)
        for k in range(count):
            image_id = 10000 * c + (k * 37) % count   # ids not in file order, so the set order matters
            name = f'{image_id:08x}a{k}.jpg'
            size = (24 + k % 5, 20 + k % 3)
            if c not in (105, 106):   # only the kept categories need their files
                Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / name)
            images.append({'id': image_id, 'file_name': f'train_val_images/{SUPER[c]}/Species {c}/{name}',
                           'width': size[0], 'height': size[1], 'license': 1, 'rights_holder': 'someone'})
            boxes = [[1.0, 2.0, 10.5, 8.0]] + ([[3, 4, 5, 6]] if k % 7 == 0 else [])   # some images have two
            for box in boxes:
                annotations.append({'id': len(annotations), 'image_id': image_id, 'category_id': c, 'bbox': box,
                                    'area': box[2] * box[3] / 2, 'iscrowd': 0})
    rng.shuffle(annotations)
    if with_box_of_3:
        annotations[5]['bbox'] = [1, 2, 3]
    (base / 'train_2017_bboxes.json').write_text(json.dumps({'info': {'year': 2017}, 'images': images,
                                                             'annotations': annotations,
                                                             'categories': categories, 'licenses': []}))
    return images, annotations


def inat_archive(base, tmp_path):
    archive = tmp_path / 'train_val_images.tar.gz'
    with tarfile.open(archive, 'w:gz') as tar:
        tar.add(base / 'train_val_images', arcname='train_val_images')
    return archive


@pytest.fixture
def inat_src(tmp_path):
    base = tmp_path / 'inat2017'
    images, annotations = make_inat(base)
    split_dir = tmp_path / 'meta_split'
    split_dir.mkdir()
    for split, ids in META_SPLIT.items():
        (split_dir / f'{split}.txt').write_text(''.join(f'{c}\n' for c in ids))
    return base, inat_archive(base, tmp_path), split_dir, images, annotations


def official_sets(annotations):
    """The official script's category -> image-id sets, filled in the same order."""
    catdict = {}
    for d in annotations:
        if d['category_id'] in catdict:
            catdict[d['category_id']].add(d['image_id'])
        else:
            catdict[d['category_id']] = set([d['image_id']])
    return catdict


def test_meta_inat_keeps_categories_of_50_to_1000_boxed_images_in_the_official_splits(inat_src, tmp_path):
    base, archive, split_dir, images, annotations = inat_src
    summaries = inat.prepare_inat([archive, base / 'train_2017_bboxes.json'], tmp_path / 'out', split_dir=split_dir)
    meta, tiered = tmp_path / 'out' / 'meta_iNat', tmp_path / 'out' / 'tiered_meta_iNat'
    folders = lambda root: {s: sorted(os.listdir(root / s)) for s in inat.SPLITS}   # noqa: E731
    assert folders(meta) == {'train': ['101', '103'], 'test': ['102', '104'], 'refr': ['102', '104'],
                             'query': ['102', '104']}
    assert folders(tiered) == {'train': ['101', '103'], 'test': ['102', '104'], 'refr': ['102', '104'],
                               'query': ['102', '104']}   # Aves, Mammalia / Insecta, Arachnida; 105, 106, 107 out
    sets = official_sets(annotations)
    file_of = {i['id']: os.path.basename(i['file_name'])[:-4] + '.png' for i in images}
    for c in (102, 104):
        order = [file_of[i] for i in list(sets[c])]
        assert sorted(os.listdir(meta / 'refr' / str(c))) == sorted(order[:len(order) // 5])
        assert sorted(os.listdir(meta / 'query' / str(c))) == sorted(order[len(order) // 5:])
        assert len(os.listdir(meta / 'test' / str(c))) == COUNTS[c]
    assert [summaries[0]['splits'][s]['images'] for s in inat.SPLITS] == [105, 113, 10 + 12, 42 + 49]


def test_inat_images_are_squashed_to_84_bilinear_and_shared_by_both_datasets(inat_src, tmp_path):
    base, archive, split_dir, images, _ = inat_src
    inat.prepare_inat([base], tmp_path / 'out', split_dir=split_dir)   # the folder as the official README lays it
    image = next(i for i in images if '/Species 103/' in i['file_name'])
    with Image.open(base / image['file_name']) as img:
        expected = np.asarray(img.convert('RGB').resize((84, 84), Image.BILINEAR))
    name = os.path.basename(image['file_name'])[:-4] + '.png'
    written = tmp_path / 'out' / 'meta_iNat' / 'train' / '103' / name
    with Image.open(written) as out:
        assert out.format == 'PNG' and np.array_equal(np.asarray(out), expected)
    assert os.stat(written).st_ino == os.stat(tmp_path / 'out' / 'tiered_meta_iNat' / 'train' / '103' / name).st_ino
    coords = json.loads((tmp_path / 'out' / 'meta_iNat' / 'box_coords.json').read_text())
    w, h = image['width'], image['height']
    assert [10 / w, 20 / h, 11.5 * 10 / w, 10 * 10 / h] in coords[f'103/{name}']   # xmin ymin xmax ymax on 10x10


def test_the_boxes_zip_and_the_archive_give_the_same_files(inat_src, tmp_path, capsys):
    base, archive, split_dir, _, _ = inat_src
    inat.prepare_inat([base], tmp_path / 'a', split_dir=split_dir)
    with zipfile.ZipFile(tmp_path / 'train_2017_bboxes.zip', 'w') as z:
        z.write(base / 'train_2017_bboxes.json', 'train_2017_bboxes.json')
    inat.prepare_inat([archive, tmp_path / 'train_2017_bboxes.zip'], tmp_path / 'b', split_dir=split_dir)
    a, b = tree(tmp_path / 'a'), tree(tmp_path / 'b')
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a if not k.endswith('split.json'))


def test_the_shipped_meta_inat_category_lists_are_the_official_pickles():
    official = pathlib.Path(os.environ.get('FRN_OFFICIAL', REPO.parent / 'official')) / 'data' / 'meta_iNat_split'
    if not official.is_dir():
        pytest.skip(f'{official} not found: set FRN_OFFICIAL to a checkout of the official FRN code')

    class NoGlobals(pickle.Unpickler):   # a list of ints needs none: anything else is refused, never run
        def find_class(self, module, name):
            raise pickle.UnpicklingError(f'{module}.{name}')

    shipped = inat.official_split()
    for split in ('train', 'test'):
        stream = io.BytesIO((official / f'meta_iNat_{split}cats.pth').read_bytes())
        magic, protocol, _, ids = (NoGlobals(stream).load() for _ in range(4))   # legacy torch.save: 4 pickles
        assert protocol == 1001 and shipped[split] == ids
    assert (len(shipped['train']), len(shipped['test'])) == (908, 227)


INAT_BREAKS = {   # name: (break base/ before packing, sources, text of the error)
    'missing boxes file': (lambda base: None, ['archive'], 'give train_2017_bboxes.json'),
    'not the boxes file': (lambda base: (base / 'train_2017_bboxes.json').write_text('{"images": []}'), None,
                           'is not iNat2017\'s box annotations'),
    'bad box': (lambda base: make_inat(base.parent / 'other', with_box_of_3=True) and
                (base / 'train_2017_bboxes.json').write_bytes((base.parent / 'other' /
                                                              'train_2017_bboxes.json').read_bytes()),
                None, 'annotation (its bbox, image_id or category_id) 5'),
    'absent image': (lambda base: next((base / 'train_val_images' / 'Insecta').rglob('*.jpg')).unlink(), None,
                     'image(s) of the boxes file are not in the images'),
    'unreadable image': (lambda base: next((base / 'train_val_images' / 'Aves').rglob('*.jpg')).write_bytes(b'x'),
                         None, 'cannot read image'),
}


@pytest.mark.parametrize('case', list(INAT_BREAKS))
def test_broken_inat_inputs_fail_with_one_line_naming_the_file_and_write_nothing(case, tmp_path, capsys):
    base = tmp_path / 'inat2017'
    make_inat(base)
    breaks, given, expected = INAT_BREAKS[case]
    breaks(base)
    archive = inat_archive(base, tmp_path)
    sources = [archive, base / 'train_2017_bboxes.json'] if given is None else [archive]
    with pytest.raises(inat.FRNError, match=expected.replace('(', r'\(').replace(')', r'\)')) as err:
        inat.prepare_inat(sources, tmp_path / 'out', split_dir=write_meta_split(tmp_path))
    assert '\n' not in str(err.value)
    assert not (tmp_path / 'out').exists()


def write_meta_split(tmp_path):
    split_dir = tmp_path / 'meta_split'
    split_dir.mkdir(exist_ok=True)
    for split, ids in META_SPLIT.items():
        (split_dir / f'{split}.txt').write_text(''.join(f'{c}\n' for c in ids))
    return split_dir


def test_an_official_category_outside_50_to_1000_images_means_another_json(inat_src, tmp_path, capsys):
    base, archive, _, _, _ = inat_src
    code, err = run_failing('prepare_inat', capsys, str(archive), str(base / 'train_2017_bboxes.json'), '--dst',
                            str(tmp_path / 'out'))   # the shipped official lists name categories this JSON lacks
    assert code == 2 and 'of the official meta-iNat train list does not have 50 to 1000 boxed images' in err
    assert not (tmp_path / 'out').exists()


def test_the_new_datasets_are_flags_with_the_official_transforms():
    import cli
    from data.transforms import official_transforms
    assert {'meta_inat', 'tiered_meta_inat', 'dogs'} <= set(cli.DATASETS)
    assert official_transforms('meta_inat', '/d/meta_iNat') == (1, 'none')   # experiments/meta-iNat: types 1 and 2
    assert official_transforms('tiered_meta_inat', '/d/tiered_meta_iNat') == (1, 'none')
    assert official_transforms('dogs', '/d/Dogs_fewshot') == (0, 'shorter')   # Bi-FRN experiments/dogs: 0 and 0
