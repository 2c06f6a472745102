"""The private parts of Paddle this project relies on, named in one place.

Paddle offers no public way to do these, so each is reached here and nowhere else:
- a multi-process DataLoader iterator's `_workers`, `_thread` and `_try_shutdown_all(timeout)`:
  data/datamgr.py stops stuck or orphaned workers and joins the reader thread before the next fork;
- `paddle.io.dataloader.collate.default_collate_fn`: the loader's own batching, for reading in the main process;
- BatchNorm's `_mean`, `_variance` (the running statistics, by these names in state dicts too), `_momentum`
  and `_epsilon`: network/conv4.py and network/pooled_block.py compute BatchNorm's training step themselves,
  engine/parallel.py averages the statistics over ranks, deploy/official_weights.py maps PyTorch's names;
- LeakyReLU's `_negative_slope`: deploy/export.py exports LeakyReLU as max(x, slope x);
- `paddle.base.core.set_num_threads` (no public setter) and `paddle.base.core.ProgramDesc` (parses a .pdmodel).

When a Paddle release renames one, its accessor raises PaddleInternalsError naming it and this Paddle's
version, instead of a silent fallback or an AttributeError deep in a loop. tests/test_paddle_internals.py
exercises every accessor on the installed Paddle (CI runs it on 2.6.2 and on 3.x).
"""
import collections

from utils import FRNError

TESTED = '2.6.2 and 3.3.1'
BN_MEAN_KEY, BN_VARIANCE_KEY = '_mean', '_variance'  # BatchNorm's running statistics in a state dict

BatchNormInternals = collections.namedtuple('BatchNormInternals', 'mean variance momentum epsilon')


class PaddleInternalsError(FRNError):
    """This Paddle lacks a private attribute the project relies on."""


def _get(obj, name, owner, used_for):
    try:
        return getattr(obj, name)
    except AttributeError:
        import paddle
        raise PaddleInternalsError(
            f'this PaddlePaddle {paddle.__version__} has no {owner}.{name}, which frn-paddle relies on ({used_for}); '
            f'install a tested version ({TESTED}; see README "Install"), or report it') from None


# --- DataLoader iterators with workers (paddle.io.DataLoader, num_workers > 0) ---

def loader_workers(iterator):
    """The worker processes of a multi-process DataLoader iterator."""
    return _get(iterator, '_workers', 'DataLoader iterator', 'stopping its workers')


def loader_thread(iterator):
    """The iterator's reader thread, or None once it has ended."""
    return _get(iterator, '_thread', 'DataLoader iterator', 'joining its reader thread')


def shut_down_loader(iterator, timeout):
    """Ask the workers and the reader thread to stop, waiting up to `timeout` seconds for each worker."""
    _get(iterator, '_try_shutdown_all', 'DataLoader iterator', 'stopping its workers')(timeout)


def default_collate_fn(items):
    """paddle.io.DataLoader's own collate function (numpy arrays and numbers -> stacked arrays)."""
    import paddle.io.dataloader.collate as collate
    return _get(collate, 'default_collate_fn', 'paddle.io.dataloader.collate', 'batching in the main process')(items)


# --- layers ---

def batch_norm_internals(bn):
    """(running mean, running variance, momentum, epsilon) of a BatchNorm layer; the first two are its buffers."""
    used_for = 'BatchNorm computed in network/conv4.py and network/pooled_block.py'
    return BatchNormInternals(*(_get(bn, name, type(bn).__name__, used_for)
                                for name in (BN_MEAN_KEY, BN_VARIANCE_KEY, '_momentum', '_epsilon')))


def leaky_relu_slope(layer):
    """The negative slope of a paddle.nn.LeakyReLU."""
    return _get(layer, '_negative_slope', 'LeakyReLU', 'exporting it as max(x, slope x)')


# --- paddle.base.core ---

def _core_function(name, used_for):
    import paddle
    core = _get(_get(paddle, 'base', 'paddle', used_for), 'core', 'paddle.base', used_for)
    return _get(core, name, 'paddle.base.core', used_for)


def set_math_threads(n):
    """The CPU math threads (paddle has no public setter; `import paddle` pins OMP_NUM_THREADS=1 when unset)."""
    _core_function('set_num_threads', 'setting --threads')(n)


def parse_program(data):
    """Parse a .pdmodel program (bytes); raises what protobuf raises for a damaged one."""
    return _core_function('ProgramDesc', 'checking an exported .pdmodel')(data)
