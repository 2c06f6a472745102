"""Download Omniglot's two official zips and the Vinyals split files into a folder, verified.

    python tools/download_omniglot.py --dst data/omniglot

The zips come from github.com/brendenlake/omniglot (python/) and must match the upstream
size and md5; the split files come from github.com/jakesnell/prototypical-networks and
must have the expected number of well-formed lines. Files already there that check out
are skipped. Each file goes to a temp file first and is renamed into place only once it
checks out. Offline, it says which files to place where, and exits with code 2.
Then use the folder as `--data_path` with `--dataset omniglot`.
"""
import functools
import hashlib
import http.client
import os
import shutil
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runtime.command import cli_main, new_parser  # noqa: E402  (after the sys.path line)
from data.omniglot import CLASS_LINE, SPLITS_DIR, VINYALS_CLASSES  # noqa: E402
from utils import FRNError, atomic_write  # noqa: E402

OFFICIAL_ZIPS = {'images_background.zip': (9_464_212, '68d2efa1b9178cc56df9314c21c6e718'),
                 'images_evaluation.zip': (6_462_886, '6b91aef0f799c5bb55b94e3f2daec811')}
ZIP_URL = 'https://raw.githubusercontent.com/brendenlake/omniglot/master/python/{}'
SPLIT_URL = 'https://raw.githubusercontent.com/jakesnell/prototypical-networks/master/data/omniglot/splits/vinyals/{}'


def file_md5(path):
    digest = hashlib.md5()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path, size, md5):
    """True when `path` is a file of exactly `size` bytes with this md5 (size first: cheap, catches truncation)."""
    return os.path.isfile(path) and os.path.getsize(path) == size and file_md5(path) == md5


def _zip_problem(path, size, md5):
    if verify_file(path, size, md5):
        return None
    return (f'got {os.path.getsize(path):,} bytes with md5 {file_md5(path)}, '
            f'expected {size:,} bytes with md5 {md5}')


def _split_problem(path, n_classes):
    with open(path, encoding='utf-8', errors='replace') as f:
        lines = [line.strip() for line in f if line.strip()]
    if len(lines) != n_classes or not all(CLASS_LINE.fullmatch(line) for line in lines):
        return f'expected {n_classes} lines of the form Alphabet/characterNN/rotXXX, got {len(lines)} lines'
    return None


def offline_help(dst):
    zips = ' and '.join(f'{name} ({size:,} bytes, md5 {md5})' for name, (size, md5) in OFFICIAL_ZIPS.items())
    return (f'to set up Omniglot by hand, place {zips} in {dst} '
            f'(from https://github.com/brendenlake/omniglot/tree/master/python; the extracted folders '
            f'images_background/ and images_evaluation/ work too), and for the Vinyals split place train.txt, '
            f'val.txt and test.txt in {os.path.join(dst, SPLITS_DIR)}/ '
            f'(from https://github.com/jakesnell/prototypical-networks/tree/master/data/omniglot/splits/vinyals)')


def download(url, path, problem, timeout=60):
    """Fetch `url` to `path` through a temp file, renamed into place only when `problem(tmp)` finds none."""
    def write(tmp):
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, 'wb') as f:
            shutil.copyfileobj(response, f, 1 << 20)
        found = problem(tmp)
        if found:
            raise FRNError(f'{url}: {found}; the download was corrupted or upstream changed: '
                           f'try again, or {offline_help(os.path.dirname(path))}')
    atomic_write(path, write)


def fetch_omniglot(dst, timeout=60, log=print):
    """Make `dst` hold both official zips (size and md5 verified) and the Vinyals split files.

    Files already present that check out are kept; others are downloaded. Any network
    failure becomes an FRNError that says which files to place where by hand.
    """
    jobs = [(ZIP_URL.format(name), os.path.join(dst, name), functools.partial(_zip_problem, size=size, md5=md5))
            for name, (size, md5) in OFFICIAL_ZIPS.items()]
    jobs += [(SPLIT_URL.format(split + '.txt'), os.path.join(dst, SPLITS_DIR, split + '.txt'),
              functools.partial(_split_problem, n_classes=n)) for split, n in VINYALS_CLASSES.items()]
    for url, path, problem in jobs:
        if os.path.isfile(path):
            found = problem(path)
            if not found:
                log(f'{path}: present and verified')
                continue
            log(f'{path}: present but {found}; downloading it again')
        try:
            download(url, path, problem, timeout)
        except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as err:
            raise FRNError(f'cannot download {url} ({getattr(err, "reason", err)}); '
                           f'{offline_help(dst)}') from None
        except OSError as err:
            raise FRNError(f'cannot write {path}: {err.strerror or err}; choose a --dst you can write to') from None
        log(f'{path}: downloaded and verified')


@cli_main
def main(argv=None):
    parser = new_parser(__doc__.split('\n')[0])
    parser.add_argument('--dst', required=True, help='folder for the zips and splits_vinyals/ (created if needed)')
    parser.add_argument('--timeout', type=float, default=60, help='seconds to wait for the network before giving up')
    args = parser.parse_args(argv)
    fetch_omniglot(args.dst, timeout=args.timeout)
    print(f'Omniglot is ready: --dataset omniglot --data_path {args.dst}')


if __name__ == '__main__':
    main()
