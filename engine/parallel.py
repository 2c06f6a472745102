"""Data-parallel training with paddle.distributed: rank, world size and the few collectives we need.

Launch any training script with `python -m paddle.distributed.launch --nproc_per_node N script.py ...`
(GPUs: `--gpus 0,1,2,3`; several machines: `--ips ip1,ip2`). A single process (no launcher)
runs exactly as before: every function here is then a no-op.
"""
import hashlib

import numpy as np
import paddle
import paddle.distributed as dist

from network import rank_split
from runtime.paddle_internals import batch_norm_internals
from utils import FRNError


def world_size():
    return dist.get_world_size()


def rank():
    return dist.get_rank()


def is_main():
    return rank() == 0


def init():
    """Join the process group when launched with several processes (NCCL on GPUs, gloo on CPUs)."""
    if world_size() > 1 and not dist.is_initialized():
        dist.init_parallel_env()
    return rank(), world_size()


def share_batches():
    """With several ranks, have them share each batch (network/rank_split.py); returns whether they do."""
    if world_size() == 1:
        return False
    rank_split.enable(rank(), world_size())
    return True


def start_sharing(images, batch, unsplittable, log):
    """--share_batches at the start of a run: share each `batch` ('episode' or 'batch') of `images` images
    among the ranks, or log that one process has nothing to share; `unsplittable` is the error's text
    when the images do not split equally."""
    if world_size() == 1:
        log('--share_batches: one process, so nothing to share (start the run with paddle.distributed.launch)')
        return
    if images % world_size():
        raise FRNError(f'--share_batches: {unsplittable}')
    share_batches()
    log(f'--share_batches: each of the {world_size()} processes embeds {images // world_size()} images of every '
        f'{batch}')


def shares_batches():
    return rank_split.ranks() > 1


def data_rank():
    """(rank, world size) for the loaders: every rank loads every batch when the ranks share them."""
    return (0, 1) if shares_batches() else (rank(), world_size())


def wrap(layer):
    """`layer` ready for the ranks: paddle.DataParallel (gradients averaged during the backward) when each
    rank has batches of its own; with shared batches, rank 0's weights and buffers copied to every rank
    and the gradients averaged by `after_backward`."""
    if world_size() == 1:
        return layer
    if not shares_batches():
        return paddle.DataParallel(layer)
    with paddle.no_grad():
        for value in layer.state_dict().values():
            dist.broadcast(value, src=0)
    return layer


def after_backward(model):
    """The gradient exchange of the shared-batch mode (nothing otherwise: DataParallel did it)."""
    if shares_batches():
        average_gradients(model)


def mean_over_ranks(values):
    """Element-wise mean of a list of floats over all ranks (the same list everywhere)."""
    if world_size() == 1:
        return list(values)
    t = paddle.to_tensor(np.asarray(values, dtype=np.float64))
    dist.all_reduce(t)
    return list(t.numpy() / world_size())


def average_buffers(model):
    """Replace BatchNorm running statistics by their mean over ranks.

    Each rank normalises its own share of the batch, so its running statistics drift
    apart from the others'; averaging them (every epoch) keeps the ranks identical and
    uses every rank's data.
    """
    if world_size() == 1:
        return
    for layer in model.sublayers():
        if isinstance(layer, (paddle.nn.BatchNorm1D, paddle.nn.BatchNorm2D, paddle.nn.BatchNorm3D)):
            for stat in batch_norm_internals(layer)[:2]:  # the running mean and variance
                total = stat.detach().clone()
                dist.all_reduce(total)
                stat.set_value(total / world_size())


def gather_objects(obj):
    """[obj of rank 0, obj of rank 1, ...] on every rank."""
    if world_size() == 1:
        return [obj]
    out = []
    dist.all_gather_object(out, obj)
    return out


def fingerprint(model):
    """A short hash of every parameter and buffer, to check that ranks hold the same model."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(value.numpy()).tobytes())
    return digest.hexdigest()[:16]


def average_gradients(model):
    """Replace every parameter's gradient by its mean over the ranks, in one exchange.

    The shared-batch mode (network/rank_split.py) averages here, after the backward, instead of
    through paddle.DataParallel: its BatchNorm exchanges statistics inside the backward, and the
    two must not interleave differently on different ranks.
    """
    if world_size() == 1:
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    flat = paddle.concat([paddle.reshape(g, [-1]) for g in grads])
    dist.all_reduce(flat)
    flat = flat / world_size()
    start = 0
    for g in grads:
        size = int(np.prod(g.shape))
        g.set_value(paddle.reshape(flat[start:start + size], g.shape))
        start += size
