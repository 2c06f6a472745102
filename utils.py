"""Small shared helpers: the user-error type, atomic writes, model loading, threads.

This module sits below `data/`, `network/` and `methods/`: it imports only the
standard library, numpy and paddle, so every layer may use it.
"""
import functools
import json
import os
import sys
import tempfile
import warnings

# `import paddle` warns about a missing C++ compiler cache, which only matters for building
# custom operators, and BatchNorm warns on every training forward that it tracks running
# statistics, which is what we want. Import this module before paddle to keep stderr clean.
warnings.filterwarnings('ignore', message='No ccache found', category=UserWarning)
warnings.filterwarnings('ignore', message='When training, we now always track global mean', category=UserWarning)


def amd_cpu_with_avx2():
    """True on Linux with an AMD CPU that has AVX2 and FMA (read from /proc/cpuinfo)."""
    try:
        with open('/proc/cpuinfo') as f:
            info = f.read(65536)
    except OSError:
        return False
    flags = next((line.split(':', 1)[1].split() for line in info.splitlines() if line.startswith('flags')), [])
    return 'AuthenticAMD' in info and 'avx2' in flags and 'fma' in flags


# The MKL inside Paddle's CPU wheel picks its slow generic kernels on AMD CPUs unless told that the
# CPU has AVX2: ResNet-12 steps run 2.0-2.2x faster with this (benchmarks/RESULTS.md). It is read when
# MKL first runs, so it is set here, before paddle does any math. Only the summation order changes.
# A value the user set wins; FRN_MKL_AVX2=0 turns this off.
MKL_AVX2_SET_HERE = ('MKL_DEBUG_CPU_TYPE' not in os.environ and os.environ.get('FRN_MKL_AVX2', '1') != '0'
                     and amd_cpu_with_avx2())
if MKL_AVX2_SET_HERE:
    os.environ['MKL_DEBUG_CPU_TYPE'] = '5'


def mkl_note():
    """How MKL is set up, for the log header."""
    if MKL_AVX2_SET_HERE:
        return ' | MKL AVX2 kernels on this AMD CPU (MKL_DEBUG_CPU_TYPE=5; FRN_MKL_AVX2=0 turns it off)'
    if 'MKL_DEBUG_CPU_TYPE' in os.environ:
        return f' | MKL_DEBUG_CPU_TYPE={os.environ["MKL_DEBUG_CPU_TYPE"]} (set by you)'
    return ''


class FRNError(Exception):
    """An error the user can fix. The message names the file, flag or value and says how."""


def cli_main(main):
    """Run `main()` as a command: an FRNError becomes one line on stderr and exit code 2."""
    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except FRNError as err:
            print(f'error: {err}', file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print('interrupted', file=sys.stderr)
            sys.exit(130)
    return wrapper


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


def set_threads(n):
    """Set the CPU math threads. `import paddle` pins OMP_NUM_THREADS=1 when it is unset."""
    import paddle
    n = max(1, int(n))
    paddle.base.core.set_num_threads(n)
    return n


def default_threads():
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)


def read_state_dict(path):
    """Load a `.pdparams` file as a dict of tensors, with a clear error when it cannot be read."""
    import paddle
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FRNError(f'checkpoint {path!r} does not exist; check the path '
                       f'(pretraining writes ./checkpoints/<dataset>/<model>_stl_frn_pretrain/best_model.pdparams)')
    if path.endswith(('.pth', '.pt', '.tar')):
        raise FRNError(f'{path!r} looks like a PyTorch checkpoint; convert it first with '
                       f'`python tools/convert_official_weights.py --src {path} --dst model.pdparams`')
    try:
        state = paddle.load(path)
    except Exception as err:  # paddle raises many types for a corrupt or foreign file
        raise FRNError(f'cannot read checkpoint {path!r} ({type(err).__name__}: {err}); '
                       f'it must be a .pdparams file written by this project or by paddle.save') from None
    if not isinstance(state, dict) or not state:
        raise FRNError(f'checkpoint {path!r} holds no parameters; it must be a state dict saved with paddle.save')
    return state


def load_model(model, path, required_prefix='feature_extractor.'):
    """Load `path` into `model`, keeping what fits.

    Keys the model does not have (such as `cat_mat` when a pretrained model starts
    meta-training) are dropped; head parameters the file lacks keep their initial
    values. A backbone parameter that is missing or has the wrong shape means the
    checkpoint belongs to another model, which is an error.
    Returns (dropped, missing) key lists so callers can report them.
    """
    state = read_state_dict(path)
    own = model.state_dict()
    dropped = sorted(k for k in state if k not in own)
    missing = sorted(k for k in own if k not in state)
    wrong_shape = sorted(k for k in state if k in own and list(state[k].shape) != list(own[k].shape))
    bad_backbone = [k for k in missing if k.startswith(required_prefix)]
    if wrong_shape or bad_backbone:
        detail = []
        if wrong_shape:
            k = wrong_shape[0]
            detail.append(f'{len(wrong_shape)} parameter(s) have the wrong shape, e.g. {k}: '
                          f'file {list(state[k].shape)} vs model {list(own[k].shape)}')
        if bad_backbone:
            detail.append(f'{len(bad_backbone)} backbone parameter(s) are missing, e.g. {bad_backbone[0]}')
        raise FRNError(f'checkpoint {os.fspath(path)!r} does not match this model: {"; ".join(detail)}. '
                       f'Check --model (ResNet12 or Conv4) and --image_size against the run that wrote it.')
    # cast to the model's dtype, so a float32 file fills a float64 model (and the reverse)
    model.set_state_dict({k: v.astype(own[k].dtype) if v.dtype != own[k].dtype else v
                          for k, v in state.items() if k in own})
    return dropped, missing


def select_device(gpu):
    """'gpu' when asked for and this PaddlePaddle build can use CUDA, else 'cpu' (with one warning)."""
    import paddle
    if gpu:
        if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
            return paddle.device.set_device('gpu')
        print('warning: --gpu was given, but this PaddlePaddle build has no CUDA device; running on the CPU. '
              'Install paddlepaddle-gpu (see README) to use a GPU.', file=sys.stderr)
    return paddle.device.set_device('cpu')


def mean_confidence_interval(accuracies):
    """Mean and 95% confidence half-width, 1.96 * std / sqrt(n) with the population std (the usual protocol)."""
    import numpy as np
    acc = np.asarray(accuracies, dtype=np.float64)
    return float(acc.mean()), float(1.96 * acc.std() / np.sqrt(len(acc)))


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
