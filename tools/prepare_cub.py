"""Build FRN's few-shot CUB folders from the official CUB-200-2011 archive (or its extracted folder).

    python tools/prepare_cub.py CUB_200_2011.tgz --dst datasets

writes datasets/CUB_fewshot_cropped/ (bounding-box crops) and datasets/CUB_fewshot_raw/ (the
images as they are), each {train,val,test}/<class>/<image> with FRN's 100/50/50 class split.
The archive is read as a stream; the folders appear only once complete. See README, Data.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cli  # noqa: E402  (after the sys.path line; first, as it sets up the process)


@cli.cli_main
def main(argv=None):
    from data.prepare_fewshot import IMAGE_FORMATS, prepare_cub
    from data.prepare_output import format_summary
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('source', help='CUB_200_2011.tgz, or the folder it extracts to')
    parser.add_argument('--dst', required=True, help='folder to write CUB_fewshot_cropped/ and CUB_fewshot_raw/ in')
    parser.add_argument('--overwrite', action='store_true', help='replace those folders if they exist')
    parser.add_argument('--format', choices=sorted(IMAGE_FORMATS), default='png',
                        help='file format of the crops: png (lossless, as the official script) or jpeg (quality 95)')
    args = parser.parse_args(argv)
    summary = prepare_cub(args.source, args.dst, overwrite=args.overwrite, image_format=args.format)
    print(format_summary(summary))
    print(f'next: --dataset cub --data_path {summary["outputs"][0]}')


if __name__ == '__main__':
    main()
