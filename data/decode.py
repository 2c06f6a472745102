"""Decoding one image file with every way it can fail turned into one FRNError that names it.

Pillow refuses an image whose header claims more than twice `Image.MAX_IMAGE_PIXELS`
(about 179 million pixels by default) with `DecompressionBombError`, which is not an
OSError, so code that catches only OSError lets it through as a traceback. A damaged or
hostile archive can hold such a header; `decode_image` names the file instead. It depends
on nothing but Pillow and `utils`, so every reader uses it: the dataset tools and
data/images.py, through which the training and test loops, the image cache and the
prediction tools open their files.
"""
import io

from PIL import Image, UnidentifiedImageError

from utils import FRNError


ARCHIVE_FIX = 'replace it (or download the archive again)'


def decode_image(source, where, fix=ARCHIVE_FIX):
    """The image in `source` (bytes, a path or a file object), decoded in full; FRNError naming `where` if unreadable.

    `fix` ends the message: what the user should do about the file."""
    try:
        img = Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)
        img.load()
        return img
    except Image.DecompressionBombError as err:
        raise FRNError(f'image {where} claims more pixels than Pillow\'s decompression-bomb limit ({err}); '
                       f'its header is damaged or it is not a photo: {fix}') from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as err:
        raise FRNError(f'cannot read image {where} ({err}); the file is damaged or not an image: {fix}') from None
