"""Each method's training step, `step(model, batch) -> (loss, accuracy)`.

A loader's episode [way, shot + query, 3, H, W] goes to the model in the episode layout
of methods/episode.py, whose targets are `query_targets`. The engine's loop runs
whichever step the script plugs in; it knows nothing of the losses.
"""
import paddle
import paddle.nn.functional as F

from methods.episode import episode_images, query_targets
from methods.FRN import auxrank


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
