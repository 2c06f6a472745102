"""Few-shot evaluation: meta-test every episode of a loader, on one of two paths.

- per episode (the official protocol, `--no_feature_cache`): the backbone runs on every
  image of every episode, `model.get_neg_l2_dist(images)`;
- cached: every image the episodes use goes through the backbone once, into a
  `FeatureCache`, and each episode's head runs on the stored maps, `model.episode_scores(maps)`.
Both give bitwise the same scores (see engine/feature_cache.py). The models (FRN, Proto,
PrototypeClassifier) share that interface and `log_probabilities(scores)`.
"""
import numpy as np
import paddle
import paddle.nn.functional as F

from engine.log import progress
from methods.episode import episode_images, query_targets
from methods.steps import accuracy


def scores_per_episode(model, loader, way, shot, query, desc=None):
    """[way * query, way] scores of each episode of `loader`, the backbone on all its images."""
    model.eval()
    for x, _ in progress(loader, desc=desc):
        with paddle.no_grad():
            yield model.get_neg_l2_dist(episode_images(x, shot), way, shot, query)


def scores_from_cache(cache, sampler, way, shot, query, desc=None):
    """[way * query, way] scores of each episode of `sampler`, the head on the maps of `cache`."""
    if sampler.n_per_class != shot + query or sampler.n_way != way:
        raise ValueError(f'the sampler draws {sampler.n_way}-way episodes of {sampler.n_per_class} images per class, '
                         f'not {way}-way {shot}+{query}')
    episodes = [sampler.episode(i) for i in range(len(sampler))]
    cache.ensure([i for episode in episodes for i in cache.episode_positions(episode)],
                 desc=f'{desc} (embed)' if desc else 'embed')
    model = cache.model
    model.eval()
    for episode in progress(episodes, desc=desc):
        with paddle.no_grad():
            yield model.episode_scores(paddle.to_tensor(cache.episode_feature_maps(episode, shot)), way, shot, query)


def episode_scores(model, loader, way, shot, query, cache=None, desc=None):
    """Each episode's scores in loader order: from `cache` (a FeatureCache of this model and the loader's
    dataset) when given, else per episode."""
    if cache is None:
        return scores_per_episode(model, loader, way, shot, query, desc)
    if cache.dataset is not loader.dataset or cache.model is not model:
        raise ValueError('this FeatureCache belongs to another model or dataset than the loader')
    return scores_from_cache(cache, loader.batch_sampler, way, shot, query, desc)


@paddle.no_grad()
def evaluate(model, loader, way, shot, query, cache=None, desc='val'):
    """Meta-test every episode of `loader`: (accuracy per episode in %, mean NLL)."""
    target = query_targets(way, query)
    accs, losses = [], []
    for scores in episode_scores(model, loader, way, shot, query, cache, desc):
        log_prediction = model.log_probabilities(scores)
        losses.append(F.nll_loss(log_prediction, target).item())
        accs.append(accuracy(log_prediction, target))
    return np.array(accs), float(np.mean(losses))
