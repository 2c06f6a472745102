"""write_miniImagenet_filelist.py and the split readers, on the real split files and real photos."""
import io
import json
import os
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from conftest import REPO, shared_path
from data.filelist import detect_layout, read_split, read_split_json
from utils import FRNError

WRITER = REPO / 'write_miniImagenet_filelist.py'


def run_writer(*args, cwd=None):
    return subprocess.run([sys.executable, str(WRITER), *args], cwd=cwd, capture_output=True, text=True)


def tiny_jpeg_bytes():
    buf = io.BytesIO()
    Image.new('RGB', (8, 8), (120, 30, 200)).save(buf, 'JPEG')
    return buf.getvalue()


@pytest.fixture(scope='module')
def placeholder_mini(tmp_path_factory):
    """The real Ravi & Larochelle CSVs with a placeholder JPEG for every listed file."""
    root = tmp_path_factory.mktemp('mini') / 'mini_imagenet'
    (root / 'images').mkdir(parents=True)
    jpeg = tiny_jpeg_bytes()
    for name in ('train.csv', 'val.csv', 'test.csv'):
        src = shared_path('data', 'miniimagenet_splits', name)
        shutil.copy(src, root / name)
        for line in src.read_text().splitlines()[1:]:
            (root / 'images' / line.split(',')[0]).write_bytes(jpeg)
    return root


@pytest.mark.slow
def test_writer_on_real_split_files_gives_published_counts(placeholder_mini, tmp_path):
    out = tmp_path / 'lists'
    result = run_writer('--data_path', str(placeholder_mini), '--out_dir', str(out))
    assert result.returncode == 0, result.stderr
    expected = {'base.json': (64, 38400), 'val.json': (16, 9600), 'novel.json': (20, 12000)}
    wnids = {}
    for name, (n_classes, n_images) in expected.items():
        meta = json.loads((out / name).read_text())
        assert len(meta['label_names']) == n_classes
        assert len(meta['image_names']) == len(meta['image_labels']) == n_images
        assert sorted(set(meta['image_labels'])) == list(range(n_classes))
        assert meta['label_names'] == sorted(meta['label_names'])
        assert all(not os.path.isabs(p) for p in meta['image_names'])
        # label_names[i] is the wnid of label i, and every class has exactly 600 images
        for path, label in zip(meta['image_names'], meta['image_labels']):
            assert os.path.basename(path)[:9] == meta['label_names'][label]
        assert all(meta['image_labels'].count(c) == 600 for c in range(n_classes))
        wnids[name] = set(meta['label_names'])
        assert f'{n_classes:>4} classes {n_images:>7} images' in result.stdout
    assert not (wnids['base.json'] & wnids['val.json']) and not (wnids['val.json'] & wnids['novel.json'])


def test_writer_runs_with_no_arguments_from_a_copy_inside_the_dataset_folder(tiny_mini, tmp_path):
    data = tmp_path / 'copy'
    shutil.copytree(tiny_mini, data)
    shutil.copy(WRITER, data / WRITER.name)
    result = subprocess.run([sys.executable, WRITER.name], cwd=data, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    base = json.loads((data / 'base.json').read_text())
    assert len(base['label_names']) == 8 and len(base['image_names']) == 8 * 40
    assert base['image_names'][0].startswith('images' + os.sep)


def test_file_lists_resolve_relative_to_the_json_after_moving_the_folder(tiny_mini, tmp_path):
    data = tmp_path / 'before'
    shutil.copytree(tiny_mini, data)
    assert run_writer('--data_path', str(data)).returncode == 0
    moved = tmp_path / 'elsewhere' / 'after'
    shutil.move(str(data), moved)
    split = read_split(str(moved), 'val')
    assert split.n_classes == 5 and len(split) == 200
    assert all(p.startswith(str(moved)) and os.path.isfile(p) for p in split.image_paths)


def test_file_lists_with_absolute_paths_from_older_tools_load(tiny_mini, tmp_path):
    names = sorted(os.listdir(tiny_mini / 'images'))[:3]
    meta = {'label_names': ['a', 'b'], 'image_names': [str(tiny_mini / 'images' / n) for n in names],
            'image_labels': [0, 1, 1]}
    path = tmp_path / 'old.json'
    path.write_text(json.dumps(meta))
    split = read_split_json(str(path))
    assert split.image_paths == meta['image_names'] and split.labels == [0, 1, 1]


def test_csv_only_folder_reads_the_same_as_its_file_lists(tiny_mini, tmp_path):
    from_csv = read_split(str(tiny_mini), 'train')
    data = tmp_path / 'with_json'
    shutil.copytree(tiny_mini, data)
    assert run_writer('--data_path', str(data)).returncode == 0
    from_json = read_split(str(data), 'train')
    assert from_csv.labels == from_json.labels and from_csv.label_names == from_json.label_names
    assert [os.path.basename(p) for p in from_csv.image_paths] == [os.path.basename(p) for p in from_json.image_paths]


def test_class_per_folder_layout_is_read_sorted(tmp_path):
    for split, classes in {'train': ['zebra', 'ant'], 'val': ['cat', 'dog'], 'test': ['emu', 'fox', 'gnu']}.items():
        for cls in classes:
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.new('RGB', (10, 10)).save(tmp_path / split / cls / f'{i}.png')
        (tmp_path / split / classes[0] / 'notes.txt').write_text('not an image')
    assert detect_layout(str(tmp_path)) == 'folders'
    train = read_split(str(tmp_path), 'train')
    assert train.label_names == ['ant', 'zebra'] and train.labels == [0, 0, 0, 1, 1, 1]
    assert read_split(str(tmp_path), 'test').n_classes == 3


def test_unknown_folder_layout_is_a_clear_error(tmp_path):
    with pytest.raises(FRNError, match='not a dataset folder'):
        read_split(str(tmp_path), 'train')
    with pytest.raises(FRNError, match='does not exist'):
        read_split(str(tmp_path / 'nope'), 'train')


# ---- bad input: one clear paragraph, exit code != 0, no traceback, no JSON left behind ----

def broken_copy(tiny_mini, tmp_path, edit):
    data = tmp_path / 'broken'
    shutil.copytree(tiny_mini, data)
    edit(data)
    return data


def append_row(csv_name, row):
    def edit(data):
        with open(data / csv_name, 'a') as f:
            f.write(row + '\n')
    return edit


def first_row(data, csv_name):
    return (data / csv_name).read_text().splitlines()[1]


BAD_INPUTS = {
    'missing_csv': (lambda d: os.remove(d / 'val.csv'), 'val.csv'),
    'wrong_header': (lambda d: (d / 'test.csv').write_text('file,class\n' + first_row(d, 'test.csv') + '\n'),
                     'expected "filename,label"'),
    'malformed_row': (append_row('train.csv', 'n0153282900000005.jpg'), 'malformed row'),
    'duplicate_file': (lambda d: append_row('test.csv', first_row(d, 'train.csv').split(',')[0] + ',' +
                                           first_row(d, 'test.csv').split(',')[1])(d), 'listed twice'),
    'class_in_two_splits': (lambda d: append_row('val.csv', 'n9999999900000001.jpg,' +
                                                 first_row(d, 'train.csv').split(',')[1])(d), 'appears in both'),
}


@pytest.mark.parametrize('case', sorted(BAD_INPUTS))
def test_writer_rejects_bad_input_clearly(tiny_mini, tmp_path, case):
    edit, message = BAD_INPUTS[case]
    data = broken_copy(tiny_mini, tmp_path, edit)
    result = run_writer('--data_path', str(data))
    assert result.returncode != 0
    assert message in result.stderr
    assert 'Traceback' not in result.stderr and result.stderr.count('\n') == 1
    assert not list(data.glob('*.json'))


def test_writer_names_missing_images_and_writes_nothing(tiny_mini, tmp_path):
    data = broken_copy(tiny_mini, tmp_path, lambda d: None)
    gone = sorted(os.listdir(data / 'images'))[:7]
    for name in gone:
        os.remove(data / 'images' / name)
    result = run_writer('--data_path', str(data))
    assert result.returncode != 0 and 'Traceback' not in result.stderr
    assert '7 image(s)' in result.stderr
    assert sum(name in result.stderr for name in gone) == 5  # the first few are named
    assert not list(data.glob('*.json'))


def test_writer_rejects_a_missing_folder(tmp_path):
    result = run_writer('--data_path', str(tmp_path / 'absent'))
    assert result.returncode != 0 and 'does not exist' in result.stderr and 'Traceback' not in result.stderr


def test_reader_of_a_csv_only_folder_reports_the_same_errors(tiny_mini, tmp_path):
    data = broken_copy(tiny_mini, tmp_path, lambda d: os.remove(d / 'images' / sorted(os.listdir(d / 'images'))[0]))
    with pytest.raises(FRNError, match='1 image'):
        read_split(str(data), 'train')
