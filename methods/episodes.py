"""Episode layout and few-shot evaluation.

Loaders give an episode class-major, [way, shot + query, 3, H, W]. The FRN methods
take the official layout instead: all supports grouped by class, then all queries
grouped the same way, so query i belongs to class i // query.
"""
import numpy as np
import paddle
import paddle.nn.functional as F

from utils import progress


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


@paddle.no_grad()
def evaluate(model, loader, way, shot, query, desc='val'):
    """Meta-test every episode of `loader`: (accuracy per episode in %, mean NLL)."""
    model.eval()
    target = query_targets(way, query)
    accs, losses = [], []
    for x, _ in progress(loader, desc=desc):
        neg_l2 = model.get_neg_l2_dist(episode_images(x, shot), way, shot, query)
        log_prediction = F.log_softmax(neg_l2 * model.scale, axis=1)
        losses.append(F.nll_loss(log_prediction, target).item())
        accs.append(accuracy(log_prediction, target))
    return np.array(accs), float(np.mean(losses))
