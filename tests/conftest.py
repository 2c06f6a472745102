"""Shared test fixtures: where ../shared is, a sane thread count, real data subsets, a small disk to fill."""
import contextlib
import importlib.util
import io
import os
import pathlib
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get('FRN_SHARED', REPO.parent / 'shared')).resolve()


def load_tool(name):
    """A script of tools/ as a module, so a test can call its functions (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f'tool_{name}', REPO / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shared_path(*parts):
    """Path inside the shared folder, or skip the test with the reason."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f'{path} not found: set FRN_SHARED to the shared data folder (default ../shared)')
    return path


@pytest.fixture(scope='session', autouse=True)
def _threads():
    from runtime.device import default_threads, set_threads
    set_threads(min(2, default_threads()))


def extract_tiny_subset(dest, classes_per_split=(8, 5, 5), images_per_class=40):
    """A mini-ImageNet-format folder of real Tiny-ImageNet-32 photos: the first classes of each split.

    Returns the folder. The archive keeps its CSVs last, so it is read twice: once for
    the CSVs, once to extract only the chosen images.
    """
    import csv
    import tarfile
    tar_path = shared_path('data', 'tinyimagenet32_miniformat.tar.gz')
    dest = pathlib.Path(dest)
    (dest / 'images').mkdir(parents=True)
    csv_names = ('train.csv', 'val.csv', 'test.csv')
    wanted = set()
    with tarfile.open(tar_path) as tar:
        for member in tar:
            name = member.name.split('/', 1)[-1]
            if name not in csv_names:
                continue
            rows = list(csv.reader(tar.extractfile(member).read().decode().splitlines()))[1:]
            classes = sorted({label for _, label in rows})[:classes_per_split[csv_names.index(name)]]
            keep = [r for c in classes for r in [r for r in rows if r[1] == c][:images_per_class]]
            with open(dest / name, 'w', newline='') as f:
                writer = csv.writer(f, lineterminator='\n')
                writer.writerow(['filename', 'label'])
                writer.writerows(keep)
            wanted.update(fn for fn, _ in keep)
    with tarfile.open(tar_path) as tar:
        for member in tar:
            name = member.name.split('/', 1)[-1]
            if name.startswith('images/') and name[len('images/'):] in wanted:
                (dest / name).write_bytes(tar.extractfile(member).read())
    missing = [fn for fn in wanted if not (dest / 'images' / fn).exists()]
    assert not missing, f'{len(missing)} images not found in {tar_path}'
    return dest


@pytest.fixture(scope='session')
def tiny_mini(tmp_path_factory):
    """Shared read-only mini-ImageNet-format folder of real photos (8/5/5 classes, 40 images each)."""
    return extract_tiny_subset(tmp_path_factory.mktemp('tiny') / 'tiny_mini')


def extract_cars_subset(dest, classes_per_split=(6, 5, 5)):
    """A class-per-folder dataset of real Stanford Cars crops: the first classes of each split, all their images."""
    import tarfile
    tar_path = shared_path('data', 'cars_fewshot.tar')
    limits = dict(zip(('train', 'val', 'test'), classes_per_split))
    with tarfile.open(tar_path) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.count('/') == 3]
        chosen = {split: sorted({m.name.split('/')[2] for m in members if m.name.split('/')[1] == split})[:n]
                  for split, n in limits.items()}
        keep = [m for m in members if m.name.split('/')[2] in chosen[m.name.split('/')[1]]]
        tar.extractall(dest, members=keep, **({'filter': 'data'} if hasattr(tarfile, 'data_filter') else {}))
    return pathlib.Path(dest) / 'cars_fewshot'


@pytest.fixture(scope='session')
def cars_small(tmp_path_factory):
    """Shared read-only class-per-folder folder of real Stanford Cars crops (6/5/5 classes, 24-68 images each)."""
    return extract_cars_subset(tmp_path_factory.mktemp('cars'))


@contextlib.contextmanager
def mounted_small_disk(folder, size):
    """A tmpfs of `size` (such as '300k') mounted at `folder`: a real disk that fills up. Mounting needs root;
    where it is not allowed, the test is skipped with the reason."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(folder)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f'cannot mount a small tmpfs to fill up ({result.stderr.strip() or result.returncode}); '
                    f'the full-disk case needs root')
    try:
        yield folder
    finally:
        subprocess.run(['umount', str(folder)], check=True)


@pytest.fixture
def small_disk(tmp_path):
    """A 300 KB tmpfs: a real full disk (see mounted_small_disk)."""
    with mounted_small_disk(tmp_path / 'disk', '300k') as mount:
        yield mount


def jpeg_claiming(width, height):
    """A real baseline JPEG whose frame header (SOF0) claims width x height (past Pillow's decompression-bomb
    limit for 60000 x 60000)."""
    from PIL import Image
    buffer = io.BytesIO()
    Image.new('RGB', (16, 16), (200, 30, 30)).save(buffer, 'JPEG')
    data = bytearray(buffer.getvalue())
    sof = data.index(b'\xff\xc0')
    data[sof + 5:sof + 9] = height.to_bytes(2, 'big') + width.to_bytes(2, 'big')
    return bytes(data)
