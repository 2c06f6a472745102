"""Image transforms, exactly as the official FRN code (built from paddle.vision.transforms).

Train: RandomResizedCrop(S) -> ColorJitter(0.4, 0.4, 0.4) -> RandomHorizontalFlip -> ToTensor -> Normalize.
Eval:  Resize(S * 92/84) on the shorter side -> CenterCrop(S) -> ToTensor -> Normalize.
Both take a PIL image and return a float32 numpy array [3, S, S]: numpy, not paddle
tensors, because paddle's shared-memory DataLoader workers fail on tensors.
"""
import numpy as np
from paddle.vision import transforms as T

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def eval_resize(image_size):
    """Shorter side before the centre crop: 92 for 84, the same ratio for other sizes."""
    return int(round(image_size * 92 / 84))


class ToNumpy:
    def __call__(self, tensor):
        return tensor.numpy().astype(np.float32, copy=False)


def _finish():
    return [T.ToTensor(), T.Normalize(mean=MEAN, std=STD), ToNumpy()]


def train_transform(image_size=84):
    return T.Compose([T.RandomResizedCrop(image_size),
                      T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4),
                      T.RandomHorizontalFlip()] + _finish())


def eval_transform(image_size=84):
    return T.Compose([T.Resize(eval_resize(image_size)), T.CenterCrop(image_size)] + _finish())


def get_transform(image_size, aug, dataset='mini_imagenet'):
    """The transform for a dataset: Omniglot has its own, natural-image datasets use FRN's."""
    if dataset == 'omniglot':
        from data.omniglot import omniglot_transform
        return omniglot_transform(image_size, aug)
    return train_transform(image_size) if aug else eval_transform(image_size)
