"""DataLoader workers: the same batches as without them, and every way a worker can fail is a clear error, not a hang."""
import gc
import os
import signal
import time

import numpy as np
import paddle
import pytest

import data.datamgr as datamgr
import data.image_cache as image_cache
from data.datamgr import EpochLoader, shared_memory_is_roomy
from data.filelist import read_split
from utils import FRNError

BATCHES = [list(range(s, s + 8)) for s in range(0, 64, 8)]


class Items(paddle.io.Dataset):
    """Item i is an image-sized array filled with i; item 21 misbehaves as told."""

    def __init__(self, fault=None):
        self.fault = fault

    def __len__(self):
        return 64

    def __getitem__(self, i):
        if i == 21 and self.fault == 'frn_error':
            raise FRNError('image x.jpg does not exist; regenerate the file list')
        if i == 21 and self.fault == 'bug':
            raise ZeroDivisionError('division by zero')
        if i == 21 and self.fault == 'killed':
            os.kill(os.getpid(), signal.SIGKILL)
        if i == 21 and self.fault == 'stuck':
            time.sleep(3600)
        return np.full((3, 84, 84), i, dtype=np.float32), np.int64(i)


def load_all(fault=None, num_workers=2):
    return [(x.numpy(), y.numpy()) for x, y in EpochLoader(Items(fault), BATCHES, num_workers)]


@pytest.mark.parametrize('free_shared_memory_needed', [0, 2**62])
def test_workers_give_the_batches_of_the_main_process_with_or_without_shared_memory(monkeypatch,
                                                                                     free_shared_memory_needed):
    monkeypatch.setattr(datamgr, 'SHARED_MEMORY_MIN_FREE', free_shared_memory_needed)
    assert EpochLoader(Items(), BATCHES, 2).use_shared_memory == (free_shared_memory_needed == 0)
    for (x0, y0), (x2, y2) in zip(load_all(num_workers=0), load_all(num_workers=2)):
        np.testing.assert_array_equal(x0, x2)
        np.testing.assert_array_equal(y0, y2)


def test_shared_memory_is_off_without_a_roomy_dev_shm(tmp_path):
    assert not shared_memory_is_roomy(str(tmp_path / 'nowhere'))
    assert not EpochLoader(Items(), BATCHES, 0).use_shared_memory  # and never asked for without workers


def test_a_workers_frn_error_arrives_with_its_own_message():
    with pytest.raises(FRNError, match='^image x.jpg does not exist; regenerate the file list$'):
        load_all('frn_error')


@pytest.mark.slow
def test_a_workers_error_comes_in_order_after_the_batches_before_it():
    """Item 21 is in the third batch: the two before it are given, then its error, every time."""
    for _ in range(5):
        given = []
        with pytest.raises(FRNError, match='^image x.jpg does not exist'):
            for x, _ in EpochLoader(Items('frn_error'), BATCHES, 2):
                given.append(int(x[0, 0, 0, 0]))
        assert given == [0, 8]


def test_a_workers_bug_names_the_exception_and_how_to_see_the_traceback():
    with pytest.raises(FRNError, match='raised ZeroDivisionError: division by zero.*--num_workers 0'):
        load_all('bug')


def test_a_killed_worker_is_an_error_within_the_check_interval(monkeypatch):
    monkeypatch.setattr(datamgr, 'WORKER_CHECK_SECONDS', 1)
    start = time.time()
    with pytest.raises(FRNError, match='worker died.*lower --num_workers'):
        load_all('killed')
    assert time.time() - start < 60


@pytest.mark.slow
def test_a_stuck_worker_is_stopped_with_an_error(monkeypatch):
    monkeypatch.setattr(datamgr, 'WORKER_CHECK_SECONDS', 1)
    monkeypatch.setattr(datamgr, 'WORKER_STALL_SECONDS', 3)
    with pytest.raises(FRNError, match='no batch came from the 2 data loading workers in 3 s.*stuck'):
        load_all('stuck')



class Garbage:
    """A reference cycle that records, in `path`, the pid of the process that collects it."""

    def __init__(self, path):
        self.path, self.me = path, self

    def __del__(self):
        with open(self.path, 'a') as f:
            f.write(f'{os.getpid()}\n')


def collectors(path):
    return set(int(line) for line in open(path)) if os.path.exists(path) else set()


class CollectingItems(Items):
    """Items whose every read runs the garbage collector, as an allocation in a worker may."""

    def __getitem__(self, i):
        gc.collect()
        return super().__getitem__(i)


def test_workers_never_collect_the_garbage_they_inherit(tmp_path):
    """A child that collects a parent's garbage can free paddle objects in use by a parent thread, and
    hang (data/forking.py). The garbage left at the fork must be the parent's to collect."""
    record = tmp_path / 'collected_by'
    gc.disable()  # keep the cycle until someone collects explicitly
    try:
        Garbage(str(record))
        assert len(list(EpochLoader(CollectingItems(), BATCHES, 2))) == len(BATCHES)
    finally:
        gc.enable()
        gc.collect()
    assert collectors(record) == {os.getpid()}


def test_the_image_cache_pool_workers_are_not_forks_of_this_process(tiny_mini, tmp_path):
    """This process runs paddle's threads; the cache's workers start from a fork server, so they inherit
    none of its locks or garbage (data/forking.py), and build the same cache as one process."""
    with image_cache.worker_pool(2) as pool:
        parents = {result.get(timeout=60) for result in [pool.apply_async(os.getppid) for _ in range(8)]}
    assert os.getpid() not in parents and len(parents) == 1
    split = read_split(str(tiny_mini), 'val')
    serial = image_cache.open_cache(split, str(tmp_path / 'serial'), 'val', 32, log=lambda m: None)
    pooled = image_cache.open_cache(split, str(tmp_path / 'pooled'), 'val', 32, num_workers=2, log=lambda m: None)
    assert len(serial) == len(pooled) == len(split)
    for i in range(len(split)):
        np.testing.assert_array_equal(serial.pixels(i), pooled.pixels(i))


def test_an_epoch_with_workers_ends_within_a_check_interval():
    """Paddle's reader thread waits on its queue one check interval at a time, also after the last batch;
    stopping it must not cost WORKER_CHECK_SECONDS (the wait for a stuck worker) at every epoch's end."""
    loader = EpochLoader(Items(), BATCHES, 2)
    assert len(list(loader)) == len(BATCHES)  # the workers are up: the next epoch times only its own batches
    start = time.time()
    assert len(list(loader)) == len(BATCHES)
    assert time.time() - start < datamgr.WORKER_CHECK_SECONDS / 2
