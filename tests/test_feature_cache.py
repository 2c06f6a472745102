"""Cached evaluation: each image through the backbone once, with exactly the per-episode results.

Real photos (tiny_mini), Conv-4 at 32 px and one small ResNet-12 episode, so this runs in seconds.
"""
import gc
import os
import re
import subprocess
import sys

import numpy as np
import paddle
import pytest

from conftest import REPO
from data.datamgr import SetDataManager
from data.filelist import read_split
from engine.evaluation import episode_scores, evaluate
from engine.feature_cache import FeatureCache, feature_cache_for, uncacheable_reason
from methods.FRN import FRN

SIZE, WAY, QUERY = 32, 5, 3


def trained_looking(backbone, seed=0):
    """An FRN whose BatchNorm statistics and r are not the initial ones, so eval mode and the head matter."""
    paddle.seed(seed)
    model = FRN(backbone=backbone, image_size=SIZE)
    rng = np.random.default_rng(seed)
    for layer in model.sublayers():
        if isinstance(layer, paddle.nn.BatchNorm2D):
            layer._mean.set_value(rng.normal(0, 0.1, layer._mean.shape).astype('float32'))
            layer._variance.set_value(rng.uniform(0.5, 1.5, layer._variance.shape).astype('float32'))
    model.r.set_value(np.float32([0.3, -0.2]))
    return model


def episode_loader(split, shot, n_episode, aug=False, num_workers=0):
    return SetDataManager(SIZE, WAY, shot, QUERY, n_episode, num_workers=num_workers, seed=3).get_data_loader(
        split, aug=aug)


def counting_images(model):
    """Record how many images go through the backbone."""
    counts, original = [], model.get_feature_map
    model.get_feature_map = lambda x: (counts.append(x.shape[0]), original(x))[1]
    return counts


def distinct_images(loader):
    sampler, dataset = loader.batch_sampler, loader.dataset
    return {i for e in range(len(sampler)) for cls, positions, _ in sampler.episode(e)
            for i in dataset.image_indices(cls, positions)}


@pytest.fixture(scope='module')
def test_split(tiny_mini):
    return read_split(str(tiny_mini), 'test')


@pytest.mark.parametrize('backbone, shot, n_episode', [pytest.param('Conv4', 1, 8, marks=pytest.mark.slow), ('Conv4', 5, 4),
                                                       pytest.param('ResNet12', 1, 1, marks=pytest.mark.slow)])
def test_cached_distances_and_accuracies_are_bitwise_those_of_the_per_episode_path(test_split, backbone, shot,
                                                                                    n_episode):
    model = trained_looking(backbone)
    loader = episode_loader(test_split, shot, n_episode)
    per_episode = [d.numpy() for d in episode_scores(model, loader, WAY, shot, QUERY)]
    cache = FeatureCache(model, loader.dataset)
    cached = [d.numpy() for d in episode_scores(model, loader, WAY, shot, QUERY, cache=cache)]
    assert len(per_episode) == len(cached) == n_episode
    for a, b in zip(per_episode, cached):
        np.testing.assert_array_equal(a, b)
    accs, loss = evaluate(model, loader, WAY, shot, QUERY)
    cached_accs, cached_loss = evaluate(model, loader, WAY, shot, QUERY, cache=feature_cache_for(model, loader))
    np.testing.assert_array_equal(accs, cached_accs)
    assert loss == cached_loss
    if backbone == 'Conv4' and shot == 1:
        assert len(set(np.argmax(np.concatenate(cached), axis=1))) > 1  # the check is not on a constant prediction


def test_each_image_is_embedded_once_and_later_tasks_embed_only_new_images(test_split):
    model = trained_looking('Conv4')
    loader = episode_loader(test_split, 2, 10)
    counts = counting_images(model)
    cache = FeatureCache(model, loader.dataset)
    first = distinct_images(loader)
    evaluate(model, loader, WAY, 2, QUERY, cache=cache)
    assert sum(counts) == len(first) == cache.n_cached < 10 * WAY * (2 + QUERY)
    loader.set_epoch(1)  # test.py's next task: other episodes, same model
    accs, _ = evaluate(model, loader, WAY, 2, QUERY, cache=cache)
    assert sum(counts) == len(first | distinct_images(loader)) == cache.n_cached
    np.testing.assert_array_equal(accs, evaluate(model, loader, WAY, 2, QUERY)[0])


def test_maps_beyond_max_cache_mb_go_to_a_temporary_file_with_the_same_results(test_split, tmp_path):
    model = trained_looking('Conv4')
    loader = episode_loader(test_split, 1, 4)
    cache = FeatureCache(model, loader.dataset, max_cache_mb=0.01, spill_dir=str(tmp_path))
    accs, loss = evaluate(model, loader, WAY, 1, QUERY, cache=cache)
    assert isinstance(cache.maps, np.memmap) and cache.spill_path.startswith(str(tmp_path))
    assert 'on disk' in cache.describe()
    reference_accs, reference_loss = evaluate(model, loader, WAY, 1, QUERY)
    np.testing.assert_array_equal(accs, reference_accs)
    assert loss == reference_loss
    folder = os.path.dirname(cache.spill_path)
    del cache
    gc.collect()
    assert not os.path.exists(folder)
    in_memory = FeatureCache(model, loader.dataset)
    evaluate(model, loader, WAY, 1, QUERY, cache=in_memory)
    assert in_memory.spill_path is None and not isinstance(in_memory.maps, np.memmap)


def test_augmented_episodes_are_evaluated_per_episode(test_split):
    model = trained_looking('Conv4')
    loader = episode_loader(test_split, 1, 3, aug=True)
    assert 'random' in uncacheable_reason(loader)
    counts = counting_images(model)
    accs, _ = evaluate(model, loader, WAY, 1, QUERY, cache=feature_cache_for(model, loader))
    assert sum(counts) == 3 * WAY * (1 + QUERY)  # every image of every episode, no cache
    np.testing.assert_array_equal(accs, evaluate(model, loader, WAY, 1, QUERY)[0])


def test_a_cache_of_another_dataset_is_refused(test_split):
    model = trained_looking('Conv4')
    loader, other = episode_loader(test_split, 1, 2), episode_loader(test_split, 1, 2)
    with pytest.raises(ValueError, match='another model or dataset'):
        evaluate(model, loader, WAY, 1, QUERY, cache=FeatureCache(model, other.dataset))


@pytest.mark.slow
def test_test_py_prints_the_same_accuracies_with_and_without_the_feature_cache(tiny_mini, tmp_path):
    model = trained_looking('Conv4')
    checkpoint = tmp_path / 'model.pdparams'
    paddle.save(model.state_dict(), str(checkpoint))
    args = ['--data_path', str(tiny_mini), '--model', 'Conv4', '--image_size', str(SIZE), '--n_shot', '1',
            '--n_query', str(QUERY), '--test_task_nums', '2', '--test_n_episode', '5', '--threads', '2',
            '--model_path', str(checkpoint), '--results_dir', str(tmp_path)]
    outputs = {}
    for name, extra in (('cached', []), ('per_episode', ['--no_feature_cache'])):
        result = subprocess.run([sys.executable, str(REPO / 'test.py'), *args, *extra], cwd=tmp_path,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
        outputs[name] = result.stdout
    lines = {k: re.findall(r'^.*Test Acc = .*%$|^Mean of .*Test Acc = [^(]*', v, flags=re.M) for k, v in outputs.items()}
    assert len(lines['cached']) == 3 and lines['cached'] == lines['per_episode']
    assert 'each image embedded once' in outputs['cached'] and 'feature cache: ' in outputs['cached']
    assert '--no_feature_cache' in outputs['per_episode']
