"""Data managers: build the paddle.io.DataLoader for pretraining batches or episodes.

Names follow the CloserLook/DeepBDC lineage (`SimpleDataManager`, `SetDataManager`).
Loaders have a `set_epoch(epoch)` method; call it before each epoch.
"""
import paddle

from data.dataset import EpisodicBatchSampler, SetDataset, ShuffleBatchSampler, SimpleDataset
from data.transforms import get_transform
from utils import FRNError

# Seconds a worker may take for one batch before the loader gives up instead of hanging.
WORKER_TIMEOUT = 300


class EpochLoader:
    """A DataLoader plus its sampler, so the epoch can be set; worker failures become clear errors."""

    def __init__(self, dataset, batch_sampler, num_workers):
        self.dataset, self.batch_sampler, self.num_workers = dataset, batch_sampler, num_workers
        self.loader = paddle.io.DataLoader(
            dataset, batch_sampler=batch_sampler, num_workers=num_workers, return_list=True,
            use_shared_memory=False, timeout=WORKER_TIMEOUT if num_workers > 0 else 0)

    def set_epoch(self, epoch):
        self.batch_sampler.set_epoch(epoch)

    def __len__(self):
        return len(self.batch_sampler)

    def __iter__(self):
        iterator = iter(self.loader)
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except FRNError:
                raise
            except (RuntimeError, SystemError, OSError) as err:
                if self.num_workers == 0:
                    raise
                raise FRNError(f'a data loading worker failed ({type(err).__name__}: {str(err).strip()[:300]}); '
                               f'rerun with --num_workers 0 to load in the main process and see the cause') from None
            yield batch


def check_num_workers(num_workers):
    if num_workers < 0:
        raise FRNError(f'--num_workers must be 0 or more, not {num_workers}')
    return num_workers


class SimpleDataManager:
    """Shuffled (image, label) batches for pretraining."""

    def __init__(self, image_size, batch_size, num_workers=0, seed=0, dataset='mini_imagenet'):
        self.image_size, self.batch_size, self.seed, self.dataset = image_size, batch_size, seed, dataset
        self.num_workers = check_num_workers(num_workers)

    def get_data_loader(self, split, aug, shuffle=True, drop_last=True):
        dataset = SimpleDataset(split, get_transform(self.image_size, aug, self.dataset))
        sampler = ShuffleBatchSampler(len(dataset), self.batch_size, shuffle=shuffle, drop_last=drop_last,
                                      seed=self.seed)
        return EpochLoader(dataset, sampler, self.num_workers)


class SetDataManager:
    """Few-shot episodes: [n_way, n_support + n_query, 3, H, W] image batches."""

    def __init__(self, image_size, n_way, n_support, n_query, n_episode, num_workers=0, seed=0,
                 dataset='mini_imagenet'):
        self.image_size, self.n_way, self.n_support, self.n_query = image_size, n_way, n_support, n_query
        self.n_episode, self.seed, self.dataset = n_episode, seed, dataset
        self.num_workers = check_num_workers(num_workers)

    def get_data_loader(self, split, aug):
        dataset = SetDataset(split, get_transform(self.image_size, aug, self.dataset))
        sampler = EpisodicBatchSampler(split.n_classes, self.n_way, self.n_episode, self.n_support + self.n_query,
                                       dataset.class_sizes, seed=self.seed)
        return EpochLoader(dataset, sampler, self.num_workers)
