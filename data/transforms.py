"""Image transforms: natural images exactly as the official FRN code, and Omniglot's (paddle.vision.transforms).

Train (`train_type`): 0, RandomResizedCrop(S), or 1, RandomCrop(S, padding 8·S/84), then
       ColorJitter(0.4, 0.4, 0.4) -> RandomHorizontalFlip -> ToTensor -> Normalize.
Eval (`eval_resize`): 'shorter', Resize(S * 92/84) on the shorter side; 'square', Resize to
       S * 92/84 square; 'none', images already S x S; then CenterCrop(S) -> ToTensor -> Normalize.
Each dataset defaults to the choice of the official experiments (OFFICIAL_TRANSFORMS).
Both take a PIL image and return a float32 numpy array [3, S, S]: numpy, not paddle
tensors, because paddle's shared-memory DataLoader workers fail on tensors.
ToTensor -> Normalize runs as a table lookup of paddle's own results (`Normalized`),
bit-identical and several times faster.
"""
import os

import numpy as np
from paddle.vision import transforms as T
from PIL import Image

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


TRAIN_TYPES = (0, 1)
EVAL_RESIZES = ('shorter', 'square', 'none')
# --dataset -> (train_type, eval_resize) of the official FRN experiments (datasets/transform_manager.py there):
# cropped CUB and Aircraft are squashed to a square before the centre crop, tiered-ImageNet is stored at 84 px.
# Stanford Cars crops are treated as the official code treats the CUB and Aircraft crops.
OFFICIAL_TRANSFORMS = {'mini_imagenet': (0, 'shorter'), 'cub': (0, 'square'), 'aircraft': (0, 'square'),
                       'cars': (0, 'square'), 'tiered_imagenet': (1, 'none'), 'meta_inat': (1, 'none'),
                       'tiered_meta_inat': (1, 'none'), 'custom': (0, 'shorter')}
RAW_CUB = (0, 'shorter')  # CUB_fewshot_raw (whole photos), told apart from the crops by its folder name


def official_transforms(dataset, data_path=''):
    """(train_type, eval_resize) that the official experiments use for this dataset (None for Omniglot)."""
    if dataset == 'cub' and 'raw' in os.path.basename(os.path.normpath(data_path)).lower():
        return RAW_CUB
    return OFFICIAL_TRANSFORMS.get(dataset, (None, None))


def eval_resize(image_size):
    """Shorter side before the centre crop: 92 for 84, the same ratio for other sizes."""
    return int(round(image_size * 92 / 84))


class ToNumpy:
    def __call__(self, tensor):
        return tensor.numpy().astype(np.float32, copy=False)


class Normalized:
    """ToTensor -> Normalize(MEAN, STD) -> ToNumpy as a table lookup: RGB PIL image or uint8 HWC -> float32 [3, H, W].

    Both steps act on each value alone, so a pixel value v of channel c always becomes
    the same float. The table holds paddle's own result for every v and c, computed once
    here through the paddle transforms, so the output is bit-identical to them
    (tests/test_image_cache.py checks it on real photos) at a fraction of the cost.
    """

    def __init__(self):
        every_value = np.repeat(np.arange(256, dtype=np.uint8)[:, None, None], 3, axis=2)  # 256 x 1 x 3
        reference = T.Compose([T.ToTensor(), T.Normalize(mean=MEAN, std=STD), ToNumpy()])
        self.table = np.ascontiguousarray(reference(Image.fromarray(every_value))[:, :, 0])  # 3, 256

    def __call__(self, img):
        pixels = np.asarray(img)  # H, W, 3 uint8
        out = np.empty((3,) + pixels.shape[:2], dtype=np.float32)
        for c in range(3):
            np.take(self.table[c], pixels[..., c], out=out[c])
        return out

class InvertInk:
    """1 - x: strokes become 1 and the background 0, so convolutions' zero padding looks like background."""

    def __call__(self, array):
        return 1.0 - array


def omniglot_transform(image_size, aug=False):
    """PIL image -> float32 numpy [3, S, S] in [0, 1], strokes 1 and background 0 (as Prototypical Networks).

    Resize is PIL's bilinear, which widens its filter when shrinking (area-like), so a
    1-pixel stroke survives as grey instead of vanishing as with nearest. No mean/std
    normalisation: both backbones put BatchNorm right after the first convolution, which
    absorbs any affine rescaling of the input. `aug` is accepted and ignored: the published
    Omniglot results use no augmentation, flips would make other characters, and the
    rotations are already classes.
    """
    return T.Compose([T.Resize((image_size, image_size), interpolation='bilinear'), T.ToTensor(), ToNumpy(),
                      InvertInk()])


def _finish():
    return [Normalized()]


def fixed(transform, deterministic):
    """Mark whether `transform` always gives the same output for an image (the feature cache needs it)."""
    transform.deterministic = deterministic
    return transform


def train_transform(image_size=84, train_type=0):
    if train_type not in TRAIN_TYPES:
        raise ValueError(f'unknown train transform type {train_type!r}; choose one of {TRAIN_TYPES}')
    size = (T.RandomResizedCrop(image_size) if train_type == 0 else
            T.RandomCrop(image_size, padding=int(round(8 * image_size / 84))))
    return fixed(T.Compose([size, T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4),
                            T.RandomHorizontalFlip()] + _finish()), False)


def eval_transform(image_size=84, resize='shorter'):
    if resize not in EVAL_RESIZES:
        raise ValueError(f'unknown eval resize {resize!r}; choose one of {EVAL_RESIZES}')
    side = eval_resize(image_size)
    size = {'shorter': [T.Resize(side)], 'square': [T.Resize((side, side))], 'none': []}[resize]
    return fixed(T.Compose(size + [T.CenterCrop(image_size)] + _finish()), True)


def prepared_eval_transform():
    """The eval transform for images already resized and centre-cropped (an 'eval' image cache)."""
    return fixed(T.Compose(_finish()), True)


def get_transform(image_size, aug, dataset='mini_imagenet', prepared=None, train_type=0, eval_resize='shorter'):
    """The transform for a dataset: Omniglot has its own, natural-image datasets use FRN's.

    prepared: what an image cache already did to the images (`CachedSplit.prepared`):
    ('eval', S) means resized and centre-cropped to S, so only the rest is left to do.
    """
    if prepared is not None:
        if prepared != ('eval', image_size) or aug or eval_resize != 'shorter':
            raise ValueError(f'images prepared as {prepared} cannot be used with image_size {image_size}, aug {aug}')
        return prepared_eval_transform()
    if dataset == 'omniglot':
        return fixed(omniglot_transform(image_size, aug), True)  # Omniglot is never augmented
    return train_transform(image_size, train_type) if aug else eval_transform(image_size, eval_resize)
