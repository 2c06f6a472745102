"""Feature inversion, as in the FRN paper's figures: a small decoder from a frozen FRN's feature maps back to images.

The decoder learns feature map -> image on a training split (tools/train_inverter.py) while
the backbone stays frozen in eval mode. A d x h x w map (64 x 5 x 5 for Conv-4 at 84 px) is
brought up through the backbone's own pooling sizes in reverse (5 -> 10 -> 21 -> 42 -> 84 at
84 px), each stage a bilinear upsampling, a 3x3 convolution, BatchNorm and ReLU, and a last
3x3 convolution gives the three channels of the image in the model's normalised space.
tools/visualize.py --inverter decodes a query's own map and its reconstruction rho * q_bar
under each class (deploy/explain.py).

The checkpoint (one .pdparams file) holds the weights and a record of what they fit:

    {'format', 'backbone', 'image_size', 'map_shape' [d, h, w], 'preprocess' (data/preprocess.py),
     'channels' (the decoder's widths), 'probe' (the model's feature map of a fixed image),
     'model' (the checkpoint it was trained on, as given), 'loss', 'trained' (epochs, images)}

`check_matches` refuses a model whose backbone, image size, map shape or normalisation differ,
or whose feature map of the probe image is another (the same backbone with other weights).
"""
import os

import numpy as np
import paddle
import paddle.nn.functional as F
from paddle import nn

from utils import FRNError, atomic_save

FORMAT = 'frn-paddle inverter 1'
CHANNELS = (128, 64, 32, 16, 8)  # at the map's size, then after each upsampling (the last at the image size)
PROBE_SEED = 20210601
PROBE_TOLERANCE = 1e-2  # relative difference of the probe maps: dygraph vs paddle.inference is about 1e-4


def upsampling_sizes(image_size, map_side):
    """The sides the backbone pooled through, in reverse: 84, 5 -> [10, 21, 42, 84] (floor halvings of 84)."""
    sides = [int(image_size)]
    while sides[-1] // 2 >= map_side and sides[-1] > map_side:
        sides.append(sides[-1] // 2)
    if sides[-1] != map_side:
        raise FRNError(f'a {image_size} px image does not halve down to the {map_side} x {map_side} feature map; '
                       f'this decoder expects a backbone made of 2x2 poolings')
    return sides[-2::-1]


class Stage(nn.Layer):
    """Bilinear upsampling to `size` (none when size is None), 3x3 conv, BatchNorm, ReLU."""

    def __init__(self, in_channels, out_channels, size=None):
        super().__init__()
        self.size = size
        self.conv = nn.Conv2D(in_channels, out_channels, 3, padding=1)
        self.bn = nn.BatchNorm2D(out_channels)

    def forward(self, x):
        if self.size is not None:
            x = F.interpolate(x, size=[self.size, self.size], mode='bilinear', align_corners=False)
        return F.relu(self.bn(self.conv(x)))


class Inverter(nn.Layer):
    """Feature maps [N, r, d] (FRN.get_feature_map's layout) -> images [N, 3, S, S] in the normalised space."""

    def __init__(self, d, side, image_size, channels=CHANNELS):
        super().__init__()
        sizes = upsampling_sizes(image_size, side)
        if len(channels) != len(sizes) + 1:
            raise FRNError(f'the decoder needs {len(sizes) + 1} channel widths for {side} -> {image_size} px '
                           f'({len(sizes)} upsamplings), not {len(channels)}')
        self.d, self.side, self.image_size, self.channels = d, side, image_size, tuple(channels)
        stages = [Stage(d, channels[0])]
        for k, size in enumerate(sizes):
            stages.append(Stage(channels[k], channels[k + 1], size))
        self.stages = nn.Sequential(*stages)
        self.to_image = nn.Conv2D(channels[-1], 3, 3, padding=1)

    def forward(self, maps):
        n, r, d = maps.shape
        x = paddle.reshape(paddle.transpose(maps, [0, 2, 1]), [n, d, self.side, self.side])  # N, d, h, w
        return self.to_image(self.stages(x))  # N, 3, S, S


def loss_fn(decoded, images):
    """Mean absolute error per pixel and channel, in the normalised space the backbone sees (L1)."""
    return paddle.mean(paddle.abs(decoded - images))


def probe_image(image_size):
    """A fixed image in the normalised space [1, 3, S, S]: smooth colour gradients plus seeded noise."""
    rng = np.random.RandomState(PROBE_SEED)
    grid = np.linspace(-2.0, 2.0, image_size, dtype=np.float32)
    smooth = np.stack([grid[None, :] + 0 * grid[:, None], grid[:, None] + 0 * grid[None, :],
                       np.outer(grid, grid) / 2])
    return (smooth + 0.5 * rng.standard_normal(smooth.shape)).astype(np.float32)[None]


def record_for(features, channels, model_path):
    """What a decoder trained on `features` (deploy/export.py's Features) fits."""
    probe = np.asarray(features(probe_image(features.image_size)))[0]  # r, d
    r, d = probe.shape
    side = int(round(r ** 0.5))
    return {'format': FORMAT, 'backbone': features.backbone, 'image_size': int(features.image_size),
            'map_shape': [int(d), side, side], 'preprocess': features.preprocess, 'channels': list(channels),
            'probe': probe.tolist(), 'model': model_path, 'loss': 'L1 on the normalised image'}


def build(record):
    d, side, _ = record['map_shape']
    return Inverter(d, side, record['image_size'], record['channels'])


def save(path, model, record):
    """The checkpoint: {'inverter': record, 'state_dict': weights}, written atomically."""
    atomic_save({'inverter': record, 'state_dict': model.state_dict()}, path)


def load(path):
    """(decoder in eval mode, record) from a checkpoint of `save`; an FRNError names a file that is not one."""
    if os.path.isdir(path):
        raise FRNError(f'--inverter {path!r} is a folder; give the inverter.pdparams inside it '
                       f'(written by tools/train_inverter.py)')
    if not os.path.isfile(path):
        raise FRNError(f'--inverter {path!r} does not exist; train one with tools/train_inverter.py')
    try:
        ckpt = paddle.load(path)
    except Exception as err:  # paddle raises several types for a file it cannot unpickle
        raise FRNError(f'--inverter {path!r} cannot be read as a checkpoint ({type(err).__name__}); '
                       f'give an inverter.pdparams written by tools/train_inverter.py') from None
    record = ckpt.get('inverter') if isinstance(ckpt, dict) else None
    if not isinstance(record, dict) or record.get('format') != FORMAT:
        raise FRNError(f'--inverter {path!r} is not an inverter checkpoint of this code (no {FORMAT!r} record); '
                       f'give an inverter.pdparams written by tools/train_inverter.py')
    model = build(record)
    model.set_state_dict(ckpt['state_dict'])
    model.eval()
    return model, record


def check_matches(record, features, path):
    """An FRNError when the decoder of `record` was not trained on the feature maps of `features`."""
    model = f'the model {features.source!r} ({features.backbone}, {features.image_size} px)'
    trained = f'--inverter {path!r} was trained on {record["backbone"]} features of {record["image_size"]} px images'
    if record['backbone'] != features.backbone or record['image_size'] != features.image_size:
        raise FRNError(f'{trained}, not on {model}; give the inverter trained on this model '
                       f'(tools/train_inverter.py --model_path {features.source})')
    norm = (record['preprocess'] or {}).get('normalize'), (features.preprocess or {}).get('normalize')
    if norm[0] != norm[1]:
        raise FRNError(f'{trained} normalised with {norm[0]}, but {model} normalises with {norm[1]}; '
                       f'train an inverter on this model')
    probe = np.asarray(features(probe_image(features.image_size)))[0]  # r, d
    d, side, _ = record['map_shape']
    if probe.shape != (side * side, d):
        raise FRNError(f'{trained} with {d} x {side} x {side} feature maps, but {model} gives '
                       f'{probe.shape[1]} x {probe.shape[0]} positions; train an inverter on this model')
    expected = np.asarray(record['probe'], dtype=np.float32)
    change = np.linalg.norm(probe - expected) / max(np.linalg.norm(expected), 1e-12)
    if change > PROBE_TOLERANCE:
        raise FRNError(f'{trained} by another model: {model} maps a fixed probe image to other features '
                       f'(relative difference {change:.2g}); train an inverter on this model with '
                       f'tools/train_inverter.py --model_path {features.source}')


def to_pixels(decoded, preprocess):
    """Decoded images [N, 3, S, S] in the normalised space -> uint8 [N, S, S, 3] (mean/std undone, clipped)."""
    x = np.asarray(decoded, dtype=np.float32)
    if (preprocess or {}).get('invert'):  # the transform inverts last, so it is undone first
        x = 1.0 - x
    norm = (preprocess or {}).get('normalize')
    if norm:
        x = x * np.asarray(norm['std'], np.float32)[:, None, None] + np.asarray(norm['mean'], np.float32)[:, None, None]
    return (np.clip(np.transpose(x, [0, 2, 3, 1]), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


@paddle.no_grad()
def decode(model, maps, preprocess):
    """Feature maps [N, r, d] (numpy) -> the decoder's images, uint8 [N, S, S, 3]."""
    return to_pixels(model(paddle.to_tensor(np.asarray(maps, dtype=np.float32))).numpy(), preprocess)
