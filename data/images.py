"""Opening image files."""
from PIL import Image, UnidentifiedImageError

from utils import FRNError


def load_image(path):
    """Open an image as RGB (greyscale, palette and CMYK files are converted)."""
    try:
        with Image.open(path) as img:
            return img.convert('RGB')
    except FileNotFoundError:
        raise FRNError(f'image {path!r} does not exist; the file list points at a missing file, '
                       f'so regenerate it or restore the image') from None
    except (UnidentifiedImageError, OSError) as err:
        raise FRNError(f'cannot read image {path!r} ({err}); replace or remove the file') from None
