"""Two training steps of a small episode or batch, in one process or under paddle.distributed.launch with
--share_batches semantics; writes the losses and the final weights of this rank to OUT.<rank>.npz.

    python tests/_shared_step.py BACKBONE KIND DTYPE OUT   (KIND: frn, proto or pretrain)
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from runtime.process import setup_process  # noqa: E402

setup_process()
import numpy as np  # noqa: E402
import paddle  # noqa: E402

from engine import parallel  # noqa: E402
from engine.trainer import build_optimizer  # noqa: E402
from methods.FRN import FRN  # noqa: E402
from methods.protonet import Proto  # noqa: E402
from methods.steps import meta_frn_step, meta_proto_step, pretrain_step  # noqa: E402
from runtime.device import set_threads  # noqa: E402


def main(backbone, kind, dtype, out):
    set_threads(1)
    paddle.set_default_dtype(dtype)
    parallel.init()
    parallel.share_batches()
    paddle.seed(0)
    rng = np.random.default_rng(0)
    size = 32
    if kind == 'pretrain':
        model = FRN(backbone=backbone, is_pretraining=True, num_cat=5, image_size=size)
        batches = [(paddle.to_tensor(rng.standard_normal((8, 3, size, size)).astype(dtype)),
                    paddle.to_tensor(rng.integers(5, size=8))) for _ in range(2)]
        step = pretrain_step
    else:
        way, shot, query = 4, 1, 2
        model = (FRN if kind == 'frn' else Proto)(way=way, shots=[shot, query], backbone=backbone, image_size=size)
        batches = [(paddle.to_tensor(rng.standard_normal((way, shot + query, 3, size, size)).astype(dtype)), None)
                   for _ in range(2)]
        step = (meta_frn_step if kind == 'frn' else meta_proto_step)(way, shot, query)
    import argparse
    optimizer, _ = build_optimizer(argparse.Namespace(opt='sgd', lr=0.1, milestones=[10], gamma=0.1, wd=5e-4), model)
    parallel.wrap(model)
    model.train()
    losses = []
    for batch in batches:
        loss, _ = step(model, batch)
        optimizer.clear_grad()
        loss.backward()
        parallel.after_backward(model)
        optimizer.step()
        losses.append(loss.item())
    weights = {name: value.numpy() for name, value in model.state_dict().items()}
    np.savez(f'{out}.{parallel.rank()}.npz', losses=np.array(losses), **weights)


if __name__ == '__main__':
    main(*sys.argv[1:])
