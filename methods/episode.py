"""The episode layout, defined here only: which image of an episode is a support of which class.

Loaders give an episode class-major, [way, shot + query, C, H, W]: each class's shot
supports, then its queries. The models take the official layout instead: all supports
grouped by class, then all queries grouped the same way, so query i belongs to class
i // query. Training, both evaluation paths (images, cached maps) and the heads of FRN
and ProtoNet read an episode through these functions.
"""
import numpy as np
import paddle


def check_episode(n, way, shot, query):
    """An episode's layout is implied by its size only: refuse a size that does not fit."""
    if n != way * (shot + query):
        raise ValueError(f'an episode of {way}-way {shot}-shot {query}-query needs '
                         f'{way * (shot + query)} images, got {n}')


def episode_order(way, shot, query):
    """Where each image of the official layout sits in the class-major one: [way * (shot + query)] indices."""
    class_major = np.arange(way * (shot + query)).reshape(way, shot + query)
    return np.concatenate([class_major[:, :shot].reshape(-1), class_major[:, shot:].reshape(-1)])


def episode_images(x, shot):
    """[way, shot + query, C, H, W] from a loader -> [way * (shot + query), C, H, W] in the official layout."""
    way, n = x.shape[0], x.shape[1]
    class_major = paddle.reshape(x, [way * n] + list(x.shape[2:]))  # way*(shot+query), C, H, W
    return paddle.gather(class_major, paddle.to_tensor(episode_order(way, shot, n - shot)))


def split_episode(items, way, shot, query):
    """[way * (shot + query), ...] in the official layout -> (supports [way, shot, ...], queries [way * query, ...])."""
    check_episode(items.shape[0], way, shot, query)
    support = paddle.reshape(items[:way * shot], [way, shot] + list(items.shape[1:]))  # way, shot, ...
    return support, items[way * shot:]


def query_targets(way, query):
    """Class of each query in the official layout: [0]*query + [1]*query + ..., int64."""
    return paddle.to_tensor(np.repeat(np.arange(way), query), dtype='int64')
