"""What a run shows people: a console-and-file logger and progress bars."""
import os
import sys


class Logger:
    """Print to the console and append the same line to a log file (flushed at once, so a crash keeps it)."""

    def __init__(self, path=None):
        self.path = path
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def __call__(self, message=''):
        from tqdm import tqdm
        tqdm.write(str(message))  # keeps an open progress bar intact
        sys.stdout.flush()
        if self.path:
            with open(self.path, 'a', encoding='utf-8') as f:
                f.write(f'{message}\n')


def progress(iterable, desc=None, total=None):
    """A tqdm bar on a terminal; nothing when output goes to a file, so logs stay clean."""
    from tqdm import tqdm
    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True, disable=not sys.stdout.isatty())
