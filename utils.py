"""The small helpers everything shares: the user-error type, atomic writes, path containment, the confidence interval.

It imports only the standard library (numpy and paddle inside the functions that need them),
so every layer may use it.
"""
import errno
import json
import os
import re
import tempfile


class FRNError(Exception):
    """An error the user can fix. The message names the file, flag or value and says how."""


# atomic_write's temp files are `.<name>.<8 random characters>.tmp` beside the target
TEMP_SUFFIX = '.tmp'
TEMP_NAME = re.compile(r'^\..+\.[A-Za-z0-9_]{8}\.tmp$')


# errors of the file system itself (not, say, a network error raised while producing the content)
FILE_SYSTEM_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EISDIR, errno.ENOTDIR,
                      errno.ENOENT, errno.EEXIST, errno.EXDEV, errno.EIO, errno.EFBIG, errno.ENAMETOOLONG,
                      errno.EMFILE, errno.ENFILE}


def os_error_cause(err):
    """What went wrong with a file, in words, plus what to do for the common causes."""
    cause = err.strerror or str(err) or type(err).__name__
    fix = {errno.EACCES: 'check its permissions or write somewhere else',
           errno.EPERM: 'check its permissions or write somewhere else',
           errno.ENOSPC: 'the disk is full; free some space',
           errno.EDQUOT: 'the disk quota is used up; free some space',
           errno.EROFS: 'the file system is read-only; write somewhere else'}.get(err.errno)
    return f'{cause} ({fix})' if fix else cause


def remove_leftover_temp_files(folder):
    """Delete the temp files of atomic writes that a killed process left in `folder`; their names.

    Only call this while no other process can be writing there (under the run folder's lock).
    """
    removed = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if TEMP_NAME.match(name) and os.path.isfile(os.path.join(folder, name)):
            os.remove(os.path.join(folder, name))
            removed.append(name)
    return removed


def atomic_write(path, write):
    """Write through a temp file in the same folder, then rename: readers never see half a file."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix=TEMP_SUFFIX, dir=folder)
        os.close(fd)
        write(tmp)
        with open(tmp, 'rb') as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it the usual permissions
        os.replace(tmp, path)
    except BaseException as err:
        if tmp and os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(err, OSError) and err.errno in FILE_SYSTEM_ERRNOS:  # name the file we meant to write
            raise FRNError(f'cannot write {path!r}: {os_error_cause(err)}; nothing was changed there') from None
        raise


def atomic_save(obj, path):
    """`paddle.save` made atomic."""
    import paddle
    atomic_write(path, lambda tmp: paddle.save(obj, tmp))


def atomic_write_text(text, path):
    def write(tmp):
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(text)
    atomic_write(path, write)


def atomic_write_json(obj, path):
    atomic_write_text(json.dumps(obj, indent=2, sort_keys=False) + '\n', path)


def inside(root, *parts):
    """`root` joined with `parts`, refusing any part that would lead outside `root`.

    Names read from metadata, archives or CSVs become paths; a name such as `../../x`, `/etc`
    or an empty one must not write anywhere but under the destination. Raises FRNError naming
    the offending part.
    """
    root = os.path.abspath(os.fspath(root))
    for part in parts:
        part = os.fspath(part)
        pieces = re.split(r'[\\/]', part)
        if not part or '\0' in part or os.path.isabs(part) or '..' in pieces or all(p in ('', '.') for p in pieces):
            raise FRNError(f'the name {part!r} cannot become a file or folder name under {root}: it is empty, '
                           f'absolute or leads outside it (..); the metadata is damaged or was edited')
    path = os.path.normpath(os.path.join(root, *map(os.fspath, parts)))
    if os.path.commonpath([root, path]) != root or path == root:
        raise FRNError(f'the names {list(map(os.fspath, parts))!r} lead outside {root}; '
                       f'the metadata is damaged or was edited')
    return path


def mean_confidence_interval(accuracies):
    """Mean and 95% confidence half-width, 1.96 * std / sqrt(n) with the population std (the usual protocol)."""
    import numpy as np
    acc = np.asarray(accuracies, dtype=np.float64)
    return float(acc.mean()), float(1.96 * acc.std() / np.sqrt(len(acc)))
