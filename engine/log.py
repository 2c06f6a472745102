"""What a run shows people: a console-and-file logger and progress bars."""
import os
import sys


class Logger:
    """Print to the console and append the same line to a log file (flushed at once, so a crash keeps it).

    deferred=True keeps the file unwritten, the lines in memory, until `persist()`: a script
    calls it once its inputs are checked, so a wrong flag leaves no log behind.
    """

    def __init__(self, path=None, deferred=False):
        self.path = path
        self.pending = [] if deferred else None
        if path and not deferred:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def persist(self):
        """Write the lines so far to the file, and every later line as it comes."""
        if self.pending is None:
            return
        lines, self.pending = self.pending, None
        if self.path:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            with open(self.path, 'a', encoding='utf-8') as f:
                f.writelines(f'{line}\n' for line in lines)

    def __call__(self, message=''):
        from tqdm import tqdm
        tqdm.write(str(message))  # keeps an open progress bar intact
        sys.stdout.flush()
        if self.pending is not None:
            self.pending.append(message)
        elif self.path:
            with open(self.path, 'a', encoding='utf-8') as f:
                f.write(f'{message}\n')


def progress(iterable, desc=None, total=None):
    """A tqdm bar on a terminal; nothing when output goes to a file, so logs stay clean."""
    from tqdm import tqdm
    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True, disable=not sys.stdout.isatty())
