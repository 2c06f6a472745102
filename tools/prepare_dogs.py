"""Build a few-shot Stanford Dogs folder from the original images.tar, annotation.tar and lists.tar.

    python tools/prepare_dogs.py images.tar annotation.tar lists.tar --dst datasets
    python tools/prepare_dogs.py ~/Downloads/stanford_dogs --dst datasets   # a folder holding them

writes datasets/Dogs_fewshot/{train,val,test}/<wnid>-<breed>/<image>: the 20,580 images cut to
their largest box, 120 breeds split by FRN's rule (or --split_file). Archives are read as
streams; the folder appears only once complete. See docs/data.md.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runtime.command import cli_main  # noqa: E402  (after the sys.path line)


@cli_main
def main(argv=None):
    from data.prepare_cars_dogs import prepare_dogs
    from data.prepare_fewshot import IMAGE_FORMATS
    from data.prepare_output import preparation_parser, report
    args = preparation_parser(__doc__, 'images.tar, annotation.tar and lists.tar, their extracted folders, or a '
                                       'folder holding them', ['Dogs_fewshot'], IMAGE_FORMATS,
                              'its id (1-120), folder (n02085620-Chihuahua) or breed', several=True).parse_args(argv)
    report(prepare_dogs(args.sources, args.dst, overwrite=args.overwrite, image_format=args.format,
                        split_file=args.split_file), 'dogs')


if __name__ == '__main__':
    main()
