"""Decoding one image file with every way it can fail turned into one FRNError that names it.

Pillow refuses an image whose header claims more than twice `Image.MAX_IMAGE_PIXELS`
(about 179 million pixels by default) with `DecompressionBombError`, which is not an
OSError, so code that catches only OSError lets it through as a traceback. A damaged or
hostile archive can hold such a header; `decode_image` names the file instead. It depends
on nothing but Pillow and `utils`, so the training loops' reader (data/images.py) can use
it too.
"""
import io

from PIL import Image, UnidentifiedImageError

from utils import FRNError


def decode_image(source, where):
    """The image in `source` (bytes, a path or a file object), decoded in full; FRNError naming `where` if unreadable."""
    try:
        img = Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source)
        img.load()
        return img
    except Image.DecompressionBombError as err:
        raise FRNError(f'image {where} claims more pixels than Pillow\'s decompression-bomb limit ({err}); '
                       f'its header is damaged or it is not a photo: replace the file (or download the archive '
                       f'again)') from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as err:
        raise FRNError(f'cannot read image {where} ({err}); the file is damaged or not an image: replace it '
                       f'(or download the archive again)') from None
