"""Build the pre-resized image cache of a dataset's splits (see data/image_cache.py).

    python tools/build_image_cache.py --data_path DATA --cache_dir CACHE --image_size 84 [--num_workers 2]

Then pass `--cache_dir CACHE --image_size 84` to pretrain.py, meta_train.py or test.py.
The scripts also build a missing cache on first use; this tool builds it ahead of time,
in parallel, and with --rebuild replaces a cache whose source images changed.
val and test are stored resized and centre-cropped (bit-identical eval tensors), train
with its shorter side resized to 128 px (for --image_size 84), for RandomResizedCrop.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runtime.command import cli_main, new_parser  # noqa: E402  (after the sys.path line)
from utils import FRNError  # noqa: E402


@cli_main
def main(argv=None):
    parser = new_parser(__doc__.split('\n')[0])
    parser.add_argument('--data_path', required=True, help='dataset folder (mini-ImageNet format or one folder per split)')
    parser.add_argument('--cache_dir', required=True, help='folder for the cache files')
    parser.add_argument('--image_size', type=int, default=84, help='input side the cache is for')
    parser.add_argument('--splits', nargs='+', default=['train', 'val', 'test'], choices=['train', 'val', 'test'])
    parser.add_argument('--num_workers', type=int, default=0, help='processes decoding images (0: this one)')
    parser.add_argument('--rebuild', action='store_true', help='replace existing caches of these splits')
    args = parser.parse_args(argv)
    if args.image_size < 1 or args.num_workers < 0:
        raise FRNError('--image_size must be at least 1 and --num_workers 0 or more')
    from data.filelist import read_split
    from data import image_cache
    for name in args.splits:
        split = read_split(args.data_path, name)
        spec = image_cache.resize_spec(image_cache.cache_form(name), args.image_size)
        stem = image_cache.cache_stem(args.cache_dir, split, name, spec)
        if args.rebuild:
            for path in (stem + '.json', stem + '.u8'):
                if os.path.exists(path):
                    os.remove(path)
        cached = image_cache.open_cache(split, args.cache_dir, name, args.image_size, num_workers=args.num_workers)
        print(f'{name}: {len(cached)} images in {cached.pixels_path} '
              f'({os.path.getsize(cached.pixels_path) / 1e6:.0f} MB, {image_cache.cache_form(name)} form)')


if __name__ == '__main__':
    main()
