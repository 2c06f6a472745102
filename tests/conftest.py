"""Shared test fixtures: where ../shared is, a sane thread count, real data subsets, a small disk to fill.

FRN_REQUIRE_SHARED=1 (CI sets it) turns a missing shared folder or file into a failure instead of a skip,
so a run without the data cannot pass having tested little.
"""
import contextlib
import importlib.util
import io
import os
import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get('FRN_SHARED', REPO.parent / 'shared')).resolve()
REQUIRE_SHARED = os.environ.get('FRN_REQUIRE_SHARED', '') not in ('', '0')


def load_tool(name):
    """A script of tools/ as a module, so a test can call its functions (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f'tool_{name}', REPO / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # so that the fast tier's module check sees it loaded
    spec.loader.exec_module(module)
    return module


def quoted_commands(*docs):
    """The command lines of the ```bash blocks of these markdown files (paths from the repository root), lines
    continued with a backslash joined: [(doc, line)]."""
    found = []
    for doc in docs:
        for block in re.findall(r'```bash\n(.*?)```', (REPO / doc).read_text(encoding='utf-8'), flags=re.S):
            line = ''
            for raw in block.splitlines():
                if raw.rstrip().endswith('\\'):
                    line += raw.rstrip()[:-1] + ' '
                    continue
                line = (line + raw).strip()
                if line:
                    found.append((doc, line))
                line = ''
    return found

def shared_path(*parts):
    """Path inside the shared folder, or skip the test with the reason (fail it under FRN_REQUIRE_SHARED=1)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        reason = f'{path} not found: set FRN_SHARED to the shared data folder (default ../shared)'
        if REQUIRE_SHARED:
            pytest.fail(f'{reason}; FRN_REQUIRE_SHARED is set, so missing shared data is a failure', pytrace=False)
        pytest.skip(reason)
    return path


def pytest_configure(config):
    if REQUIRE_SHARED and not SHARED.is_dir():
        raise pytest.UsageError(f'FRN_REQUIRE_SHARED is set but the shared data folder {SHARED} does not exist: '
                                'set FRN_SHARED to it (default ../shared)')


@pytest.fixture(scope='session', autouse=True)
def _threads():
    from runtime.device import default_threads, set_threads
    set_threads(min(2, default_threads()))


def extract_tiny_subset(dest, classes_per_split=(8, 5, 5), images_per_class=40):
    """A mini-ImageNet-format folder of real Tiny-ImageNet-32 photos: the first classes of each split.

    Returns the folder. The archive keeps its CSVs last, so on the way to them each class's
    lowest-numbered images, which the CSVs list first, are kept in memory; only an image that
    is not among them would take a second read of the archive.
    """
    import csv
    import tarfile
    tar_path = shared_path('data', 'tinyimagenet32_miniformat.tar.gz')
    dest = pathlib.Path(dest)
    (dest / 'images').mkdir(parents=True)
    csv_names = ('train.csv', 'val.csv', 'test.csv')
    texts, early = {}, {}
    with tarfile.open(tar_path) as tar:
        for member in tar:
            name = member.name.split('/', 1)[-1]
            if name in csv_names:
                texts[name] = tar.extractfile(member).read().decode()
            elif name.startswith('images/') and name[-12:-4].isdigit() and int(name[-12:-4]) <= images_per_class:
                early[name[len('images/'):]] = tar.extractfile(member).read()  # e.g. n0144353700000001.jpg
    wanted = set()
    for name in csv_names:
        rows = list(csv.reader(texts[name].splitlines()))[1:]
        classes = sorted({label for _, label in rows})[:classes_per_split[csv_names.index(name)]]
        keep = [r for c in classes for r in [r for r in rows if r[1] == c][:images_per_class]]
        with open(dest / name, 'w', newline='') as f:
            writer = csv.writer(f, lineterminator='\n')
            writer.writerow(['filename', 'label'])
            writer.writerows(keep)
        wanted.update(fn for fn, _ in keep)
    for fn in wanted & early.keys():
        (dest / 'images' / fn).write_bytes(early[fn])
    if wanted - early.keys():
        with tarfile.open(tar_path) as tar:
            for member in tar:
                name = member.name.split('/', 1)[-1]
                if name.startswith('images/') and name[len('images/'):] in wanted - early.keys():
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


# ---- the fast tier touches every module ----

PROJECT_FOLDERS = ('data', 'network', 'methods', 'engine', 'deploy', 'tools')


def project_modules():
    """The project's module files: the packages' and tools' modules and the top-level scripts."""
    files = [p for folder in PROJECT_FOLDERS for p in (REPO / folder).glob('*.py') if p.name != '__init__.py']
    return sorted(files + list(REPO.glob('*.py')))


def modules_not_loaded():
    """Project module files that no module of this process was loaded from (relative paths)."""
    loaded = {pathlib.Path(m.__file__).resolve() for m in list(sys.modules.values())
              if getattr(m, '__file__', None)}
    return [str(p.relative_to(REPO)) for p in project_modules() if p.resolve() not in loaded]


def runs_the_whole_fast_tier(config):
    """`pytest -m "not slow"` over the whole suite: no -k, no narrower path than tests/."""
    marks = ' '.join(str(config.getoption('markexpr') or '').split())
    paths = {pathlib.Path(arg.split('::')[0]).resolve() for arg in config.args}
    return marks == 'not slow' and not config.getoption('keyword') and paths <= {REPO, REPO / 'tests'}


def pytest_sessionfinish(session, exitstatus):
    """The fast tier must load every project module in this process (the tests that load one exercise it):
    a module only a slow test or a subprocess reaches fails the run, so the fast tier stays a real check."""
    if (not runs_the_whole_fast_tier(session.config) or session.config.option.collectonly or not session.testscollected
            or session.shouldfail or session.shouldstop):
        return
    missing = modules_not_loaded()
    session.config.stash[MISSING_KEY] = missing
    if missing and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


MISSING_KEY = pytest.StashKey[list]()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    missing = config.stash.get(MISSING_KEY, None)
    if missing:
        terminalreporter.write_line(f'FAILED: the fast tier loads no test of {len(missing)} project module(s): '
                                    f'{", ".join(missing)}; add a fast test that exercises each', red=True)
