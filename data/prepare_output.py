"""Writing a prepared dataset: all or nothing, one run per output, and every write named when it fails.

`staged_output` is this project's one way to write a folder of files atomically (the dataset
tools' outputs, and deploy/export.py's inference models). It builds the output folders in a
hidden temp folder inside `--dst`
(`.<first name>.<random>.partial`) and renames them into place only when complete; on any
failure the temp folder goes and an existing output stays as it was. A run holds
`--dst/.<first name>.lock` (a POSIX record lock, which the kernel drops when its process
dies, however it dies) for as long as it writes, so a second run for the same output stops
with a clear message, and a temp folder found while holding the lock was left by a killed
run: it is removed. Names that come from metadata become paths only through `utils.inside`.
"""
import contextlib
import errno
import fcntl
import os
import shutil
import sys
import tempfile

from utils import FILE_SYSTEM_ERRNOS, FRNError, inside, os_error_cause

PARTIAL_SUFFIX = '.partial'


def file_system_error(err, path):
    """An OSError while writing `path` as an FRNError naming it (other errors are returned as they are)."""
    if isinstance(err, OSError) and err.errno in FILE_SYSTEM_ERRNOS:
        return FRNError(f'cannot write {path}: {os_error_cause(err)}; nothing was kept')
    return err


def write_file(path, write):
    """write(path) into a folder made as needed; a full disk or a permission error names the file."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write(path)
    except OSError as err:
        raise file_system_error(err, path) from None


def save_image(image, path, pil_format, options):
    write_file(path, lambda p: image.save(p, pil_format, **options))


def save_bytes(data, path):
    def write(p):
        with open(p, 'wb') as f:
            f.write(data)
    write_file(path, write)


def check_dst(dst, flag='--dst'):
    """Refuse a --dst (the folder `flag` gives) that is a file, or lies under one, before anything is written."""
    missing = missing_folders(dst)
    probe = os.path.dirname(missing[-1]) if missing else dst
    if probe and not os.path.isdir(probe):
        if probe == dst:
            raise FRNError(f'{flag} {dst!r} is a file, not a folder; give a folder')
        raise FRNError(f'{flag} {dst!r} lies under {probe!r}, which is a file, not a folder; give a folder')


def refuse_existing(dst, names, overwrite, flag='--dst'):
    for name in names:
        if os.path.exists(os.path.join(dst, name)) and not overwrite:
            raise FRNError(f'{os.path.join(dst, name)} already exists; remove it, choose another {flag}, '
                           f'or pass --overwrite to replace it')


@contextlib.contextmanager
def output_lock(dst, name, flag='--dst'):
    """Hold `dst/.<name>.lock` while preparing `name`; refuse if another live run holds it."""
    path = os.path.join(dst, f'.{name}.lock')
    while True:   # a lock file removed by its owner between our open and our lock is retried
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            owner = os.read(fd, 100).decode('ascii', 'replace').strip()
            os.close(fd)
            if err.errno in (errno.EACCES, errno.EAGAIN):
                raise FRNError(f'another run (pid {owner or "?"}) is preparing {name} in {dst}; wait for it to '
                               f'finish or stop it, or choose another {flag}') from None
            raise FRNError(f'cannot lock {path} ({err.strerror}); this file system has no file locks: '
                           f'choose a {flag} on a local disk') from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.unlink(path)   # while still locked, so no one else holds this file
        os.close(fd)


def remove_stale_partials(dst, name):
    """Delete the temp folders of `name` that killed runs left in `dst` (call it only under the lock)."""
    prefix = f'.{name}.'
    for entry in sorted(os.listdir(dst)):
        if entry.startswith(prefix) and entry.endswith(PARTIAL_SUFFIX) and os.path.isdir(os.path.join(dst, entry)):
            shutil.rmtree(os.path.join(dst, entry), ignore_errors=True)
            print(f'removed {os.path.join(dst, entry)}, left by an interrupted run', file=sys.stderr)


@contextlib.contextmanager
def staged_output(dst, names, overwrite, flag='--dst'):
    """A temp folder in `dst` to build `names` in; they are renamed into `dst` at the end, or all deleted.

    `flag` is the option that gave `dst`, for the messages."""
    dst = os.path.abspath(os.fspath(dst))
    check_dst(dst, flag)
    refuse_existing(dst, names, overwrite, flag)
    created = missing_folders(dst)
    try:
        os.makedirs(dst, exist_ok=True)
    except OSError as err:
        raise file_system_error(err, dst) from None
    try:
        with output_lock(dst, names[0], flag):
            remove_stale_partials(dst, names[0])
            try:
                tmp = tempfile.mkdtemp(prefix=f'.{names[0]}.', suffix=PARTIAL_SUFFIX, dir=dst)
            except OSError as err:
                raise file_system_error(err, dst) from None
            try:
                yield tmp
                refuse_existing(dst, names, overwrite, flag)   # someone may have made it in the meantime
                for name in names:
                    replace(tmp, dst, name)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        for folder in created:   # deepest first; a failed run leaves no empty folders behind
            if os.path.isdir(folder) and not os.listdir(folder):
                os.rmdir(folder)
        raise


def missing_folders(dst):
    """The folders that making `dst` will create, deepest first."""
    missing = []
    while dst and not os.path.exists(dst):
        missing.append(dst)
        dst = os.path.dirname(dst)
    return missing


def replace(tmp, dst, name):
    """Rename tmp/name to dst/name; an existing dst/name moves into tmp (deleted with it), or back on failure."""
    target, old = os.path.join(dst, name), os.path.join(tmp, f'{name}.old')
    if os.path.exists(target):
        os.rename(target, old)
    try:
        os.rename(os.path.join(tmp, name), target)
    except BaseException:
        if os.path.exists(old):
            os.rename(old, target)
        raise


def output_path(root, split, folder, file_name, taken, source):
    """root/split/folder/file_name, kept inside root, and refused if another image already goes there."""
    path = inside(root, split, folder, file_name)
    if path in taken:
        raise FRNError(f'{taken[path]} and {source} would both be written as {os.path.join(split, folder, file_name)}'
                       f': two images of one class with the same file name, so one would silently replace the '
                       f'other; the metadata is damaged or was edited (each image must be listed once)')
    taken[path] = source
    return path


def progress(iterable, total, desc):
    """A tqdm bar on a terminal, nothing in logs."""
    from tqdm import tqdm
    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, disable=not sys.stdout.isatty())


def format_summary(summary):
    """The summary for people: one line per split, then what was written."""
    lines = [f'{summary["dataset"]} from {summary["source"]}:']
    for split, entry in summary['splits'].items():
        lines.append(f'  {split:<5} {len(entry["classes"]):>4} classes {entry["images"]:>7,} images')
    lines += [f'note: {note}' for note in summary.get('notes', [])]
    lines += [f'wrote {path}' for path in summary['outputs']]
    return '\n'.join(lines)


def preparation_parser(doc, sources_help, outputs, image_formats=None, class_help=None, several=False):
    """The flags every preparation tool shares: its source(s), --dst, --overwrite, and --format / --split_file if used."""
    from runtime.command import new_parser
    parser = new_parser(doc.split('\n')[0])
    parser.add_argument('sources', nargs='+' if several else None, help=sources_help)
    parser.add_argument('--dst', required=True, help=f'folder to write {" and ".join(outputs)} in')
    parser.add_argument('--overwrite', action='store_true', help=f'replace {" and ".join(outputs)} if present')
    if image_formats:
        parser.add_argument('--format', choices=sorted(image_formats), default='png',
                            help='file format of the crops: png (lossless, as FRN writes them) or jpeg (quality 95)')
    if class_help:
        parser.add_argument('--split_file', default=None,
                            help=f'a published class split: lines "<train|val|test> <class>", the class given by '
                                 f'{class_help}; default: FRN\'s rule on the class id (train if id % 2 == 0, '
                                 f'val if id % 4 == 1, test if id % 4 == 3)')
    return parser


def report(summary, dataset):
    """Print the summary and the next command."""
    print(format_summary(summary))
    print(f'next: --dataset {dataset} --data_path {summary["outputs"][0]}')
