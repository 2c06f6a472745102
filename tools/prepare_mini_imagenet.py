"""Build mini-ImageNet (the seed's layout: images/ plus the split CSVs) from ILSVRC-2012's training archive.

    python tools/prepare_mini_imagenet.py ILSVRC2012_img_train.tar --dst datasets
    python tools/prepare_mini_imagenet.py /data/ILSVRC/train --dst datasets   # an extracted train folder

writes datasets/mini-ImageNet/images/*.jpg (60,000 images, 84x84 unless --image_size says
otherwise) and train.csv, val.csv, test.csv (Ravi & Larochelle's split, shipped in
data/splits/mini_imagenet/). The archive is read as a stream and only the 100 classes'
tars are opened; the folder appears only once complete. See docs/data.md.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runtime.command import cli_main  # noqa: E402  (after the sys.path line)


@cli_main
def main(argv=None):
    from data.prepare_mini_imagenet import CSV_DIR, prepare_mini_imagenet
    from data.prepare_output import preparation_parser, report
    parser = preparation_parser(__doc__, 'ILSVRC2012_img_train.tar, or its extracted train folder (one folder or '
                                         'one .tar per class)', ['mini-ImageNet'])
    parser.add_argument('--image_size', type=int, default=84,
                        help='side of the squashed square images (area averaging, JPEG quality 95), as the common '
                             'mini-ImageNet distributions are; 0 keeps the original ILSVRC files')
    parser.add_argument('--split_dir', default=CSV_DIR, help='folder with the split files train.csv, val.csv, '
                                                             'test.csv (header filename,label)')
    args = parser.parse_args(argv)
    report(prepare_mini_imagenet(args.sources, args.dst, overwrite=args.overwrite, image_size=args.image_size,
                                 split_dir=args.split_dir), 'mini_imagenet')


if __name__ == '__main__':
    main()
