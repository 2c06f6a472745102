"""The small helpers everything shares: the user-error type, atomic writes, and the confidence interval.

It imports only the standard library (numpy and paddle inside the functions that need them),
so every layer may use it.
"""
import json
import os
import tempfile


class FRNError(Exception):
    """An error the user can fix. The message names the file, flag or value and says how."""


def atomic_write(path, write):
    """Write through a temp file in the same folder, then rename: readers never see half a file."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp', dir=folder)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, 'rb') as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
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


def mean_confidence_interval(accuracies):
    """Mean and 95% confidence half-width, 1.96 * std / sqrt(n) with the population std (the usual protocol)."""
    import numpy as np
    acc = np.asarray(accuracies, dtype=np.float64)
    return float(acc.mean()), float(1.96 * acc.std() / np.sqrt(len(acc)))
