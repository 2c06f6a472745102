"""What a model's input must be, as a JSON-able record, and the eval transform built from it.

Training writes the record beside its checkpoints (`preprocess.json` in the run folder),
tools/export_model.py copies it into frn_head.json, and prediction (tools/infer.py,
tools/visualize.py, test.py on another dataset) rebuilds the eval transform from it, so a
model is always fed what training fed it. A record:

    {"format": "frn-paddle preprocess 1",
     "dataset": "omniglot",          the training data's name; "family" groups it:
     "family": "omniglot",           "natural" (photos) or "omniglot" (pen strokes)
     "image_size": 42,               side S of the network's input
     "colour": "grey",               "rgb", or "grey" (luminance, copied to 3 channels)
     "invert": true,                 1 - x after scaling to [0, 1]: strokes 1, background 0
     "resize": {"size": [42, 42], "interpolation": "bilinear"},   an int: the shorter side; null: none
     "crop": null,                   or {"center": S}
     "normalize": null}              or {"mean": [...], "std": [...]} after scaling to [0, 1]

Both eval transforms of data/transforms.py are records (`record_for`), and the transform
built from a record is bit-identical to them (tests/test_preprocess.py).
"""
import json
import os

from paddle.vision import transforms as T

from data import transforms as dt
from utils import FRNError, atomic_write_json

FORMAT = 'frn-paddle preprocess 1'
SIDECAR = 'preprocess.json'
KEYS = ('format', 'dataset', 'family', 'image_size', 'colour', 'invert', 'resize', 'crop', 'normalize')


def record_for(dataset, image_size, eval_resize='shorter'):
    """The record of the eval transform this code applies to `dataset` at `image_size` (with --eval_resize)."""
    image_size = int(image_size)
    if dataset == 'omniglot':
        return {'format': FORMAT, 'dataset': 'omniglot', 'family': 'omniglot', 'image_size': image_size,
                'colour': 'grey', 'invert': True,
                'resize': {'size': [image_size, image_size], 'interpolation': 'bilinear'},
                'crop': None, 'normalize': None}
    return {'format': FORMAT, 'dataset': dataset, 'family': 'natural', 'image_size': image_size,
            'colour': 'rgb', 'invert': False,
            'resize': _natural_resize(image_size, eval_resize or 'shorter'),
            'crop': {'center': image_size}, 'normalize': {'mean': list(dt.MEAN), 'std': list(dt.STD)}}


def _natural_resize(image_size, eval_resize):
    side = dt.eval_resize(image_size)
    if eval_resize not in dt.EVAL_RESIZES:
        raise ValueError(f'unknown eval resize {eval_resize!r}; choose one of {dt.EVAL_RESIZES}')
    return {'shorter': {'size': side, 'interpolation': 'bilinear'},
            'square': {'size': [side, side], 'interpolation': 'bilinear'}, 'none': None}[eval_resize]


def natural_default(image_size=84):
    """What a model without a record gets: FRN's natural-image eval transform (RGB, ImageNet mean/std)."""
    return record_for('mini_imagenet', image_size)


def check(record, where):
    """The record, or an FRNError naming `where` when it is not one this code can apply."""
    if not isinstance(record, dict) or record.get('format') != FORMAT:
        raise FRNError(f'{where} is not a preprocessing record of this code (format '
                       f'{record.get("format") if isinstance(record, dict) else None!r}, expected {FORMAT!r}); '
                       f'write it again with this version')
    missing = [k for k in KEYS if k not in record]
    bad = (record.get('colour') not in ('rgb', 'grey') or not isinstance(record.get('image_size'), int)
           or record['image_size'] < 1)
    if missing or bad:
        raise FRNError(f'{where} lacks {", ".join(missing)} or has a bad colour/image_size; write it again')
    return record


def describe(record):
    """One line for logs: 'omniglot, 42 px, grey inverted, resize 42x42, no crop, no normalisation'."""
    resize = record['resize']['size'] if record['resize'] else None
    parts = [record['dataset'], f'{record["image_size"]} px',
             record['colour'] + (' inverted' if record['invert'] else ''),
             'no resize' if resize is None else
             f'resize {resize[0]}x{resize[1]}' if isinstance(resize, list) else f'resize shorter side {resize}',
             f'centre crop {record["crop"]["center"]}' if record['crop'] else 'no crop',
             'ImageNet mean/std' if record['normalize'] == {'mean': list(dt.MEAN), 'std': list(dt.STD)}
             else ('mean/std ' + json.dumps(record['normalize']) if record['normalize'] else 'no normalisation')]
    return ', '.join(parts)


class Grey:
    """PIL image -> its luminance copied to 3 channels (an image whose channels are equal is unchanged)."""

    def __call__(self, img):
        return img.convert('L').convert('RGB')


def eval_transform_from(record):
    """PIL RGB image -> float32 numpy [3, S, S], as the record says (deterministic: the feature cache may use it)."""
    steps = [Grey()] if record['colour'] == 'grey' else []
    if record['resize']:
        size = record['resize']['size']
        steps.append(T.Resize(tuple(size) if isinstance(size, list) else size,
                              interpolation=record['resize']['interpolation']))
    if record['crop']:
        steps.append(T.CenterCrop(record['crop']['center']))
    norm = record['normalize']
    if norm == {'mean': list(dt.MEAN), 'std': list(dt.STD)}:
        steps.append(dt.Normalized())  # the table lookup of paddle's own ToTensor + Normalize: bit-identical
    else:
        steps += [T.ToTensor()] + ([T.Normalize(mean=norm['mean'], std=norm['std'])] if norm else []) + [dt.ToNumpy()]
    if record['invert']:
        steps.append(dt.InvertInk())
    return dt.fixed(T.Compose(steps), True)


def write_sidecar(folder, record):
    """`folder`/preprocess.json, atomically."""
    atomic_write_json(record, os.path.join(folder, SIDECAR))


def read_sidecar(model_path):
    """The record beside a checkpoint (preprocess.json in its folder), or None when there is none."""
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), SIDECAR)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding='utf-8') as f:
            record = json.load(f)
    except ValueError as err:
        raise FRNError(f'{path!r} is not valid JSON ({err}); delete it or write it again') from None
    return check(record, repr(path))
