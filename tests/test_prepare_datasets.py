"""CUB-200-2011 and FGVC-Aircraft preparation: FRN's class split, exact box crops, and clean failures.

The archives here are small fakes in the official layouts (a few classes, the real metadata
file names and formats, generated JPEGs), read both as .tgz and as extracted folders.
"""
import io
import json
import os
import tarfile

import numpy as np
import pytest
from PIL import Image

from conftest import load_tool
from data import prepare_fewshot
from data.filelist import read_split

SPLITS = ('train', 'val', 'test')
CUB_CLASSES = 8       # ids 1..8: train 2 4 6 8, val 1 5, test 3 7
AIRCRAFT_VARIANTS = ['707-320', 'A300B4', 'Cessna 172', 'DHC-8-100', 'F/A-18', 'Tu-154', 'Yak-42', 'MD-87']


def noise_jpeg(path, size, seed, mode='RGB'):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    img = Image.fromarray(pixels)
    (img.convert(mode) if mode != 'RGB' else img).save(path, 'JPEG', quality=90)


def write_lines(path, lines):
    path.write_text(''.join(f'{line}\n' for line in lines))


def make_cub(base):
    """base/CUB_200_2011/ with two images per class; returns {image id: (class id, rel path, box, size)}."""
    root = base / 'CUB_200_2011'
    classes = {cid: f'{cid:03d}.Bird_{cid}' for cid in range(1, CUB_CLASSES + 1)}
    images = {}
    for cid, name in classes.items():
        (root / 'images' / name).mkdir(parents=True)
        for k in range(2):
            iid = len(images) + 1
            size = (40 + 3 * iid, 30 + 2 * iid)
            rel = f'{name}/Bird_{cid}_{k:04d}_{100 + iid}.jpg'
            noise_jpeg(root / 'images' / rel, size, iid, mode='CMYK' if iid == 3 else 'RGB')
            images[iid] = (cid, rel, (5.0, 4.0, 20.0, 15.0), size)
    images[1] = images[1][:2] + ((3.4, 2.5, 10.4, 8.0), images[1][3])   # fractional: edges 3, 2, 14, 10
    write_lines(root / 'classes.txt', [f'{cid} {name}' for cid, name in classes.items()])
    write_lines(root / 'images.txt', [f'{iid} {rel}' for iid, (_, rel, _, _) in images.items()])
    write_lines(root / 'image_class_labels.txt', [f'{iid} {cid}' for iid, (cid, _, _, _) in images.items()])
    write_lines(root / 'bounding_boxes.txt', [f'{iid} ' + ' '.join(f'{v:.1f}' for v in box)
                                              for iid, (_, _, box, _) in images.items()])
    (base / 'attributes.txt').write_text('1 has_bill_shape::curved\n')   # beside CUB_200_2011/, as in the real .tgz
    return images


def make_aircraft(base):
    """base/fgvc-aircraft-2013b/data/, one trainval and one test image per variant; returns {image: (variant, box)}."""
    data = base / 'fgvc-aircraft-2013b' / 'data'
    (data / 'images').mkdir(parents=True)
    images, trainval, test = {}, [], []
    for number, variant in enumerate(AIRCRAFT_VARIANTS):
        for k, listing in enumerate((trainval, test)):
            image = f'{1000000 + 10 * number + k:07d}'
            size = (60 + number, 50 + k)
            noise_jpeg(data / 'images' / f'{image}.jpg', size, 10 * number + k)
            box = (1 + k, 2, size[0] - 3, size[1] - 20)   # xmin ymin xmax ymax, clear of the 20-px banner
            images[image] = (number, box)
            listing.append(f'{image} {variant}')
    write_lines(data / 'variants.txt', AIRCRAFT_VARIANTS)
    write_lines(data / 'images_variant_trainval.txt', trainval)
    write_lines(data / 'images_variant_test.txt', test)
    write_lines(data / 'images_box.txt', [f'{image} ' + ' '.join(map(str, box)) for image, (_, box) in images.items()])
    write_lines(data / 'images_variant_train.txt', trainval[::2])   # present in the real archive, not used
    return images


def pack(folder, archive):
    """A .tgz of everything in `folder`, images first and metadata last, so one pass cannot find both."""
    files = sorted(p for p in folder.rglob('*') if p.is_file())
    files.sort(key=lambda p: p.suffix == '.txt')
    with tarfile.open(archive, 'w:gz') as tar:
        for path in files:
            tar.add(path, arcname=str(path.relative_to(folder)))
    return archive


def run_tool(name, *argv):
    """Run the tool in-process; its output goes to capsys."""
    return load_tool(name).main(list(argv))


def run_failing(name, capsys, *argv):
    """(exit code, stderr) of a tool run that must stop with SystemExit."""
    with pytest.raises(SystemExit) as exit_:
        load_tool(name).main(list(argv))
    return exit_.value.code, capsys.readouterr().err


def tree(root):
    """{relative path: bytes} of every file under root."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


@pytest.fixture
def cub(tmp_path):
    src = tmp_path / 'src'
    images = make_cub(src)
    return src, pack(src, tmp_path / 'CUB_200_2011.tgz'), images


@pytest.fixture
def aircraft(tmp_path):
    src = tmp_path / 'src'
    images = make_aircraft(src)
    return src, pack(src, tmp_path / 'fgvc-aircraft-2013b.tar.gz'), images


# --- the split ---------------------------------------------------------------------------------------

def test_split_rule_is_even_to_train_then_alternating_val_and_test():
    assert [prepare_fewshot.fewshot_split(i) for i in range(1, 9)] == \
        ['val', 'train', 'test', 'train', 'val', 'train', 'test', 'train']
    for n_classes, first, expected in ((200, 1, (100, 50, 50)), (100, 0, (50, 25, 25))):
        splits = [prepare_fewshot.fewshot_split(i) for i in range(first, first + n_classes)]
        assert tuple(splits.count(s) for s in SPLITS) == expected


def test_cub_classes_go_to_the_split_of_their_id(cub, tmp_path):
    _, archive, _ = cub
    prepare_fewshot.prepare_cub(archive, tmp_path / 'out')
    for folder in ('CUB_fewshot_cropped', 'CUB_fewshot_raw'):
        found = {s: sorted(os.listdir(tmp_path / 'out' / folder / s)) for s in SPLITS}
        assert found == {'train': ['002.Bird_2', '004.Bird_4', '006.Bird_6', '008.Bird_8'],
                         'val': ['001.Bird_1', '005.Bird_5'], 'test': ['003.Bird_3', '007.Bird_7']}


def test_aircraft_variants_go_to_the_split_of_their_line_number_and_folders_are_numbers(aircraft, tmp_path):
    _, archive, _ = aircraft
    prepare_fewshot.prepare_aircraft(archive, tmp_path / 'out')
    root = tmp_path / 'out' / 'Aircraft_fewshot'
    assert {s: sorted(os.listdir(root / s), key=int) for s in SPLITS} == \
        {'train': ['0', '2', '4', '6'], 'val': ['1', '5'], 'test': ['3', '7']}
    split = json.loads((root / 'split.json').read_text())
    assert split['splits']['train']['classes'] == {'0': '707-320', '2': 'Cessna 172', '4': 'F/A-18', '6': 'Yak-42'}
    assert [split['splits'][s]['images'] for s in SPLITS] == [8, 4, 4]   # trainval and test images both used


# --- the pixels --------------------------------------------------------------------------------------

def test_cub_crops_are_the_box_with_each_edge_rounded_half_to_even(cub, tmp_path):
    src, archive, images = cub
    prepare_fewshot.prepare_cub(archive, tmp_path / 'out')
    root = tmp_path / 'out' / 'CUB_fewshot_cropped'
    for iid, (cid, rel, (x, y, w, h), _) in images.items():
        name = rel.split('/')[0]
        out = root / prepare_fewshot.fewshot_split(cid) / name / (os.path.basename(rel)[:-4] + '.png')
        with Image.open(src / 'CUB_200_2011' / 'images' / rel) as img:
            original = np.asarray(img.convert('RGB'))
        edges = (3, 2, 14, 10) if iid == 1 else (5, 4, 25, 19)   # by hand: round(3.4), round(2.5), round(13.8), ...
        left, top, right, bottom = edges
        with Image.open(out) as crop:
            assert crop.format == 'PNG' and crop.size == (right - left, bottom - top)
            assert np.array_equal(np.asarray(crop.convert('RGB')), original[top:bottom, left:right])


def test_cub_raw_images_are_the_original_files(cub, tmp_path):
    src, archive, images = cub
    prepare_fewshot.prepare_cub(archive, tmp_path / 'out')
    for cid, rel, _, _ in images.values():
        copied = tmp_path / 'out' / 'CUB_fewshot_raw' / prepare_fewshot.fewshot_split(cid) / rel
        assert copied.read_bytes() == (src / 'CUB_200_2011' / 'images' / rel).read_bytes()


def test_aircraft_crops_are_the_box_numbers_used_as_pil_edges(aircraft, tmp_path):
    src, archive, images = aircraft
    prepare_fewshot.prepare_aircraft(archive, tmp_path / 'out')
    for image, (number, (xmin, ymin, xmax, ymax)) in images.items():
        out = tmp_path / 'out' / 'Aircraft_fewshot' / prepare_fewshot.fewshot_split(number) / str(number)
        with Image.open(src / 'fgvc-aircraft-2013b' / 'data' / 'images' / f'{image}.jpg') as img:
            original = np.asarray(img)
        with Image.open(out / f'{image}.png') as crop:
            assert crop.size == (xmax - xmin, ymax - ymin)
            assert np.array_equal(np.asarray(crop), original[ymin:ymax, xmin:xmax])


def test_jpeg_format_writes_quality_95_jpegs(aircraft, tmp_path):
    src, archive, images = aircraft
    prepare_fewshot.prepare_aircraft(archive, tmp_path / 'out', image_format='jpeg')
    image, (number, box) = next(iter(images.items()))
    out = tmp_path / 'out' / 'Aircraft_fewshot' / prepare_fewshot.fewshot_split(number) / str(number) / f'{image}.jpg'
    with Image.open(src / 'fgvc-aircraft-2013b' / 'data' / 'images' / f'{image}.jpg') as img:
        expected = io.BytesIO()
        img.crop(box).save(expected, 'JPEG', quality=95)
    assert out.read_bytes() == expected.getvalue()


# --- archive or folder, what is written, and the reader ----------------------------------------------

@pytest.mark.parametrize('dataset', ['cub', 'aircraft'])
def test_archive_and_extracted_folder_give_the_same_files(dataset, request, tmp_path):
    src, archive, _ = request.getfixturevalue(dataset)
    prepare = {'cub': prepare_fewshot.prepare_cub, 'aircraft': prepare_fewshot.prepare_aircraft}[dataset]
    prepare(archive, tmp_path / 'from_archive')
    inner = src / ('CUB_200_2011' if dataset == 'cub' else 'fgvc-aircraft-2013b')
    prepare(inner, tmp_path / 'from_folder')
    a, b = tree(tmp_path / 'from_archive'), tree(tmp_path / 'from_folder')
    assert a.keys() == b.keys() and len(a) > 10
    assert all(a[k] == b[k] for k in a if not k.endswith('split.json'))   # split.json names its source


def test_cub_tool_prints_a_summary_per_split_and_the_next_step(cub, tmp_path, capsys):
    _, archive, _ = cub
    run_tool('prepare_cub', str(archive), '--dst', str(tmp_path / 'out'))
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f'CUB-200-2011 from {archive}:'
    assert out[1:4] == ['  train    4 classes       8 images', '  val      2 classes       4 images',
                        '  test     2 classes       4 images']
    assert out[-1] == f'next: --dataset cub --data_path {tmp_path / "out" / "CUB_fewshot_cropped"}'
    split = json.loads((tmp_path / 'out' / 'CUB_fewshot_raw' / 'split.json').read_text())
    assert split['splits']['val'] == {'classes': {'001.Bird_1': 1, '005.Bird_5': 5}, 'images': 4}


@pytest.mark.parametrize('dataset', ['cub', 'aircraft'])
def test_outputs_are_class_per_folder_datasets_the_loaders_read(dataset, request, tmp_path):
    _, archive, _ = request.getfixturevalue(dataset)
    if dataset == 'cub':
        prepare_fewshot.prepare_cub(archive, tmp_path)
        roots = [tmp_path / 'CUB_fewshot_cropped', tmp_path / 'CUB_fewshot_raw']
    else:
        prepare_fewshot.prepare_aircraft(archive, tmp_path)
        roots = [tmp_path / 'Aircraft_fewshot']
    for root in roots:
        lists = {s: read_split(str(root), s) for s in SPLITS}
        assert [(lists[s].n_classes, len(lists[s])) for s in SPLITS] == [(4, 8), (2, 4), (2, 4)]
        assert lists['train'].load_image(0).mode == 'RGB'
    inputs = ['src', 'CUB_200_2011.tgz' if dataset == 'cub' else 'fgvc-aircraft-2013b.tar.gz']
    assert sorted(os.listdir(tmp_path)) == sorted(inputs + [r.name for r in roots])   # no temp folder left


def test_an_existing_output_is_kept_unless_overwrite_is_given(cub, tmp_path, capsys):
    _, archive, _ = cub
    out = tmp_path / 'out'
    run_tool('prepare_cub', str(archive), '--dst', str(out))
    (out / 'CUB_fewshot_raw' / 'marker').write_text('old')
    code, err = run_failing('prepare_cub', capsys, str(archive), '--dst', str(out))
    assert code == 2 and 'CUB_fewshot_cropped already exists' in err and '--overwrite' in err
    assert (out / 'CUB_fewshot_raw' / 'marker').exists()
    run_tool('prepare_cub', str(archive), '--dst', str(out), '--overwrite')
    assert not (out / 'CUB_fewshot_raw' / 'marker').exists()
    assert sorted(os.listdir(out)) == ['CUB_fewshot_cropped', 'CUB_fewshot_raw']   # no temp folder left


# --- failures ----------------------------------------------------------------------------------------

def edit_line(path, index, new):
    lines = path.read_text().splitlines()
    lines[index] = new
    write_lines(path, lines)


CUB = 'CUB_200_2011'
CUB_BREAKS = {   # name: (how to break base/, text the message must hold)
    'missing metadata': (lambda b, im: (b / CUB / 'bounding_boxes.txt').unlink(), 'bounding_boxes.txt is missing'),
    'missing image': (lambda b, im: (b / CUB / 'images' / im[6][1]).unlink(), 'Bird_3_0001_106.jpg'),
    'box outside the image': (lambda b, im: edit_line(b / CUB / 'bounding_boxes.txt', 1, '2 30.0 4.0 30.0 15.0'),
                              'not inside the 46x34 image'),
    'zero-width box': (lambda b, im: edit_line(b / CUB / 'bounding_boxes.txt', 1, '2 5.0 4.0 0.0 15.0'),
                       'bounding_boxes.txt line 2'),
    'unreadable image': (lambda b, im: (b / CUB / 'images' / im[5][1]).write_bytes(b'not a jpeg'),
                         'cannot read image'),
    'label of an unknown class': (lambda b, im: edit_line(b / CUB / 'image_class_labels.txt', 0, '1 99'),
                                  'gives class 99'),
}


@pytest.mark.parametrize('as_archive', [True, False], ids=['tgz', 'folder'])
@pytest.mark.parametrize('case', list(CUB_BREAKS))
def test_a_broken_cub_fails_with_a_clear_error_and_writes_nothing(case, as_archive, tmp_path, capsys):
    base = tmp_path / 'src'
    images = make_cub(base)
    breaks, expected = CUB_BREAKS[case]
    breaks(base, images)
    source = pack(base, tmp_path / 'CUB_200_2011.tgz') if as_archive else base
    code, err = run_failing('prepare_cub', capsys, str(source), '--dst', str(tmp_path / 'out'))
    assert code == 2 and err.startswith('error: ') and len(err.strip().splitlines()) == 1
    assert expected in err and 'Traceback' not in err
    assert not (tmp_path / 'out').exists()


AIRCRAFT = 'fgvc-aircraft-2013b/data'
AIRCRAFT_BREAKS = {
    'missing metadata': (lambda b: (b / AIRCRAFT / 'images_box.txt').unlink(), 'images_box.txt is missing'),
    'missing image': (lambda b: (b / AIRCRAFT / 'images' / '1000031.jpg').unlink(), 'images/1000031.jpg'),
    'box outside the image': (lambda b: edit_line(b / AIRCRAFT / 'images_box.txt', 0, '1000000 1 2 61 30'),
                              'not inside the 60x50 image'),
    'box without area': (lambda b: edit_line(b / AIRCRAFT / 'images_box.txt', 0, '1000000 9 2 9 30'),
                         'which has no area'),
    'unknown variant': (lambda b: edit_line(b / AIRCRAFT / 'images_variant_test.txt', 0, '1000001 747-400'),
                        "gives variant '747-400'"),
}


@pytest.mark.parametrize('as_archive', [True, False], ids=['tgz', 'folder'])
@pytest.mark.parametrize('case', list(AIRCRAFT_BREAKS))
def test_a_broken_aircraft_fails_with_a_clear_error_and_writes_nothing(case, as_archive, tmp_path, capsys):
    base = tmp_path / 'src'
    make_aircraft(base)
    breaks, expected = AIRCRAFT_BREAKS[case]
    breaks(base)
    source = pack(base, tmp_path / 'fgvc-aircraft-2013b.tar.gz') if as_archive else base
    code, err = run_failing('prepare_aircraft', capsys, str(source), '--dst', str(tmp_path / 'out'))
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / 'out').exists()


def test_the_wrong_archive_or_folder_is_named_as_such(aircraft, tmp_path, capsys):
    src, archive, _ = aircraft
    dst = tmp_path / 'out'
    dst.mkdir()
    (dst / 'keep.txt').write_text('mine')
    (tmp_path / 'notes.zip').write_bytes(b'PK\x03\x04 not a tar')
    for source, expected in ((archive, 'CUB_200_2011/ holds none of classes.txt, images.txt'),
                             (tmp_path / 'notes.zip', 'is not a tar archive'),
                             (src, 'is not an extracted CUB_200_2011.tgz'),
                             (tmp_path / 'nowhere.tgz', 'does not exist')):
        code, err = run_failing('prepare_cub', capsys, str(source), '--dst', str(dst))
        assert code == 2 and expected in err, err
    assert os.listdir(dst) == ['keep.txt']   # an existing --dst keeps what it had, and gains nothing


def test_a_failed_overwrite_keeps_the_previous_output(cub, tmp_path, capsys):
    src, archive, images = cub
    prepare_fewshot.prepare_cub(archive, tmp_path / 'out')
    before = tree(tmp_path / 'out')
    (src / CUB / 'images' / images[4][1]).write_bytes(b'broken')
    code, err = run_failing('prepare_cub', capsys, str(src), '--dst', str(tmp_path / 'out'), '--overwrite')
    assert code == 2 and 'cannot read image' in err
    assert tree(tmp_path / 'out') == before
