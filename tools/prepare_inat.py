"""Build meta-iNat and tiered meta-iNat from iNat2017's training images and bounding boxes, as FRN builds them.

    python tools/prepare_inat.py train_val_images.tar.gz train_2017_bboxes.json --dst datasets
    python tools/prepare_inat.py /data/inat2017 --dst datasets   # a folder holding them (or their extracted forms)

writes datasets/meta_iNat/ and datasets/tiered_meta_iNat/, each with train/, test/, refr/ and
query/ (<category id>/<image>.png, 84x84), box_coords.json and split.json. The 186 GB archive
is read as a stream, keeping only the images needed; the folders appear only once complete.
train_2017_bboxes.zip, as it is downloaded, may be given instead of the JSON. See docs/data.md.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runtime.command import cli_main  # noqa: E402  (after the sys.path line)


@cli_main
def main(argv=None):
    from data.prepare_inat import OUTPUTS, prepare_inat
    from data.prepare_output import preparation_parser, report
    parser = preparation_parser(__doc__, 'train_val_images.tar.gz (or its extracted train_val_images/) and '
                                         'train_2017_bboxes.json (or .zip), or a folder holding them', OUTPUTS,
                                several=True)
    args = parser.parse_args(argv)
    for summary, dataset in zip(prepare_inat(args.sources, args.dst, overwrite=args.overwrite),
                                ('meta_inat', 'tiered_meta_inat')):
        report(summary, dataset)


if __name__ == '__main__':
    main()
