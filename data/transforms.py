"""Image transforms: natural images exactly as the official FRN code, and Omniglot's (paddle.vision.transforms).

Train: RandomResizedCrop(S) -> ColorJitter(0.4, 0.4, 0.4) -> RandomHorizontalFlip -> ToTensor -> Normalize.
Eval:  Resize(S * 92/84) on the shorter side -> CenterCrop(S) -> ToTensor -> Normalize.
Both take a PIL image and return a float32 numpy array [3, S, S]: numpy, not paddle
tensors, because paddle's shared-memory DataLoader workers fail on tensors.
ToTensor -> Normalize runs as a table lookup of paddle's own results (`Normalized`),
bit-identical and several times faster.
"""
import numpy as np
from paddle.vision import transforms as T
from PIL import Image

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


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


def train_transform(image_size=84):
    return fixed(T.Compose([T.RandomResizedCrop(image_size),
                            T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4),
                            T.RandomHorizontalFlip()] + _finish()), False)


def eval_transform(image_size=84):
    return fixed(T.Compose([T.Resize(eval_resize(image_size)), T.CenterCrop(image_size)] + _finish()), True)


def prepared_eval_transform():
    """The eval transform for images already resized and centre-cropped (an 'eval' image cache)."""
    return fixed(T.Compose(_finish()), True)


def get_transform(image_size, aug, dataset='mini_imagenet', prepared=None):
    """The transform for a dataset: Omniglot has its own, natural-image datasets use FRN's.

    prepared: what an image cache already did to the images (`CachedSplit.prepared`):
    ('eval', S) means resized and centre-cropped to S, so only the rest is left to do.
    """
    if prepared is not None:
        if prepared != ('eval', image_size) or aug:
            raise ValueError(f'images prepared as {prepared} cannot be used with image_size {image_size}, aug {aug}')
        return prepared_eval_transform()
    if dataset == 'omniglot':
        return fixed(omniglot_transform(image_size, aug), True)  # Omniglot is never augmented
    return train_transform(image_size) if aug else eval_transform(image_size)
