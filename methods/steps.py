"""Each method's training step, `step(model, batch) -> (loss, accuracy)`, and the episode layout they share.

Loaders give an episode class-major, [way, shot + query, 3, H, W]. The methods take the
official layout instead: all supports grouped by class, then all queries grouped the
same way, so query i belongs to class i // query. The engine's loop runs whichever step
the script plugs in; it knows nothing of the losses.
"""
import numpy as np
import paddle
import paddle.nn.functional as F

from methods.FRN import auxrank


def episode_images(x, shot):
    """[way, shot + query, C, H, W] -> [way * (shot + query), C, H, W], supports first."""
    way, n, c, h, w = x.shape
    support = paddle.reshape(x[:, :shot], [way * shot, c, h, w])
    query = paddle.reshape(x[:, shot:], [way * (n - shot), c, h, w])
    return paddle.concat([support, query], axis=0)


def query_targets(way, query):
    """Class of each query in the official layout: [0]*query + [1]*query + ..."""
    return paddle.to_tensor(np.repeat(np.arange(way), query), dtype='int64')


def accuracy(log_prediction, target):
    """Percentage of rows whose arg-max is the target."""
    return 100.0 * paddle.mean(paddle.cast(paddle.argmax(log_prediction, axis=1) == target, 'float32')).item()


def pretrain_step(model, batch):
    """stl_frn: a batch of (image, label) scored against every class matrix; NLL over all classes."""
    x, y = batch
    log_prediction = model.forward_pretrain(x)
    return F.nll_loss(log_prediction, y), accuracy(log_prediction, y)


def meta_frn_step(way, shot, query):
    """meta_frn: the NLL of one episode's queries plus the auxiliary loss on its supports."""
    target = query_targets(way, query)

    def step(model, batch):
        x, _ = batch
        log_prediction, support = model(episode_images(x, shot))
        return F.nll_loss(log_prediction, target) + auxrank(support), accuracy(log_prediction, target)
    return step


def meta_proto_step(way, shot, query):
    """meta_proto: the NLL of one episode's queries under ProtoNet (no auxiliary loss, as the official code)."""
    target = query_targets(way, query)

    def step(model, batch):
        x, _ = batch
        log_prediction = model(episode_images(x, shot))
        return F.nll_loss(log_prediction, target), accuracy(log_prediction, target)
    return step
