"""Omniglot: splits read from the official zips or folders, rotations, the transform, episodes, the downloader tool."""
import collections
import hashlib
import io
import os
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, shared_path
from conftest import load_tool as load_conftest_tool
from data import omniglot
from data.datamgr import EpochLoader
from data.dataset import EpisodicBatchSampler, SetDataset
from data.transforms import omniglot_transform
from utils import FRNError

SPLITS = ('train', 'val', 'test')
# Alphabets extracted for the folder tests: one per background-scheme split.
EXTRACTED = {'images_background': ('Latin', 'Hebrew'), 'images_evaluation': ('Angelic',)}


@pytest.fixture(scope='module')
def root():
    return str(shared_path('data', 'omniglot'))


@pytest.fixture(scope='module')
def vinyals(root):
    return {s: omniglot.read_omniglot(root, s) for s in SPLITS}


@pytest.fixture(scope='module')
def background(root):
    return {s: omniglot.read_omniglot(root, s, scheme='background') for s in SPLITS}


@pytest.fixture(scope='module')
def folders(root, tmp_path_factory):
    """Two copies of a few alphabets: extracted folders, and the zips (linked); both with a small Vinyals split."""
    base = tmp_path_factory.mktemp('omniglot')
    extracted, zipped = base / 'extracted', base / 'zipped'
    for part, alphabets in EXTRACTED.items():
        with zipfile.ZipFile(os.path.join(root, part + '.zip')) as archive:
            for name in archive.namelist():
                if name.split('/')[1] in alphabets and name.endswith('.png'):
                    (extracted / name).parent.mkdir(parents=True, exist_ok=True)
                    (extracted / name).write_bytes(archive.read(name))
        zipped.mkdir(exist_ok=True)
        (zipped / (part + '.zip')).symlink_to(os.path.join(root, part + '.zip'))
    keep = {a for alphabets in EXTRACTED.values() for a in alphabets}
    lines = [line for line in open(os.path.join(root, 'splits_vinyals', 'train.txt')) if line.split('/')[0] in keep]
    for folder in (extracted, zipped):
        (folder / 'splits_vinyals').mkdir()
        (folder / 'splits_vinyals' / 'train.txt').write_text(''.join(lines))
    return str(extracted), str(zipped)


def characters(split):
    return {name.rsplit('/', 1)[0] for name in split.label_names}


def alphabets(split):
    return {name.split('/')[0] for name in split.label_names}


def image_of(split, label_name, drawer=0):
    i = split.class_members()[split.label_names.index(label_name)][drawer]
    return split.image_paths[i], np.asarray(split.load_image(i))


def assert_same_split(a, b, sample_every=97):
    assert (a.label_names, a.labels, a.image_paths) == (b.label_names, b.labels, b.image_paths)
    for i in range(0, len(a), sample_every):
        np.testing.assert_array_equal(np.asarray(a.load_image(i)), np.asarray(b.load_image(i)))


@pytest.mark.slow
def test_zips_hold_964_and_659_characters_each_drawn_by_20_drawers(root):
    for part, n_alphabets, n_characters in (('images_background', 30, 964), ('images_evaluation', 20, 659)):
        images = omniglot.load_images(root, part)
        assert len(images.characters) == n_characters
        assert len({c.split('/')[0] for c in images.characters}) == n_alphabets
        for names in images.characters.values():
            assert [n.rsplit('_', 1)[1] for n in names] == [f'{d:02d}.png' for d in range(1, 21)]


def test_vinyals_split_has_4112_688_1692_classes_of_20_images_in_four_rotations(vinyals):
    for split, n_classes in zip(SPLITS, (4112, 688, 1692)):
        s = vinyals[split]
        assert s.n_classes == n_classes and len(s) == 20 * n_classes
        assert sorted(set(s.labels)) == list(range(n_classes))
        assert all(len(m) == 20 for m in s.class_members())
        rotations = collections.Counter(name.rsplit('/', 1)[0] for name in s.label_names)
        assert set(rotations.values()) == {4} and len(rotations) == n_classes // 4
        assert {name.rsplit('/', 1)[1] for name in s.label_names} == {'rot000', 'rot090', 'rot180', 'rot270'}


def test_vinyals_splits_are_disjoint_characters_drawn_from_both_zips(vinyals):
    train, val, test = (characters(vinyals[s]) for s in SPLITS)
    assert not (train & val or train & test or val & test)
    assert len(train | val | test) == 964 + 659
    assert {p.split('/')[0] for p in vinyals['train'].image_paths} == {'images_background', 'images_evaluation'}


def test_rotated_classes_turn_the_same_drawing_counter_clockwise(vinyals):
    split = vinyals['train']
    path0, image0 = image_of(split, 'Angelic/character01/rot000', drawer=3)
    assert image0.shape == (105, 105, 3)
    for k, rotation in ((1, 'rot090'), (2, 'rot180'), (3, 'rot270')):
        path, image = image_of(split, f'Angelic/character01/{rotation}', drawer=3)
        assert path.split('@')[0] == path0.split('@')[0]
        np.testing.assert_array_equal(image, np.rot90(image0, k))
    _, image90 = image_of(split, 'Angelic/character01/rot090', drawer=3)
    assert not np.array_equal(image90, np.rot90(image0, -1))                           # not clockwise
    np.testing.assert_array_equal(image90, np.asarray(Image.fromarray(image0).rotate(90)))  # PIL's convention


def test_load_image_is_the_png_as_rgb_105x105(root, vinyals):
    split = vinyals['test']
    for i in (0, 20 * 4 * 17 + 5):                      # a rot000 class image from each of two characters
        assert split.image_paths[i].endswith('@rot000')
        image = split.load_image(i)
        assert image.mode == 'RGB' and image.size == (105, 105)
        name = split.image_paths[i].split('@')[0]
        with zipfile.ZipFile(os.path.join(root, name.split('/')[0] + '.zip')) as archive:
            png = np.asarray(Image.open(io.BytesIO(archive.read(name))).convert('L'))
        assert png.min() == 0 and png.max() == 255
        for channel in range(3):
            np.testing.assert_array_equal(np.asarray(image)[..., channel], png)


def test_background_scheme_holds_out_five_background_alphabets_for_val_and_tests_on_evaluation(background):
    train, val, test = (background[s] for s in SPLITS)
    assert (train.n_classes, val.n_classes, test.n_classes) == (792, 172, 659)
    assert alphabets(val) == {'Armenian', 'Bengali', 'Early_Aramaic', 'Hebrew', 'Mkhedruli_(Georgian)'}
    assert len(alphabets(train)) == 25 and len(alphabets(test)) == 20
    train_a, val_a, test_a = alphabets(train), alphabets(val), alphabets(test)
    assert not (train_a & val_a or train_a & test_a or val_a & test_a)
    for s, part in ((train, 'images_background'), (val, 'images_background'), (test, 'images_evaluation')):
        assert all(len(m) == 20 for m in s.class_members())
        assert all(name.endswith('/rot000') for name in s.label_names)
        assert {p.split('/')[0] for p in s.image_paths} == {part}


def test_transform_gives_strokes_as_ones_on_zero_background_at_the_chosen_size(vinyals):
    image = vinyals['val'].load_image(0)
    for size in (28, 84):
        x = omniglot_transform(size)(image)
        assert x.shape == (3, size, size) and x.dtype == np.float32
        assert x.min() == 0.0 and x[:, 0, 0].tolist() == [0.0, 0.0, 0.0] and x.max() > 0.9
    np.testing.assert_array_equal(omniglot_transform(28, aug=True)(image),   # no augmentation
                                  omniglot_transform(28)(image))


def test_resizing_keeps_a_one_pixel_stroke():
    pixels = np.full((105, 105), 255, np.uint8)
    pixels[:, 52] = 0
    x = omniglot_transform(28)(Image.fromarray(pixels).convert('RGB'))
    assert x[0].max(axis=1).min() > 0.1                                  # every row still shows the stroke
    assert abs(x[0].sum() * (105 / 28) ** 2 - 105) < 105 * 0.05          # with its ink


def test_episodes_on_omniglot_are_distinct_classes_of_transformed_images(vinyals):
    split, transform = vinyals['val'], omniglot_transform(28)
    dataset = SetDataset(split, transform)
    for n_way, n_per_class in ((5, 1 + 5), (20, 5 + 15)):
        sampler = EpisodicBatchSampler(split.n_classes, n_way, 2, n_per_class, dataset.class_sizes, seed=3)
        for (x, y), episode in zip(EpochLoader(dataset, sampler, num_workers=0), sampler):
            x, y = x.numpy(), y.numpy()
            assert x.shape == (n_way, n_per_class, 3, 28, 28)
            assert (y == y[:, :1]).all() and len(set(y[:, 0])) == n_way
            cls, positions, _ = episode[-1]
            first = dataset.image_indices(cls, positions)[0]
            np.testing.assert_array_equal(x[-1, 0], transform(split.load_image(first)))


def test_extracted_folders_give_the_same_splits_as_the_zips(folders, background):
    extracted, zipped = folders
    assert_same_split(omniglot.read_omniglot(extracted, 'train'), omniglot.read_omniglot(zipped, 'train'), 7)
    for split, kept in zip(SPLITS, ('Latin', 'Hebrew', 'Angelic')):
        full = background[split]
        expected = full.subset([c for c, name in enumerate(full.label_names) if name.startswith(kept + '/')])
        assert_same_split(omniglot.read_omniglot(extracted, split, scheme='background'), expected)


def test_split_line_naming_a_missing_character_is_a_clear_error(folders):
    extracted, _ = folders
    path = os.path.join(extracted, 'splits_vinyals', 'val.txt')
    with open(path, 'w') as f:
        f.write('Latin/character01/rot000\nLatin/character99/rot090\n')
    with pytest.raises(FRNError, match=r"val.txt:2: character 'Latin/character99' is in neither"):
        omniglot.read_omniglot(extracted, 'val')
    with open(path, 'w') as f:
        f.write('Latin/character01\n')
    with pytest.raises(FRNError, match=r'val.txt:1: .* Alphabet/characterNN/rotXXX'):
        omniglot.read_omniglot(extracted, 'val')


def test_missing_data_names_the_files_and_the_download_tool(tmp_path, root):
    assert omniglot.is_omniglot_folder(root) and not omniglot.is_omniglot_folder(str(tmp_path))
    with pytest.raises(FRNError) as err:
        omniglot.read_omniglot(str(tmp_path), 'train', scheme='background')
    for text in ('images_background.zip', 'images_evaluation.zip', 'tools/download_omniglot.py --dst'):
        assert text in str(err.value)
    (tmp_path / 'images_background.zip').symlink_to(os.path.join(root, 'images_background.zip'))
    with pytest.raises(FRNError, match=r'splits_vinyals.*train.txt, val.txt and test.txt'):
        omniglot.read_omniglot(str(tmp_path), 'test')


def test_corrupt_zips_are_clear_errors(tmp_path):
    (tmp_path / 'images_background.zip').write_bytes(b'not a zip at all')
    with pytest.raises(FRNError, match=r'images_background.zip \(BadZipFile.*corrupt'):
        omniglot.read_omniglot(str(tmp_path), 'train', scheme='background')
    png = io.BytesIO()
    Image.fromarray(np.eye(105, dtype=bool)).save(png, format='PNG')
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, 'w', zipfile.ZIP_STORED) as z:
        z.writestr('images_evaluation/Angelic/character01/0965_01.png', png.getvalue())
    data = bytearray(archive.getvalue())
    at = data.index(png.getvalue()) + len(png.getvalue()) // 2
    data[at] ^= 0xFF                                                 # the member's CRC no longer matches
    (tmp_path / 'images_evaluation.zip').write_bytes(bytes(data))
    with pytest.raises(FRNError, match=r'images_evaluation.zip \(BadZipFile: Bad CRC-32'):
        omniglot.read_omniglot(str(tmp_path), 'test', scheme='background')


def load_tool():
    return load_conftest_tool('download_omniglot')


def test_verify_file_accepts_the_right_file_and_rejects_others(tmp_path):
    tool = load_tool()
    path = tmp_path / 'abc.bin'
    path.write_bytes(b'abc')
    md5_abc = '900150983cd24fb0d6963f7d28e17f72'                    # RFC 1321 test vector
    assert tool.verify_file(str(path), 3, md5_abc)
    assert not tool.verify_file(str(path), 3, 'd41d8cd98f00b204e9800998ecf8427e')
    assert not tool.verify_file(str(path), 4, md5_abc)
    assert not tool.verify_file(str(tmp_path / 'missing.bin'), 3, md5_abc)


def test_downloader_writes_verified_files_skips_them_next_time_and_refuses_bad_ones(tmp_path, monkeypatch, root):
    tool = load_tool()
    served = {'images_background.zip': b'abc', 'images_evaluation.zip': b'abcd'}
    for split in SPLITS:
        served[split + '.txt'] = open(os.path.join(root, 'splits_vinyals', split + '.txt'), 'rb').read()
    monkeypatch.setattr(tool, 'OFFICIAL_ZIPS', {name: (len(data), hashlib.md5(data).hexdigest())
                                                    for name, data in served.items() if name.endswith('.zip')})
    fetched = []

    def fake_urlopen(url, timeout):
        fetched.append(url)
        return io.BytesIO(served[url.rsplit('/', 1)[1]])
    monkeypatch.setattr(urllib.request, 'urlopen', fake_urlopen)
    dst = tmp_path / 'omniglot'
    tool.fetch_omniglot(str(dst), log=lambda line: None)
    assert len(fetched) == 5 and any('brendenlake/omniglot' in u for u in fetched)
    assert sorted(os.listdir(dst)) == ['images_background.zip', 'images_evaluation.zip', 'splits_vinyals']
    assert (dst / 'splits_vinyals' / 'val.txt').read_bytes() == served['val.txt']
    tool.fetch_omniglot(str(dst), log=lambda line: None)
    assert len(fetched) == 5                                          # everything verified: nothing fetched
    (dst / 'images_background.zip').unlink()
    served['images_background.zip'] = b'abX'                          # right size, wrong md5
    with pytest.raises(FRNError, match='md5'):
        tool.fetch_omniglot(str(dst), log=lambda line: None)
    assert sorted(os.listdir(dst)) == ['images_evaluation.zip', 'splits_vinyals']   # no bad or temp file


def test_downloader_offline_says_what_to_place_where(tmp_path, monkeypatch, capsys):
    def no_network(url, timeout):
        raise urllib.error.URLError('no route to host')
    monkeypatch.setattr(urllib.request, 'urlopen', no_network)
    with pytest.raises(SystemExit) as exit_:
        load_tool().main(['--dst', str(tmp_path / 'omniglot')])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    for text in ('no route to host', 'images_background.zip (9,464,212 bytes, md5 68d2efa1b9178cc56df9314c21c6e718)',
                 'images_evaluation.zip (6,462,886 bytes, md5 6b91aef0f799c5bb55b94e3f2daec811)',
                 str(tmp_path / 'omniglot' / 'splits_vinyals'), 'github.com/brendenlake/omniglot'):
        assert text in err
    assert len(err.strip().splitlines()) == 1


def test_downloader_cli_runs_from_anywhere_and_fails_offline_without_a_traceback(tmp_path):
    env = {k: v for k, v in os.environ.items() if k.lower() not in ('no_proxy', 'https_proxy', 'http_proxy')}
    env.update(https_proxy='http://127.0.0.1:9', HTTPS_PROXY='http://127.0.0.1:9')   # a closed port: offline
    result = subprocess.run([sys.executable, str(REPO / 'tools' / 'download_omniglot.py'), '--dst', 'omniglot',
                             '--timeout', '5'], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith('error: cannot download') and 'Traceback' not in result.stderr
    assert not (tmp_path / 'omniglot' / 'images_background.zip').exists()
