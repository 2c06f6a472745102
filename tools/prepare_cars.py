"""Build a few-shot Stanford Cars folder from the original files (either of the dataset's two packagings).

    python tools/prepare_cars.py car_ims.tgz cars_annos.mat --dst datasets
    python tools/prepare_cars.py cars_train.tgz cars_test.tgz car_devkit.tgz cars_test_annos_withlabels.mat --dst datasets
    python tools/prepare_cars.py ~/Downloads/stanford_cars --dst datasets   # a folder holding them

writes datasets/Cars_fewshot/{train,val,test}/<id>.<model name>/<image>: the 16,185 images cut
to their boxes, 196 classes split by FRN's rule (or --split_file). Archives are read as
streams; the folder appears only once complete. See docs/data.md.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runtime.command import cli_main  # noqa: E402  (after the sys.path line)


@cli_main
def main(argv=None):
    from data.prepare_cars_dogs import prepare_cars
    from data.prepare_fewshot import IMAGE_FORMATS
    from data.prepare_output import preparation_parser, report
    args = preparation_parser(__doc__, 'the Stanford Cars archives and .mat files, their extracted folders, or a '
                                       'folder holding them', ['Cars_fewshot'], IMAGE_FORMATS,
                              'its id (1-196), folder or model name', several=True).parse_args(argv)
    report(prepare_cars(args.sources, args.dst, overwrite=args.overwrite, image_format=args.format,
                        split_file=args.split_file), 'cars')


if __name__ == '__main__':
    main()
