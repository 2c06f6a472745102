"""The official training sampler (--episodes pass): one pass over the images per epoch, as FRN's meta_batchsampler."""
import collections

import numpy as np
import pytest

from data.datamgr import SetDataManager
from data.dataset import PassEpisodeSampler
from data.filelist import read_split
from utils import FRNError

UNEVEN = [24, 31, 40, 68, 25, 33, 57, 45, 26, 29, 61, 38]  # images per class, as uneven as Stanford Cars


def official_pass(sizes, way, shots, rng):
    """A direct transcription of the official rule (datasets/samplers.py meta_batchsampler at 64e43f3),
    with numpy's legacy RandomState as the official code uses: the classes of each episode, in order."""
    left = {c: list(range(n)) for c, n in enumerate(sizes)}
    for c in left:
        rng.shuffle(left[c])
    episodes = []
    while len(left) >= way:
        keys = list(left)
        counts = np.array([len(left[k]) for k in keys])
        chosen = rng.choice(keys, size=way, replace=False, p=counts / counts.sum())
        for shot in shots:
            for k in chosen:
                for _ in range(shot):
                    left[k].pop()
        for k in chosen:
            if len(left[k]) < sum(shots):
                left.pop(k)
        episodes.append([int(k) for k in chosen])
    return episodes


def our_pass(sizes, way, shot, query, seed, epoch):
    sampler = PassEpisodeSampler(way, shot, query, sizes, seed=seed)
    sampler.set_epoch(epoch)
    return list(sampler)


def test_no_image_appears_twice_in_an_epoch_and_classes_leave_when_short():
    for epoch in range(20):
        episodes = our_pass(UNEVEN, 5, 2, 6, seed=3, epoch=epoch)
        drawn = [(c, p) for episode in episodes for c, positions, _ in episode for p in positions]
        assert len(drawn) == len(set(drawn))
        assert all(0 <= p < UNEVEN[c] for c, p in drawn)
        used = collections.Counter(c for c, _ in drawn)
        # the pass ends only when fewer than `way` classes could still give shot + query images
        still_full = [c for c, n in enumerate(UNEVEN) if n - used[c] >= 8]
        assert len(still_full) < 5
        for episode in episodes:
            assert len({c for c, _, _ in episode}) == 5 and all(len(p) == 8 for _, p, _ in episode)


@pytest.mark.slow
def test_episode_counts_follow_the_official_sampler():
    # equal classes: the count is fixed, 60 images of 20 classes give 3 rounds of every class = 3 episodes
    assert len(our_pass([60] * 20, 20, 5, 15, seed=0, epoch=0)) == 3
    assert len(official_pass([60] * 20, 20, [5, 15], np.random.RandomState(0))) == 3
    # uneven classes: the count varies with the draws; its distribution must be the official one
    ours = collections.Counter(len(our_pass(UNEVEN, 5, 2, 6, seed=1, epoch=e)) for e in range(1500))
    rng = np.random.RandomState(1)
    theirs = collections.Counter(len(official_pass(UNEVEN, 5, [2, 6], rng)) for _ in range(1500))
    for n in set(ours) | set(theirs):
        assert abs(ours[n] - theirs[n]) / 1500 < 0.05, (n, ours, theirs)
    assert sum(n * k for n, k in ours.items()) / 1500 == pytest.approx(
        sum(n * k for n, k in theirs.items()) / 1500, abs=0.15)


@pytest.mark.slow
def test_class_frequencies_follow_the_remaining_image_weights():
    """How often each class is drawn at each step of a pass, ours against the transcription, over many epochs."""
    epochs, way, shots = 1500, 4, [1, 5]
    ours = np.zeros((6, len(UNEVEN)))
    theirs = np.zeros((6, len(UNEVEN)))
    rng = np.random.RandomState(7)
    for epoch in range(epochs):
        for step, episode in enumerate(our_pass(UNEVEN, way, 1, 5, seed=7, epoch=epoch)[:6]):
            for c, _, _ in episode:
                ours[step, c] += 1
        for step, classes in enumerate(official_pass(UNEVEN, way, shots, rng)[:6]):
            theirs[step, classes] += 1
    # the first episode's classes: larger classes are drawn more, in the official proportion
    first_ours, first_theirs = ours[0] / epochs, theirs[0] / epochs
    assert np.abs(first_ours - first_theirs).max() < 0.06
    assert first_ours[UNEVEN.index(68)] > first_ours[UNEVEN.index(24)] + 0.15
    # later steps, after the weights have moved with the images taken
    assert np.abs(ours[1:6] - theirs[1:6]).max() / epochs < 0.07


def test_a_pass_depends_only_on_seed_and_epoch_and_ranks_split_it():
    a = PassEpisodeSampler(5, 2, 6, UNEVEN, seed=4)
    b = PassEpisodeSampler(5, 2, 6, UNEVEN, seed=4)
    a.set_epoch(9)
    list(PassEpisodeSampler(5, 2, 6, UNEVEN, seed=4))  # another sampler's draws do not disturb it
    b.set_epoch(3)
    b.set_epoch(9)
    assert list(a) == list(b)
    c = PassEpisodeSampler(5, 2, 6, UNEVEN, seed=5)
    c.set_epoch(9)
    assert list(c) != list(a)
    whole = a.episodes_of_pass()
    ranks = [PassEpisodeSampler(5, 2, 6, UNEVEN, seed=4, rank=r, world_size=2) for r in range(2)]
    for r in ranks:
        r.set_epoch(9)
    assert len(ranks[0]) == len(ranks[1]) == len(whole) // 2
    merged = [episode for pair in zip(*ranks) for episode in pair]
    assert merged == whole[:2 * (len(whole) // 2)]
    if len(whole) % 2:
        assert 'left out' in ranks[0].describe_epoch()


def test_a_class_too_small_for_an_episode_is_refused():
    with pytest.raises(FRNError, match='smallest class has only 7'):
        PassEpisodeSampler(5, 2, 6, UNEVEN + [7])


def test_pass_episodes_reach_the_model_supports_first_by_class(cars_small):
    split = read_split(str(cars_small), 'train')
    assert len(set(len(m) for m in split.class_members())) > 1  # uneven classes
    manager = SetDataManager(32, 3, 2, 4, n_episode=999, dataset='cars', episodes='pass', seed=2)
    loader = manager.get_data_loader(split, aug=True)
    loader.set_epoch(0)
    batches = list(loader)
    assert len(batches) == len(loader) == len(loader.batch_sampler.episodes_of_pass()) > 1
    seen = set()
    for (x, y), episode in zip(batches, loader.batch_sampler.episodes_of_pass()):
        assert list(x.shape) == [3, 6, 3, 32, 32]
        labels = y.numpy()
        assert (labels == labels[:, :1]).all() and len(set(labels[:, 0])) == 3
        assert [c for c, _, _ in episode] == list(labels[:, 0])
        files = [split.image_paths[i] for c, positions, _ in episode
                 for i in loader.dataset.image_indices(c, positions)]
        assert not seen & set(files)
        seen |= set(files)
    assert 'episodes in this pass' in loader.describe_epoch()
