"""Data managers: build the paddle.io.DataLoader for pretraining batches or episodes.

Names follow the CloserLook/DeepBDC lineage (`SimpleDataManager`, `SetDataManager`).
Loaders have a `set_epoch(epoch)` method; call it before each epoch.
"""
import os
import signal
import threading

import numpy as np
import paddle

from data.dataset import EpisodicBatchSampler, PassEpisodeSampler, SetDataset, ShuffleBatchSampler, SimpleDataset
from data.forking import collected_and_frozen
from data.transforms import get_transform
from runtime.paddle_internals import (default_collate_fn, loader_thread, loader_workers,
                                       shut_down_loader)
from utils import FRNError

# What paddle's DataLoader workers do (paddle 3.3.1, measured; see docs/performance.md, "Data loading workers"):
# - `timeout` is only how often the loader checks that its workers are alive: a dead worker
#   (killed, out of memory) is noticed at the next check, but a stuck worker is waited for forever.
# - Shared memory carries batches from the workers faster than pipes, but when /dev/shm is small
#   (Docker's default is 64 MB) the workers die with a bus error.
# - The loader's reader thread waits on its queue for up to `timeout` at a time, also after the
#   last batch, so stopping it at the end of an epoch takes up to one check interval.
# So: a short check interval, our own limit on the wait for a batch, and shared memory only
# with room to spare.
WORKER_POLL_SECONDS = 1    # the loader's check interval: a dead worker or a finished epoch is seen this soon
WORKER_CHECK_SECONDS = 10  # how long a stopping worker or reader thread is waited for
WORKER_STALL_SECONDS = 600
SHARED_MEMORY_MIN_FREE = 2 * 2**30


def shared_memory_is_roomy(path='/dev/shm'):
    try:
        st = os.statvfs(path)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize >= SHARED_MEMORY_MIN_FREE


class EpochLoader:
    """A DataLoader plus its sampler, so the epoch can be set; worker failures become clear errors, not hangs."""

    def __init__(self, dataset, batch_sampler, num_workers):
        self.dataset, self.batch_sampler, self.num_workers = dataset, batch_sampler, num_workers
        self.use_shared_memory = num_workers > 0 and shared_memory_is_roomy()
        self.loader = paddle.io.DataLoader(
            _FailuresAsBatches(dataset), batch_sampler=batch_sampler, num_workers=num_workers, return_list=True,
            collate_fn=_collate_or_report, use_shared_memory=self.use_shared_memory,
            timeout=WORKER_POLL_SECONDS if num_workers > 0 else 0)

    def set_epoch(self, epoch):
        self.batch_sampler.set_epoch(epoch)

    def __len__(self):
        return len(self.batch_sampler)

    def describe_epoch(self):
        """A line on the current epoch's batches when the sampler has one to say (a pass's episode count), else None."""
        describe = getattr(self.batch_sampler, 'describe_epoch', None)
        return describe() if describe else None

    def __iter__(self):
        if self.num_workers == 0:
            yield from self._main_process_batches()
            return
        iterator = _fork_workers(self.loader)
        try:
            with _StallWatch(iterator) as watch:
                while True:
                    watch.arm()
                    try:
                        batch = next(iterator)
                    except StopIteration:
                        return
                    except (RuntimeError, SystemError, OSError):
                        raise FRNError(watch.explain(self.num_workers)) from None
                    finally:
                        watch.disarm()
                    if isinstance(batch, dict):
                        raise FRNError(batch[FAILURE])
                    yield batch
        finally:
            _stop_workers(iterator)

    def _main_process_batches(self):
        """The batches read here, not in paddle's loader thread.

        With num_workers=0, paddle 3.3.1 reads batches in a thread; an exception there (an
        unreadable image's FRNError) ends the thread without closing its queue, and the main
        thread waits for the next batch forever. Reading in the main process makes the error
        surface where it happened. The batches are the loader's: the same collate function,
        then tensors on the current device.
        """
        for keys in self.batch_sampler:
            fields = default_collate_fn([self.dataset[key] for key in keys])
            yield [paddle.to_tensor(field) for field in fields]


# A worker's exception would reach the main process through paddle's reader thread, which
# re-raises it and dies; the main thread then sees only "Blocking queue is killed", and
# whether the original can still be caught there depends on timing. So a worker never raises:
# an item it cannot read becomes a batch {FAILURE: message}, which travels like any batch, in
# order, and is raised in the main process.
FAILURE = 'data loading failure'


class _Failure:
    def __init__(self, message):
        self.message = message


class _FailuresAsBatches(paddle.io.Dataset):
    """The dataset as the workers read it: an exception is returned as a _Failure, not raised."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        try:
            return self.dataset[key]
        except FRNError as err:
            return _Failure(str(err))
        except Exception as err:  # a bug, not bad data
            return _unexpected(err)


def _unexpected(err):
    return _Failure(f'a data loading worker raised {type(err).__name__}: {err}; for the full traceback, '
                    f'rerun with --num_workers 0 to load in the main process')


def _collate_or_report(items):
    failure = next((item for item in items if isinstance(item, _Failure)), None)
    if failure is None:
        try:
            return default_collate_fn(items)
        except Exception as err:
            failure = _unexpected(err)
    # paddle keeps strings in the batch's structure; a batch needs one array to travel
    return {FAILURE: failure.message, 'placeholder': np.zeros(1, dtype=np.int64)}


def _fork_workers(loader):
    """iter(loader), which forks the workers, without garbage that the workers could free (data/forking.py)."""
    with collected_and_frozen():
        return iter(loader)


def _stop_workers(iterator):
    """Stop the workers and paddle's reader thread now, also after an error or an early exit.

    Left waiting, workers keep the interpreter from exiting while anything still refers to the
    iterator. Paddle waits for each worker to exit for as long as it takes unless given a
    time; a worker still there after WORKER_CHECK_SECONDS is killed.

    The reader thread is waited for too, so that no thread of this loader still runs when the
    next one forks: a forked child drops the threads it did not inherit running, perhaps with
    them the last reference to this iterator, and would then free paddle objects that a parent
    thread may be using (the hang data/forking.py describes).
    """
    shut_down_loader(iterator, WORKER_CHECK_SECONDS)
    for worker in loader_workers(iterator):
        if worker.is_alive():
            os.kill(worker.pid, signal.SIGKILL)
            worker.join()
    thread = loader_thread(iterator)
    if thread is not None and thread is not threading.current_thread():
        thread.join(WORKER_CHECK_SECONDS)


class _StallWatch:
    """Kills the workers when a batch takes longer than WORKER_STALL_SECONDS (a stuck worker),
    which paddle then notices and reports; explains what a failed read of a batch means."""

    def __init__(self, iterator):
        self.iterator, self.stalled, self.timer = iterator, False, None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.disarm()

    def arm(self):
        self.timer = threading.Timer(WORKER_STALL_SECONDS, self._stall)
        self.timer.daemon = True
        self.timer.start()

    def disarm(self):
        if self.timer:
            self.timer.cancel()

    def _stall(self):
        self.stalled = True
        for worker in loader_workers(self.iterator):
            if worker.is_alive():
                os.kill(worker.pid, signal.SIGKILL)

    def explain(self, num_workers):
        fix = 'rerun with --num_workers 0 to load in the main process'
        if self.stalled:
            return (f'no batch came from the {num_workers} data loading workers in {WORKER_STALL_SECONDS} s, '
                    f'so they were stopped: a worker is stuck (for example on a hung network file system); {fix}')
        return (f'a data loading worker died: it was killed, or ran out of memory, or /dev/shm is full '
                f'(with shared memory); lower --num_workers, or {fix}')


def image_batches(split, transform, batches, num_workers=0):
    """(images, labels) of `split` for the given batches of positions, in order (the feature cache reads so)."""
    return EpochLoader(SimpleDataset(split, transform), batches, num_workers)


def split_transform(split, image_size, aug, dataset, train_type=0, eval_resize='shorter'):
    """The dataset's transform, minus the steps an image cache already did (`CachedSplit.prepared`)."""
    return get_transform(image_size, aug, dataset, prepared=getattr(split, 'prepared', None), train_type=train_type,
                         eval_resize=eval_resize)


def check_num_workers(num_workers):
    if num_workers < 0:
        raise FRNError(f'--num_workers must be 0 or more, not {num_workers}')
    return num_workers


class SimpleDataManager:
    """Shuffled (image, label) batches for pretraining; `batch_size` is the global batch over `world_size` ranks."""

    def __init__(self, image_size, batch_size, num_workers=0, seed=0, dataset='mini_imagenet', rank=0, world_size=1,
                 train_type=0, eval_resize='shorter'):
        self.image_size, self.batch_size, self.seed, self.dataset = image_size, batch_size, seed, dataset
        self.transforms = {'train_type': train_type, 'eval_resize': eval_resize}
        self.num_workers = check_num_workers(num_workers)
        self.rank, self.world_size = rank, world_size

    def get_data_loader(self, split, aug, shuffle=True, drop_last=True):
        dataset = SimpleDataset(split, split_transform(split, self.image_size, aug, self.dataset, **self.transforms))
        sampler = ShuffleBatchSampler(len(dataset), self.batch_size, shuffle=shuffle, drop_last=drop_last,
                                      seed=self.seed, rank=self.rank, world_size=self.world_size)
        return EpochLoader(dataset, sampler, self.num_workers)


EPISODE_SAMPLERS = ('random', 'pass')


class SetDataManager:
    """Few-shot episodes: [n_way, n_support + n_query, 3, H, W] image batches.

    episodes='random': `n_episode` independent random episodes per epoch (EpisodicBatchSampler);
    'pass': the official training sampler, one pass over the images per epoch (PassEpisodeSampler;
    `n_episode` is not used). With `world_size` ranks, each rank gets its share of the episodes.
    """

    def __init__(self, image_size, n_way, n_support, n_query, n_episode, num_workers=0, seed=0,
                 dataset='mini_imagenet', rank=0, world_size=1, train_type=0, eval_resize='shorter',
                 episodes='random'):
        if episodes not in EPISODE_SAMPLERS:
            raise ValueError(f'unknown episode sampler {episodes!r}; choose one of {EPISODE_SAMPLERS}')
        self.image_size, self.n_way, self.n_support, self.n_query = image_size, n_way, n_support, n_query
        self.transforms = {'train_type': train_type, 'eval_resize': eval_resize}
        self.n_episode, self.seed, self.dataset, self.episodes = n_episode, seed, dataset, episodes
        self.num_workers = check_num_workers(num_workers)
        self.rank, self.world_size = rank, world_size

    def get_data_loader(self, split, aug):
        dataset = SetDataset(split, split_transform(split, self.image_size, aug, self.dataset, **self.transforms))
        if self.episodes == 'pass':
            sampler = PassEpisodeSampler(self.n_way, self.n_support, self.n_query, dataset.class_sizes,
                                         seed=self.seed, rank=self.rank, world_size=self.world_size)
        else:
            sampler = EpisodicBatchSampler(split.n_classes, self.n_way, self.n_episode,
                                           self.n_support + self.n_query, dataset.class_sizes, seed=self.seed,
                                           rank=self.rank, world_size=self.world_size)
        return EpochLoader(dataset, sampler, self.num_workers)
