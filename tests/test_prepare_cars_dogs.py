"""Stanford Cars and Stanford Dogs preparation: both Cars packagings, the box conventions, splits, and clean failures.

The inputs are small fakes in the real formats: gzip tars of JPEGs, MATLAB files written with
scipy.io.savemat in the devkit's layout (struct arrays, cell arrays of names), plain tars and
PASCAL VOC XML files as Stanford Dogs ships them.
"""
import json
import os
import tarfile

import numpy as np
import pytest
from PIL import Image

from data import prepare_cars_dogs as cd
from data.filelist import read_split
from test_prepare_datasets import SPLITS, noise_jpeg, run_failing, run_tool, tree

scipy_io = pytest.importorskip('scipy.io', reason='scipy writes the MATLAB test files (pip install scipy)')

CAR_NAMES = ['AM General Hummer SUV 2000', 'Ram C/V Cargo Van Minivan 2012', 'Acura TL Sedan 2012',
             'Mercedes-Benz SL-Class Coupe 2009', 'Bentley Continental Supersports Conv. Convertible 2012',
             'Bugatti Veyron 16.4 Coupe 2009']
CAR_FOLDERS = ['001.AM_General_Hummer_SUV_2000', '002.Ram_C_V_Cargo_Van_Minivan_2012', '003.Acura_TL_Sedan_2012',
               '004.Mercedes_Benz_SL_Class_Coupe_2009', '005.Bentley_Continental_Supersports_Conv_Convertible_2012',
               '006.Bugatti_Veyron_16_4_Coupe_2009']   # as in the shared cars_fewshot.tar


def struct_array(records):
    """A 1 x N MATLAB struct array: ints as 1x1 uint16 matrices, strings as char arrays (as in the devkit)."""
    fields = list(records[0])
    array = np.empty((1, len(records)), dtype=[(f, object) for f in fields])
    for i, record in enumerate(records):
        for f in fields:
            value = record[f]
            array[0, i][f] = value if isinstance(value, str) else np.array([[value]], dtype=np.uint16)
    return array


def cell_row(strings):
    cells = np.empty((1, len(strings)), dtype=object)
    cells[0, :] = strings
    return cells


def tgz(folder, archive, arcname, mode='w:gz'):
    with tarfile.open(archive, mode) as tar:
        tar.add(folder, arcname=arcname)
    return archive


def car_images(base):
    """Two images per class in each half: {(half, number): (class, size, box x1 y1 x2 y2, 1-based)}."""
    images = {}
    for half in ('train', 'test'):
        for k in range(2 * len(CAR_NAMES)):
            cid = k % len(CAR_NAMES) + 1
            size = (50 + 2 * k, 40 + k)
            box = (3 + k % 3, 2, size[0] - 4, size[1] - 3)
            images[(half, k + 1)] = (cid, size, box)
    images[('train', 2)] = (2, (52, 41), (1, 1, 52, 41))   # the whole image, 1-based inclusive
    images[('test', 3)] = (3, (54, 42), (10, 5, 60, 42))  # x2 past the right edge: cut to 54
    return images


def make_cars_single(base, images):
    """base/car_ims/000001.jpg ... and base/cars_annos.mat, as the all-in-one packaging."""
    (base / 'car_ims').mkdir(parents=True)
    records = []
    for n, ((half, _), (cid, size, box)) in enumerate(sorted(images.items()), 1):
        noise_jpeg(base / 'car_ims' / f'{n:06d}.jpg', size, n)
        records.append({'relative_im_path': f'car_ims/{n:06d}.jpg', 'bbox_x1': box[0], 'bbox_y1': box[1],
                        'bbox_x2': box[2], 'bbox_y2': box[3], 'class': cid, 'test': int(half == 'test')})
    scipy_io.savemat(base / 'cars_annos.mat', {'annotations': struct_array(records),
                                               'class_names': cell_row(CAR_NAMES)})
    return {f'{n:06d}': key for n, key in enumerate(sorted(images), 1)}


def make_cars_split(base, images):
    """base/cars_train/, base/cars_test/, base/devkit/*.mat and base/cars_test_annos_withlabels.mat."""
    records = {'train': [], 'test': []}
    for half in ('train', 'test'):
        (base / f'cars_{half}').mkdir(parents=True)
    for (half, n), (cid, size, box) in sorted(images.items()):
        noise_jpeg(base / f'cars_{half}' / f'{n:05d}.jpg', size, 1000 * (half == 'test') + n)
        records[half].append({'bbox_x1': box[0], 'bbox_y1': box[1], 'bbox_x2': box[2], 'bbox_y2': box[3],
                              'class': cid, 'fname': f'{n:05d}.jpg'})
    (base / 'devkit').mkdir()
    scipy_io.savemat(base / 'devkit' / 'cars_meta.mat', {'class_names': cell_row(CAR_NAMES)})
    scipy_io.savemat(base / 'devkit' / 'cars_train_annos.mat', {'annotations': struct_array(records['train'])})
    unlabelled = [{k: v for k, v in r.items() if k != 'class'} for r in records['test']]
    scipy_io.savemat(base / 'devkit' / 'cars_test_annos.mat', {'annotations': struct_array(unlabelled)})
    scipy_io.savemat(base / 'cars_test_annos_withlabels.mat', {'annotations': struct_array(records['test'])})


@pytest.fixture
def cars_single(tmp_path):
    images = car_images(tmp_path)
    names = make_cars_single(tmp_path / 'src', images)
    tgz(tmp_path / 'src' / 'car_ims', tmp_path / 'car_ims.tgz', 'car_ims')
    return tmp_path / 'car_ims.tgz', tmp_path / 'src' / 'cars_annos.mat', names, images


@pytest.fixture
def cars_split(tmp_path):
    images = car_images(tmp_path)
    src = tmp_path / 'src'
    make_cars_split(src, images)
    archives = [tgz(src / folder, tmp_path / f'{name}.tgz', folder)
                for folder, name in (('cars_train', 'cars_train'), ('cars_test', 'cars_test'), ('devkit', 'car_devkit'))]
    return archives + [src / 'cars_test_annos_withlabels.mat'], src, images


def crop_of(path, box):
    """The original pixels of a 1-based inclusive box, cut to the image."""
    with Image.open(path) as img:
        pixels = np.asarray(img.convert('RGB'))
    x1, y1, x2, y2 = box
    return pixels[y1 - 1:y2, x1 - 1:x2]


# --- Stanford Cars ------------------------------------------------------------------------------------

def test_car_folders_are_the_id_and_the_name_with_each_run_of_other_characters_as_one_underscore():
    assert [cd.folder_name(i, n) for i, n in enumerate(CAR_NAMES, 1)] == CAR_FOLDERS


def test_cars_from_the_single_archive_are_split_by_frn_rule_and_cropped_to_the_inclusive_box(cars_single, tmp_path):
    archive, annos, names, images = cars_single
    summary = cd.prepare_cars([archive, annos], tmp_path / 'out')
    root = tmp_path / 'out' / 'Cars_fewshot'
    assert {s: sorted(os.listdir(root / s)) for s in SPLITS} == {
        'train': [CAR_FOLDERS[1], CAR_FOLDERS[3], CAR_FOLDERS[5]], 'val': [CAR_FOLDERS[0], CAR_FOLDERS[4]],
        'test': [CAR_FOLDERS[2]]}
    assert [summary['splits'][s]['images'] for s in SPLITS] == [12, 8, 4]   # both halves, 4 images per class
    for stem, key in names.items():
        cid, _, box = images[key]
        out = root / cd.fewshot_split(cid) / CAR_FOLDERS[cid - 1] / f'{stem}.png'
        with Image.open(out) as crop:
            assert np.array_equal(np.asarray(crop), crop_of(tmp_path / 'src' / 'car_ims' / f'{stem}.jpg', box))
    whole = names_of(names, ('train', 2))
    assert Image.open(root / 'train' / CAR_FOLDERS[1] / f'{whole}.png').size == (52, 41)
    cut = names_of(names, ('test', 3))
    assert summary['clipped_boxes'] == [f'{archive}:car_ims/{cut}.jpg']
    assert Image.open(root / 'test' / CAR_FOLDERS[2] / f'{cut}.png').size == (54 - 9, 42 - 4)


def names_of(names, key):
    return next(stem for stem, k in names.items() if k == key)


def test_cars_from_the_train_test_devkit_packaging_name_crops_by_half(cars_split, tmp_path, capsys):
    sources, src, images = cars_split
    run_tool('prepare_cars', *map(str, sources), '--dst', str(tmp_path / 'out'))
    root = tmp_path / 'out' / 'Cars_fewshot'
    assert sorted(os.listdir(root / 'test' / CAR_FOLDERS[2])) == [
        'cars_test_00003.png', 'cars_test_00009.png', 'cars_train_00003.png', 'cars_train_00009.png']
    for (half, n), (cid, _, box) in images.items():
        out = root / cd.fewshot_split(cid) / CAR_FOLDERS[cid - 1] / f'cars_{half}_{n:05d}.png'
        with Image.open(out) as crop:
            assert np.array_equal(np.asarray(crop), crop_of(src / f'cars_{half}' / f'{n:05d}.jpg', box))
    out = capsys.readouterr().out.splitlines()
    assert out[1:4] == ['  train    3 classes      12 images', '  val      2 classes       8 images',
                        '  test     1 classes       4 images']
    assert out[4].startswith('note: 1 box(es) reached past the edge of their image')
    assert out[-1] == f'next: --dataset cars --data_path {root}'
    assert [(read_split(str(root), s).n_classes, len(read_split(str(root), s))) for s in SPLITS] == \
        [(3, 12), (2, 8), (1, 4)]


def test_cars_packaging_given_as_extracted_folders_gives_the_same_files(cars_split, tmp_path):
    sources, src, _ = cars_split
    cd.prepare_cars(sources, tmp_path / 'a')
    cd.prepare_cars([src], tmp_path / 'b')   # one folder holding cars_train/, cars_test/, devkit/ and the .mat
    a, b = tree(tmp_path / 'a'), tree(tmp_path / 'b')
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a if not k.endswith('split.json'))


def test_a_split_file_names_classes_by_id_folder_or_name(cars_single, tmp_path):
    archive, annos, _, _ = cars_single
    split_file = tmp_path / 'split.txt'
    split_file.write_text('# a published split\ntrain 1\ntrain 002.Ram_C_V_Cargo_Van_Minivan_2012\n'
                          'train Acura TL Sedan 2012\nval 4\n\ntest 005\ntest 6\n')
    summary = cd.prepare_cars([archive, annos], tmp_path / 'out', split_file=split_file)
    assert {s: list(summary['splits'][s]['classes']) for s in SPLITS} == {
        'train': CAR_FOLDERS[:3], 'val': [CAR_FOLDERS[3]], 'test': CAR_FOLDERS[4:]}
    split = json.loads((tmp_path / 'out' / 'Cars_fewshot' / 'split.json').read_text())
    assert split['split_rule'] == f'from {split_file}'
    split_file.write_text('train 1\ntrain 2\ntrain 3\nval 4\ntest 5\n')
    with pytest.raises(cd.FRNError, match=r'does not name 1 class\(es\), e.g. 6'):
        cd.prepare_cars([archive, annos], tmp_path / 'out2', split_file=split_file)


def rewrite_annos(path, change):
    mat = scipy_io.loadmat(path)
    change(mat['annotations'])
    scipy_io.savemat(path, {k: v for k, v in mat.items() if not k.startswith('__')})


def set_field(field, value, entry=0):
    def change(annotations):
        annotations[0, entry][field] = np.array([[value]], dtype=np.uint16)
    return change


CARS_BREAKS = {   # name: (break the src folder of the single packaging, sources to give, text of the error)
    'missing metadata': (lambda src: None, ['car_ims.tgz'], 'also needs cars_annos.mat'),
    'absent image': (lambda src: (src / 'car_ims' / '000005.jpg').unlink(), None, 'car_ims/000005.jpg'),
    'unreadable image': (lambda src: (src / 'car_ims' / '000004.jpg').write_bytes(b'GIF89a broken'), None,
                         'cannot read image'),
    'inverted box': (lambda src: rewrite_annos(src / 'cars_annos.mat', set_field('bbox_x2', 1, entry=2)), None,
                     'cars_annos.mat entry 3: the box'),
    'box outside the image': (lambda src: [rewrite_annos(src / 'cars_annos.mat', set_field(f, v))
                                           for f, v in (('bbox_x1', 200), ('bbox_x2', 210))], None, 'not inside the'),
    'unknown class': (lambda src: rewrite_annos(src / 'cars_annos.mat', set_field('class', 9)), None,
                      'gives class 9, but there are 6 class names'),
    'not a MATLAB file': (lambda src: (src / 'cars_annos.mat').write_text('class,name\n'), None,
                          'cars_annos.mat is not a readable MATLAB file'),
    'archive of the wrong kind': (lambda src: None, ['notes.zip', 'cars_annos.mat'], 'is none of the Stanford Cars'),
}


@pytest.mark.parametrize('case', list(CARS_BREAKS))
def test_broken_cars_inputs_fail_with_one_line_naming_the_file_and_write_nothing(case, tmp_path, capsys):
    images = car_images(tmp_path)
    src = tmp_path / 'src'
    make_cars_single(src, images)
    breaks, given, expected = CARS_BREAKS[case]
    breaks(src)
    tgz(src / 'car_ims', tmp_path / 'car_ims.tgz', 'car_ims')
    (tmp_path / 'notes.zip').write_bytes(b'PK\x03\x04 not a tar')
    sources = [str(tmp_path / 'car_ims.tgz'), str(src / 'cars_annos.mat')] if given is None else \
        [str(tmp_path / g) if (tmp_path / g).exists() else str(src / g) for g in given]
    code, err = run_failing('prepare_cars', capsys, *sources, '--dst', str(tmp_path / 'out'))
    assert code == 2 and err.startswith('error: ') and len(err.strip().splitlines()) == 1, err
    assert expected in err and 'Traceback' not in err
    assert not (tmp_path / 'out').exists()


def test_a_missing_matlab_reader_is_a_one_line_error_saying_how_to_install_it(cars_single, tmp_path, monkeypatch):
    archive, annos, _, _ = cars_single
    monkeypatch.setitem(__import__('sys').modules, 'scipy.io', None)   # `from scipy.io import ...` then fails
    with pytest.raises(cd.FRNError, match=r'needs scipy \(MATLAB files\): install it with `pip install scipy`'):
        cd.prepare_cars([archive, annos], tmp_path / 'out')


# --- Stanford Dogs -------------------------------------------------------------------------------------

BREEDS = ['n02085620-Chihuahua', 'n02085782-Japanese_spaniel', 'n02085936-Maltese_dog', 'n02086079-Pekinese',
          'n02086240-Shih-Tzu']


def voc(size, boxes):
    objects = ''.join(f'<object><name>dog</name><pose>Unspecified</pose><truncated>0</truncated>'
                      f'<difficult>0</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>'
                      f'<ymax>{b[3]}</ymax></bndbox></object>' for b in boxes)
    return (f'<annotation><folder>02085620</folder><filename>%s</filename><source><database>ImageNet database'
            f'</database></source><size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>'
            f'<segment>0</segment>{objects}</annotation>')


def make_dogs(base):
    """base/Images, base/Annotation and base/file_list.mat; returns {file: (label, boxes)}."""
    listed = {}
    for label, breed in enumerate(BREEDS, 1):
        (base / 'Images' / breed).mkdir(parents=True)
        (base / 'Annotation' / breed).mkdir(parents=True)
        for k in range(3):
            stem = f'{breed[:9]}_{100 * label + k}'
            size = (48 + k, 40)
            boxes = [(2, 3, 30 + k, 35)]
            if k == 1:
                boxes = [(1, 1, 10, 10), (5, 4, 44, 38), (20, 20, 40, 30)]   # the second is the largest
            noise_jpeg(base / 'Images' / breed / f'{stem}.jpg', size, 10 * label + k)
            (base / 'Annotation' / breed / stem).write_text(voc(size, boxes) % stem)
            listed[f'{breed}/{stem}.jpg'] = (label, boxes)
    files = sorted(listed)
    column = lambda strings: np.array(strings, dtype=object).reshape(-1, 1)   # noqa: E731
    scipy_io.savemat(base / 'file_list.mat', {'file_list': column(files),
                                              'annotation_list': column([f[:-4] for f in files]),
                                              'labels': np.array([[listed[f][0]] for f in files], dtype=float)})
    return listed


def pack_dogs(src, tmp_path):
    """The three plain tars as Stanford Dogs ships them."""
    tgz(src / 'Images', tmp_path / 'images.tar', 'Images', mode='w')
    tgz(src / 'Annotation', tmp_path / 'annotation.tar', 'Annotation', mode='w')
    with tarfile.open(tmp_path / 'lists.tar', 'w') as tar:
        tar.add(src / 'file_list.mat', arcname='file_list.mat')
    return [tmp_path / 'images.tar', tmp_path / 'annotation.tar', tmp_path / 'lists.tar']


def test_dogs_are_split_by_frn_rule_in_their_own_folders_and_cropped_to_the_largest_box(tmp_path, capsys):
    src = tmp_path / 'src'
    listed = make_dogs(src)
    archives = pack_dogs(src, tmp_path)
    run_tool('prepare_dogs', *map(str, archives), '--dst', str(tmp_path / 'out'))
    root = tmp_path / 'out' / 'Dogs_fewshot'
    assert {s: sorted(os.listdir(root / s)) for s in SPLITS} == {
        'train': [BREEDS[1], BREEDS[3]], 'val': [BREEDS[0], BREEDS[4]], 'test': [BREEDS[2]]}
    for file, (label, boxes) in listed.items():
        largest = max(boxes, key=lambda b: (b[2] - b[0] + 1) * (b[3] - b[1] + 1))
        out = root / cd.fewshot_split(label) / file.replace('.jpg', '.png')
        with Image.open(out) as crop:
            assert np.array_equal(np.asarray(crop), crop_of(src / 'Images' / file, largest))
    split = json.loads((root / 'split.json').read_text())
    assert split['splits']['val']['classes'] == {BREEDS[0]: 'Chihuahua', BREEDS[4]: 'Shih-Tzu'}
    assert capsys.readouterr().out.splitlines()[-1] == f'next: --dataset dogs --data_path {root}'
    cd.prepare_dogs([src], tmp_path / 'folder')   # the extracted Images/, Annotation/ and file_list.mat
    a, b = tree(tmp_path / 'out'), tree(tmp_path / 'folder')
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a if not k.endswith('split.json'))


DOGS_BREAKS = {
    'missing lists': (lambda src: None, ['images.tar', 'annotation.tar'], 'also needs lists.tar'),
    'missing annotation file': (lambda src: (src / 'Annotation' / BREEDS[2] / 'n02085936_301').unlink(), None,
                                'Annotation/n02085936-Maltese_dog/n02085936_301 is missing'),
    'malformed XML': (lambda src: (src / 'Annotation' / BREEDS[0] / 'n02085620_100').write_text('<annotation>'),
                      None, 'n02085620_100 is not a VOC annotation'),
    'no box': (lambda src: (src / 'Annotation' / BREEDS[0] / 'n02085620_100').write_text(voc((48, 40), []) % 'x'),
               None, 'n02085620_100 has no <object> box'),
    'inverted box': (lambda src: (src / 'Annotation' / BREEDS[0] / 'n02085620_100').write_text(
        voc((48, 40), [(30, 3, 2, 35)]) % 'x'), None, 'the box 30 3 2 35 (x1 y1 x2 y2) is inverted'),
    'absent image': (lambda src: (src / 'Images' / BREEDS[1] / 'n02085782_201.jpg').unlink(), None,
                     'Images/n02085782-Japanese_spaniel/n02085782_201.jpg'),
}


@pytest.mark.parametrize('case', list(DOGS_BREAKS))
def test_broken_dogs_inputs_fail_with_one_line_naming_the_file_and_write_nothing(case, tmp_path, capsys):
    src = tmp_path / 'src'
    make_dogs(src)
    breaks, given, expected = DOGS_BREAKS[case]
    breaks(src)
    archives = pack_dogs(src, tmp_path)
    sources = archives if given is None else [tmp_path / g for g in given]
    code, err = run_failing('prepare_dogs', capsys, *map(str, sources), '--dst', str(tmp_path / 'out'))
    assert code == 2 and err.startswith('error: ') and len(err.strip().splitlines()) == 1, err
    assert expected in err and 'Traceback' not in err
    assert not (tmp_path / 'out').exists()
