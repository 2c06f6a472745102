"""Build FRN's few-shot Aircraft folder from the official FGVC-Aircraft 2013b archive (or its extracted folder).

    python tools/prepare_aircraft.py fgvc-aircraft-2013b.tar.gz --dst datasets

writes datasets/Aircraft_fewshot/{train,val,test}/<variant number>/<image>, bounding-box crops
with FRN's 50/25/25 split of the 100 variants (split.json maps numbers to variant names).
The archive is read as a stream; the folder appears only once complete. See README, Data.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cli  # noqa: E402  (after the sys.path line; first, as it sets up the process)


@cli.cli_main
def main(argv=None):
    from data.prepare_fewshot import IMAGE_FORMATS, prepare_aircraft
    from data.prepare_output import format_summary
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('source', help='fgvc-aircraft-2013b.tar.gz, or the folder it extracts to')
    parser.add_argument('--dst', required=True, help='folder to write Aircraft_fewshot/ in')
    parser.add_argument('--overwrite', action='store_true', help='replace Aircraft_fewshot/ if it exists')
    parser.add_argument('--format', choices=sorted(IMAGE_FORMATS), default='png',
                        help='file format of the crops: png (lossless, as the official script) or jpeg (quality 95)')
    args = parser.parse_args(argv)
    summary = prepare_aircraft(args.source, args.dst, overwrite=args.overwrite, image_format=args.format)
    print(format_summary(summary))
    print(f'next: --dataset aircraft --data_path {summary["outputs"][0]}')


if __name__ == '__main__':
    main()
