"""Build FRN's few-shot CUB folders from the official CUB-200-2011 archive (or its extracted folder).

    python tools/prepare_cub.py CUB_200_2011.tgz --dst datasets

writes datasets/CUB_fewshot_cropped/ (bounding-box crops) and datasets/CUB_fewshot_raw/ (the
images as they are), each {train,val,test}/<class>/<image> with FRN's 100/50/50 class split.
The archive is read as a stream; the folders appear only once complete. See docs/data.md.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runtime.command import cli_main  # noqa: E402  (after the sys.path line)


@cli_main
def main(argv=None):
    from data.prepare_fewshot import IMAGE_FORMATS, prepare_cub
    from data.prepare_output import preparation_parser, report
    args = preparation_parser(__doc__, 'CUB_200_2011.tgz, or the folder it extracts to',
                              ['CUB_fewshot_cropped', 'CUB_fewshot_raw'], IMAGE_FORMATS).parse_args(argv)
    report(prepare_cub(args.sources, args.dst, overwrite=args.overwrite, image_format=args.format), 'cub')


if __name__ == '__main__':
    main()
