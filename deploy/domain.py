"""Do the images look like what the model was trained on? One warning when most of them do not.

The preprocessing record beside a model (data/preprocess.py: preprocess.json, or
frn_head.json's "preprocess") names its training data's family: "omniglot" (pen strokes,
greyscale, a plain background) or "natural" (colour photos). Two measures of an image, on a
copy of at most SIDE pixels made without new grey levels (nearest neighbour):
- colour: the mean over pixels of max(R, G, B) - min(R, G, B), in [0, 1]; 0 for a greyscale image;
- mid-tones: the share of pixels whose luminance is neither near black nor near white; close to 0
  for strokes on a plain background, large for a photo.
A character model given an image in colour or with mid-tones, or a photo model given an image
without colour (greyscale photos, scans of drawings), is outside its domain; its scores on
such images mean little. The check looks at most SAMPLE images.
"""
import numpy as np

SIDE = 96
SAMPLE = 64
COLOUR = 0.02       # mean channel spread above which an image is in colour
MID_TONES = 0.15    # share of mid-tone pixels above which an image is not two-tone strokes
DOMAINS = {'omniglot': 'greyscale handwritten characters (strokes on a plain background)',
           'natural': 'colour photos'}


def measures(image):
    """(colour, mid-tones) of a PIL image, both in [0, 1] (see the module's docstring)."""
    from PIL import Image
    image = image.convert('RGB')
    image.thumbnail((SIDE, SIDE), Image.NEAREST)
    pixels = np.asarray(image, dtype=np.float32) / 255.0  # h, w, 3
    colour = float((pixels.max(axis=2) - pixels.min(axis=2)).mean())
    luminance = pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return colour, float(((luminance > 0.15) & (luminance < 0.85)).mean())


def looks_like(colour, mid_tones):
    """'natural' (a colour image), 'omniglot' (two-tone, without colour) or 'grey' (a greyscale photo)."""
    if colour > COLOUR:
        return 'natural'
    return 'omniglot' if mid_tones <= MID_TONES else 'grey'


def mismatch(family, paths, dataset=None):
    """A one-line warning when most of `paths` (a sample of SAMPLE, spread evenly) look unlike the training data
    of a model of `family` (trained on `dataset`), else None."""
    from data.images import load_image
    if family not in DOMAINS or not paths:
        return None
    step = max(1, len(paths) // SAMPLE)
    sample = list(paths)[::step][:SAMPLE]
    kinds = [looks_like(*measures(load_image(p))) for p in sample]
    outside = [k for k in kinds if k != family]
    if 2 * len(outside) <= len(kinds):
        return None
    seen = max(set(outside), key=outside.count)
    what = {'natural': 'colour photos', 'grey': 'greyscale photos',
            'omniglot': 'greyscale line drawings or characters'}[seen]
    return (f'{len(outside)} of the {len(kinds)} images checked look like {what}, but this model was trained on '
            f'{dataset + ", " if dataset else ""}{DOMAINS[family]}; its predictions on them mean little. Use a model trained on images like yours '
            f'(README, "Your own photos")')
