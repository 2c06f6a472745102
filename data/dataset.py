"""Datasets and samplers for pretraining batches and few-shot episodes.

Randomness is decided by the samplers, in the main process, from (seed, epoch, step):
which images form a batch or an episode, and a seed for each image's augmentation.
So a run is reproducible whatever `num_workers` is, and a resumed run sees exactly
the batches an uninterrupted one would have.
"""
import contextlib
import hashlib
import random

import numpy as np
import paddle

from utils import FRNError


@contextlib.contextmanager
def seeded_global_rngs(seed):
    """Seed `random` and `np.random` (which paddle.vision.transforms draw from), then restore them."""
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def transform_input(split, i):
    """Image `i` as the split's transform takes it: a PIL image, or the uint8 pixels of an image
    cache that already did the resize and crop (`prepared`), without a round trip through PIL."""
    return split.pixels(i) if getattr(split, 'prepared', None) else split.load_image(i)


def _image_seed(seed, j):
    return int(np.random.SeedSequence([int(seed), int(j)]).generate_state(1)[0])


class SimpleDataset(paddle.io.Dataset):
    """(image, label) pairs. A key is an index, or (index, augmentation seed) from a sampler."""

    def __init__(self, split, transform):
        self.split = split
        self.transform = transform

    def __len__(self):
        return len(self.split)

    def load(self, i, seed=0):
        with seeded_global_rngs(seed):
            return self.transform(transform_input(self.split, i))

    def __getitem__(self, key):
        # without a sampler's seed, an index gets a fixed one, so direct access is repeatable too
        i, seed = key if isinstance(key, tuple) else (key, _image_seed(0, key))
        return self.load(i, seed), np.int64(self.split.labels[i])


class SetDataset(paddle.io.Dataset):
    """One class's share of an episode. A key is (class, positions within the class, seed).

    The DataLoader stacks the n_way keys of an EpisodicBatchSampler episode into
    images [n_way, n_support + n_query, 3, H, W], class-major, and labels [n_way, n_support + n_query].
    """

    def __init__(self, split, transform):
        self.split = split
        self.transform = transform
        self.members = split.class_members()
        empty = [split.label_names[c] for c, m in enumerate(self.members) if not m]
        if empty:
            raise FRNError(f'{split.source}: class {empty[0]!r} has no images; every class needs images')

    @property
    def class_sizes(self):
        return [len(m) for m in self.members]

    def image_indices(self, cls, positions):
        return [self.members[cls][p] for p in positions]

    def __len__(self):
        return self.split.n_classes

    def __getitem__(self, key):
        cls, positions, seed = key
        images = []
        for j, i in enumerate(self.image_indices(cls, positions)):
            with seeded_global_rngs(_image_seed(seed, j)):
                images.append(self.transform(transform_input(self.split, i)))
        return np.stack(images), np.full(len(images), cls, dtype=np.int64)


def check_episode_fits(n_classes, n_way, n_per_class, class_sizes):
    if n_way > n_classes:
        raise FRNError(f'{n_way}-way episodes need at least {n_way} classes, but the split has {n_classes}; '
                       f'lower the n_way flag')
    smallest = min(class_sizes)
    if n_per_class > smallest:
        raise FRNError(f'an episode takes n_shot + n_query = {n_per_class} images per class, but the smallest '
                       f'class has only {smallest}; lower --n_shot or --n_query')


# the third seed word of a pass ('PASS'): EpisodicBatchSampler puts an episode index there, far below it
PASS_STREAM = 0x50415353


class EpisodicBatchSampler:
    """Episodes of `n_way` distinct classes with `n_per_class` distinct images each.

    Episode `g` of epoch `e` depends only on (seed, e, g), so any episode can be drawn
    directly (`episode(i)`), which the feature cache uses. With several ranks, rank r
    takes the global episodes r, r + world_size, ...: `n_episodes` stays the total.
    """

    def __init__(self, n_classes, n_way, n_episodes, n_per_class, class_sizes, seed=0, rank=0, world_size=1):
        check_episode_fits(n_classes, n_way, n_per_class, class_sizes)
        self.n_classes, self.n_way, self.n_episodes = n_classes, n_way, n_episodes
        self.n_per_class, self.class_sizes, self.seed = n_per_class, list(class_sizes), seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def global_index(self, i):
        """Index in the whole epoch of this rank's i-th episode."""
        return self.rank + i * self.world_size

    def episode(self, i):
        """This rank's i-th episode: [(class, positions, augmentation seed)] * n_way."""
        rng = np.random.default_rng([self.seed, self.epoch, self.global_index(i)])
        classes = rng.choice(self.n_classes, self.n_way, replace=False)
        return [(int(c), tuple(int(p) for p in rng.choice(self.class_sizes[c], self.n_per_class, replace=False)),
                 int(rng.integers(2**31))) for c in classes]

    def __len__(self):
        return len(range(self.rank, self.n_episodes, self.world_size))

    def __iter__(self):
        for i in range(len(self)):
            yield self.episode(i)


def episodes_fingerprint(tasks, n_shot):
    """SHA-256 of the episodes of each task (lists of `episode(i)` in order): each episode's classes with the
    positions of their support and of their query images. The augmentation seeds are left out (evaluation does
    not augment). Two test runs with the same value, on splits of the same fingerprint, saw the same episodes."""
    digest = hashlib.sha256()
    for task, episodes in enumerate(tasks):
        for episode in episodes:
            classes = ';'.join(f'{c}:{",".join(map(str, p[:n_shot]))}|{",".join(map(str, p[n_shot:]))}'
                               for c, p, *_ in episode)
            digest.update(f'{task}/{classes}\n'.encode())
    return digest.hexdigest()


class PassEpisodeSampler:
    """The official FRN training sampler (datasets/samplers.py `meta_batchsampler`): an epoch is one pass
    over the training images without replacement.

    Each class's images are shuffled; each episode draws `n_way` distinct classes with probability
    proportional to the images each still has left, and takes `n_shot` supports, then `n_query`
    queries, from each; a class leaves the pass once fewer than `n_shot + n_query` images remain,
    and the epoch ends when fewer than `n_way` classes remain. So the number of episodes varies
    from epoch to epoch. The pass of epoch `e` depends only on (seed, e), as every sampler here.
    With several ranks, rank r takes episodes r, r + world_size, ... of the pass, cut to a
    multiple of world_size so that every rank takes the same number of steps.
    """

    def __init__(self, n_way, n_shot, n_query, class_sizes, seed=0, rank=0, world_size=1):
        self.n_classes, self.n_way, self.n_shot, self.n_query = len(class_sizes), n_way, n_shot, n_query
        self.n_per_class, self.class_sizes, self.seed = n_shot + n_query, list(class_sizes), seed
        check_episode_fits(self.n_classes, n_way, self.n_per_class, self.class_sizes)
        self.rank, self.world_size = rank, world_size
        self.epoch, self._pass = 0, None

    def set_epoch(self, epoch):
        if epoch != self.epoch:
            self.epoch, self._pass = epoch, None

    def episodes_of_pass(self):
        """Every episode of this epoch's pass, over all ranks: [[(class, positions, augmentation seed)] * n_way]."""
        if self._pass is None:
            self._pass = self._draw_pass()
        return self._pass

    def _draw_pass(self):
        rng = np.random.default_rng([self.seed, self.epoch, PASS_STREAM])
        left = {c: [int(p) for p in rng.permutation(size)] for c, size in enumerate(self.class_sizes)}
        episodes = []
        while len(left) >= self.n_way:
            classes = list(left)
            counts = np.array([len(left[c]) for c in classes], dtype=np.float64)
            chosen = [int(c) for c in rng.choice(classes, size=self.n_way, replace=False, p=counts / counts.sum())]
            # supports then queries, each taken from the end of the class's shuffled list
            drawn = {c: [left[c].pop() for _ in range(self.n_shot)] for c in chosen}
            for c in chosen:
                drawn[c] += [left[c].pop() for _ in range(self.n_query)]
            episodes.append([(c, tuple(drawn[c]), int(rng.integers(2**31))) for c in chosen])
            for c in chosen:
                if len(left[c]) < self.n_per_class:
                    del left[c]
        return episodes

    def global_index(self, i):
        """Index in the whole pass of this rank's i-th episode."""
        return self.rank + i * self.world_size

    def episode(self, i):
        """This rank's i-th episode of the epoch."""
        return self.episodes_of_pass()[self.global_index(i)]

    def __len__(self):
        return len(self.episodes_of_pass()) // self.world_size

    def __iter__(self):
        for i in range(len(self)):
            yield self.episode(i)

    def describe_epoch(self):
        total = len(self.episodes_of_pass())
        dropped = total - len(self) * self.world_size
        return (f'{total} episodes in this pass over the training images'
                + (f' ({dropped} left out so that each of the {self.world_size} processes takes {len(self)})'
                   if dropped else ''))


class ShuffleBatchSampler(paddle.io.DistributedBatchSampler):
    """Shuffled batches of (index, augmentation seed), drawn from (seed, epoch).

    `batch_size` is the global batch: with several ranks, rank r takes the r-th equal
    slice of every global batch, so the batches of an epoch, and their order, are those
    of a single-process run.
    """

    def __init__(self, n_items, batch_size, shuffle=True, drop_last=True, seed=0, rank=0, world_size=1):
        if drop_last and n_items < batch_size:
            raise FRNError(f'--batch_size {batch_size} is larger than the {n_items} training images; '
                           f'lower --batch_size')
        if batch_size % world_size:
            raise FRNError(f'--batch_size {batch_size} (the global batch) must be divisible by the '
                           f'{world_size} processes')
        super().__init__(range(n_items), batch_size // world_size, num_replicas=world_size, rank=rank,
                         shuffle=shuffle, drop_last=drop_last)
        self.n_items, self.global_batch, self.seed = n_items, batch_size, seed

    def __len__(self):
        full, rest = divmod(self.n_items, self.global_batch)
        return full if self.drop_last or not rest else full + 1

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.n_items) if self.shuffle else np.arange(self.n_items)
        seeds = rng.integers(2**31, size=self.n_items)
        for b in range(len(self)):
            batch = order[b * self.global_batch:(b + 1) * self.global_batch]
            share = np.array_split(batch, self.nranks)[self.local_rank]
            yield [(int(i), int(seeds[i])) for i in share]
