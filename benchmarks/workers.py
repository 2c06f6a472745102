"""What the step benchmarks share: worker processes driven over stdin/stdout, and the statistics of their steps.

Imports neither paddle nor torch, so that a torch worker can run a benchmark file without Paddle
steering its MKL (runtime/process.py), and the tests can check the formatting without either.
"""
import json
import os
import platform
import resource
import subprocess
import tempfile

MARK = '@@bench '  # replies start with this; anything else a library prints is skipped


def reply(obj):
    print(MARK + json.dumps(obj), flush=True)


def peak_rss_mb():
    """This process's peak RSS. VmHWM, because ru_maxrss keeps the parent's RSS at the fork (Linux)."""
    try:
        with open('/proc/self/status') as f:
            return next(int(line.split()[1]) for line in f if line.startswith('VmHWM')) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_model():
    """The CPU's model name, for the header of a results file."""
    try:
        with open('/proc/cpuinfo') as f:
            return next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def median(values):
    values = sorted(values)
    n = len(values)
    return (values[n // 2] + values[(n - 1) // 2]) / 2


def summary(seconds, rss_mb=None, error=None):
    """A row's cell: median, min and max of the timed steps, peak RSS, and the error that stopped the worker."""
    return {'median': median(seconds) if seconds else None, 'min': min(seconds) if seconds else None,
            'max': max(seconds) if seconds else None, 'steps': len(seconds), 'rss_mb': rss_mb, 'error': error}


def ratio(official, ours):
    """official / ours of two summaries (above 1: ours is faster), or None when either has no time."""
    return official['median'] / ours['median'] if official['median'] and ours['median'] else None


class Worker:
    """A benchmark process: it replies MARK lines; its stderr goes to a file (a pipe nobody reads would fill
    up with progress bars and block it), whose last line is the error when it stops."""

    def __init__(self, command, cwd, env=None):
        self.stderr = tempfile.TemporaryFile(mode='w+')
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                     text=True, cwd=cwd, env=env)
        self.ready = self.ask(None)  # the first reply: the worker is set up

    def ask(self, command):
        """Send a command line (None: just wait) and return the next reply; RuntimeError when the process stops."""
        try:
            if command:
                self.proc.stdin.write(command + '\n')
                self.proc.stdin.flush()
            while True:
                line = self.proc.stdout.readline()
                if not line:
                    break
                if line.startswith(MARK):
                    return json.loads(line[len(MARK):])
        except BrokenPipeError:
            pass
        code = self.proc.wait()
        self.stderr.seek(0)
        lines = [line.strip() for line in self.stderr.read().splitlines() if line.strip()]
        self.stderr.close()
        raise RuntimeError(f'exit code {code}: {lines[-1] if lines else "no message"}')

    def close(self):
        """Ask for the peak RSS, then end the process."""
        rss = self.ask('rss')['rss_mb']
        self.proc.stdin.close()
        self.proc.wait()
        self.stderr.close()
        return rss


def clean_env(**changes):
    """os.environ with `changes` applied (a value of None removes the variable)."""
    env = dict(os.environ)
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env
