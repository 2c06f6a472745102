"""Opening image files as the 8-bit RGB images the transforms take, the same way everywhere.

Training, testing, the image cache, `deploy/predict.py`, `tools/infer.py` and
`tools/visualize.py` all open files through `load_image`, so an image looks the same to
each. What it does beyond `Image.convert('RGB')`, which gets these cases wrong:
- EXIF orientation: a photo that a camera stored sideways with an orientation tag is
  turned upright (`ImageOps.exif_transpose`), as image viewers show it. An unreadable EXIF
  block is ignored.
- Transparency (RGBA, LA, PA, or a palette or colour key with a transparent entry): the
  image is composited on white, as a browser on a white page shows it. `convert` would
  drop the alpha and keep whatever colour the transparent pixels happen to store (often black).
- More than 8 bits (Pillow clips these to 255, so 16-bit photos came out white):
  - 16-bit (`I;16`, `I;16B`, `I;16L`, `I;16N`): scaled by the type's range, v * 255 / 65535;
  - 32-bit integer (`I`): Pillow 9 and older open 16-bit PNGs as `I`, so values within
    0..65535 are scaled as 16-bit; other ranges are scaled from their minimum to their maximum;
  - float (`F`): values within [0, 1] are scaled by 255; other ranges from minimum to maximum.
  Each result is rounded to the nearest integer, and greyscale becomes grey RGB.
"""
import os

import numpy as np
from PIL import Image, ImageOps

from data.decode import decode_image
from utils import FRNError

ALPHA_MODES = ('RGBA', 'RGBa', 'LA', 'La', 'PA')
SIXTEEN_BIT_MODES = ('I;16', 'I;16B', 'I;16L', 'I;16N')


def _scaled_to_uint8(values, low, high):
    """values in [low, high] -> uint8 0..255, rounded; a constant image becomes 0."""
    values = values.astype(np.float64)
    span = float(high) - float(low)
    if span <= 0:
        return np.zeros(values.shape, dtype=np.uint8)
    return np.clip(np.rint((values - low) * (255.0 / span)), 0, 255).astype(np.uint8)


def high_depth_to_8bit(img):
    """An `I;16*`, `I` or `F` image as an 8-bit greyscale ('L') image, scaled as the module docstring says."""
    values = np.asarray(img)
    if img.mode in SIXTEEN_BIT_MODES:
        low, high = 0, 65535
    elif img.mode == 'I' and values.size and values.min() >= 0 and values.max() <= 65535:
        low, high = 0, 65535
    elif img.mode == 'F' and values.size and np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1:
        low, high = 0.0, 1.0
    else:
        finite = values[np.isfinite(values)] if values.dtype.kind == 'f' else values
        low, high = (finite.min(), finite.max()) if finite.size else (0, 0)
        values = np.nan_to_num(values, nan=low, posinf=high, neginf=low) if values.dtype.kind == 'f' else values
    return Image.fromarray(_scaled_to_uint8(values, low, high), mode='L')


def to_rgb(img):
    """A decoded PIL image of any mode as the RGB image the transforms take (see the module docstring)."""
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block must not make a readable image unusable
        pass
    if img.mode in SIXTEEN_BIT_MODES or img.mode in ('I', 'F'):
        return high_depth_to_8bit(img).convert('RGB')
    if img.mode in ALPHA_MODES or 'transparency' in img.info:
        rgba = img.convert('RGBA')
        white = Image.new('RGBA', rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert('RGB')
    return img.convert('RGB')


def load_image(path):
    """Open an image file as RGB (any mode: see the module docstring), or raise an FRNError naming the file.

    Decoding goes through data/decode.py, so a header past Pillow's decompression-bomb limit is named
    like any other unreadable file, in the main process and in loader workers alike."""
    where = repr(os.fspath(path))
    try:
        f = open(path, 'rb')
    except FileNotFoundError:
        raise FRNError(f'image {where} does not exist; the file list points at a missing file, '
                       f'so regenerate it or restore the image') from None
    except IsADirectoryError:
        raise FRNError(f'image {where} is a folder, not an image file; fix the file list') from None
    except PermissionError:
        raise FRNError(f'image {where} cannot be read: permission denied; fix its permissions') from None
    except OSError as err:
        raise FRNError(f'cannot read image {where} ({err}); replace or remove the file') from None
    with f:
        return to_rgb(decode_image(f, where, fix='replace or remove the file'))
