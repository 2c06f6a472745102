"""Few-shot evaluation: meta-test every episode of a loader, per episode or from cached feature maps."""
import numpy as np
import paddle
import paddle.nn.functional as F

from engine.feature_cache import DEFAULT_MAX_CACHE_MB, FeatureCache, cached_neg_l2_dists, uncacheable_reason
from engine.log import progress
from methods.steps import accuracy, episode_images, query_targets


def per_episode_neg_l2_dists(model, loader, way, shot, query, desc=None):
    """The backbone on every image of every episode, as the official code does: [way * query, way] per episode."""
    for x, _ in progress(loader, desc=desc):
        with paddle.no_grad():
            neg_l2 = model.get_neg_l2_dist(episode_images(x, shot), way, shot, query)
        yield neg_l2


def episode_neg_l2_dists(model, loader, way, shot, query, desc=None, feature_cache=True,
                         max_cache_mb=DEFAULT_MAX_CACHE_MB):
    """Each episode's negative distances, in loader order, from cached feature maps when possible.

    feature_cache: True (embed every image once for this call), False (per episode), or a
    FeatureCache of the loader's dataset to reuse across calls while the model is unchanged.
    Loaders with a random transform are always evaluated per episode.
    """
    model.eval()
    if feature_cache is False or uncacheable_reason(loader):
        return per_episode_neg_l2_dists(model, loader, way, shot, query, desc)
    if feature_cache is True:
        feature_cache = FeatureCache(model, loader.dataset, max_cache_mb, num_workers=loader.num_workers)
    elif feature_cache.dataset is not loader.dataset or feature_cache.model is not model:
        raise ValueError('this FeatureCache belongs to another model or dataset than the loader')
    return cached_neg_l2_dists(model, feature_cache, loader.batch_sampler, way, shot, query, desc)


@paddle.no_grad()
def evaluate(model, loader, way, shot, query, desc='val', feature_cache=True, max_cache_mb=DEFAULT_MAX_CACHE_MB):
    """Meta-test every episode of `loader`: (accuracy per episode in %, mean NLL).

    By default each image is embedded once and the episodes' heads run on the cached
    maps, with the same results as `feature_cache=False` (see engine/feature_cache.py).
    """
    target = query_targets(way, query)
    accs, losses = [], []
    for neg_l2 in episode_neg_l2_dists(model, loader, way, shot, query, desc, feature_cache, max_cache_mb):
        log_prediction = F.log_softmax(neg_l2 * model.scale, axis=1)
        losses.append(F.nll_loss(log_prediction, target).item())
        accs.append(accuracy(log_prediction, target))
    return np.array(accs), float(np.mean(losses))
