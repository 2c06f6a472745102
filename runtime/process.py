"""The process set-up every entry point makes before any work: `setup_process()`.

`runtime.command.cli_main` calls it before the command's `main`; benchmarks and other programs
that use the library without `cli_main` call it themselves, first. It must come before paddle
is imported and before paddle does any math, for three reasons:
- `import paddle` warns about a missing C++ compiler cache (which matters only for building
  custom operators); the filter must be in place before the import;
- MKL reads MKL_DEBUG_CPU_TYPE when it first runs, at paddle's first product;
- glibc's malloc options apply to the allocations made after them.
So an entry point imports at module level only what does not import paddle (`cli`, `runtime`,
`utils`), and the rest inside its `main` (tests/test_process.py checks every one).
"""
import collections
import os
import signal
import sys
import threading
import warnings

ProcessSetup = collections.namedtuple('ProcessSetup', 'mkl_avx2_set malloc_kept')
_done = None  # the ProcessSetup once setup_process has run


def setup_process():
    """Quiet paddle's two irrelevant warnings, steer MKL on AMD CPUs, keep freed memory for reuse, catch SIGTERM.

    Runs once per process (later calls return the first result).
    """
    global _done
    if _done is None:
        # BatchNorm warns on every training forward that it tracks running statistics, which is what we want
        warnings.filterwarnings('ignore', message='No ccache found', category=UserWarning)
        warnings.filterwarnings('ignore', message='When training, we now always track global mean',
                                category=UserWarning)
        _done = ProcessSetup(steer_mkl_to_avx2(), keep_freed_memory())
    catch_sigterm()
    return _done


def amd_cpu_with_avx2():
    """True on Linux with an AMD CPU that has AVX2 and FMA (read from /proc/cpuinfo)."""
    try:
        with open('/proc/cpuinfo') as f:
            info = f.read(65536)
    except OSError:
        return False
    flags = next((line.split(':', 1)[1].split() for line in info.splitlines() if line.startswith('flags')), [])
    return 'AuthenticAMD' in info and 'avx2' in flags and 'fma' in flags


def steer_mkl_to_avx2():
    """Tell the MKL inside Paddle's CPU wheel that this AMD CPU has AVX2; returns whether it was set here.

    MKL picks its slow generic kernels on AMD CPUs unless told (the speed-up is in
    benchmarks/RESULTS.md); only the summation order changes. A value the user set wins;
    FRN_MKL_AVX2=0 turns this off.
    """
    if 'MKL_DEBUG_CPU_TYPE' in os.environ or os.environ.get('FRN_MKL_AVX2', '1') == '0' or not amd_cpu_with_avx2():
        return False
    os.environ['MKL_DEBUG_CPU_TYPE'] = '5'
    return True


def keep_freed_memory():
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it to the kernel.

    A training step allocates and frees the same large buffers (activations of hundreds of MB)
    every time; glibc serves each from a fresh mmap and unmaps it when freed, so every step
    faults its working set in again, page by page. Serving them from the heap and never
    trimming it makes later steps reuse the pages; the resident size stays at the peak of a
    step. Only the memory layout changes, never a number. glibc only (mallopt); FRN_MALLOC_KEEP=0
    turns it off. Returns whether it was applied.
    """
    if os.environ.get('FRN_MALLOC_KEEP', '1') == '0' or not sys.platform.startswith('linux'):
        return False
    import ctypes
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # present in glibc only
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # from glibc's malloc.h
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))


def mkl_note():
    """What setup_process did to memory and MKL, for the log header ('' when nothing)."""
    done = _done or ProcessSetup(False, False)
    note = ' | freed memory kept for reuse (FRN_MALLOC_KEEP=0 turns it off)' if done.malloc_kept else ''
    if done.mkl_avx2_set:
        return note + ' | MKL AVX2 kernels on this AMD CPU (MKL_DEBUG_CPU_TYPE=5; FRN_MKL_AVX2=0 turns it off)'
    if 'MKL_DEBUG_CPU_TYPE' in os.environ:
        return note + f' | MKL_DEBUG_CPU_TYPE={os.environ["MKL_DEBUG_CPU_TYPE"]} (set by you)'
    return note


class Terminated(BaseException):
    """SIGTERM (sent by timeout, Docker, Kubernetes, Slurm), raised in the main thread like KeyboardInterrupt."""


_sigterm_received = False


def _raise_terminated(signum, frame):
    global _sigterm_received
    _sigterm_received = True
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the clean-up short
    raise Terminated()


def sigterm_received():
    """Whether SIGTERM came. Raised inside Python code that paddle's C++ runs (a PyLayer's backward), `Terminated`
    reaches the caller wrapped in paddle's own error; this tells that error apart from a real one."""
    return _sigterm_received


def catch_sigterm():
    """Turn SIGTERM into `Terminated`; called again once paddle is imported, which installs its own handler."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)
