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
    if missing:
        raise FRNError(f'{where} lacks {", ".join(missing)}; write it again with this version')
    problems = _problems(record)
    if problems:
        key, problem = problems[0]
        raise FRNError(f'{where} has a bad "{key}": {json.dumps(record[key])} (expected {problem}); write it again '
                       f'with this version')
    return record


INTERPOLATIONS = ('nearest', 'bilinear', 'bicubic', 'box', 'lanczos', 'hamming')


def _side(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _numbers(value, positive=False):
    return (isinstance(value, list) and len(value) == 3 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and (v > 0 if positive else v == v) for v in value))


def _problems(record):
    """(key, what is wrong) for each field of a record that eval_transform_from could not apply."""
    resize, crop, norm = record['resize'], record['crop'], record['normalize']
    checks = [
        ('dataset', isinstance(record['dataset'], str), 'a name'),
        ('family', record['family'] in ('natural', 'omniglot'), '"natural" or "omniglot"'),
        ('image_size', _side(record['image_size']), 'a positive whole number'),
        ('colour', record['colour'] in ('rgb', 'grey'), '"rgb" or "grey"'),
        ('invert', isinstance(record['invert'], bool), 'true or false'),
        ('resize', resize is None or isinstance(resize, dict) and resize.get('interpolation') in INTERPOLATIONS
         and (_side(resize.get('size')) or isinstance(resize.get('size'), list) and len(resize['size']) == 2
              and all(map(_side, resize['size']))),
         'null, or {"size": a side or [height, width], "interpolation": one of ' + ', '.join(INTERPOLATIONS) + '}'),
        ('crop', crop is None or isinstance(crop, dict) and _side(crop.get('center')), 'null or {"center": a side}'),
        ('normalize', norm is None or isinstance(norm, dict) and _numbers(norm.get('mean'))
         and _numbers(norm.get('std'), positive=True), 'null or {"mean": 3 numbers, "std": 3 positive numbers}'),
    ]
    return [(key, expected) for key, ok, expected in checks if not ok]


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
