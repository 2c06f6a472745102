"""Build FRN's few-shot Aircraft folder from the official FGVC-Aircraft 2013b archive (or its extracted folder).

    python tools/prepare_aircraft.py fgvc-aircraft-2013b.tar.gz --dst datasets

writes datasets/Aircraft_fewshot/{train,val,test}/<variant number>/<image>, bounding-box crops
with FRN's 50/25/25 split of the 100 variants (split.json maps numbers to variant names).
The archive is read as a stream; the folder appears only once complete. See docs/data.md.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runtime.command import cli_main  # noqa: E402  (after the sys.path line)


@cli_main
def main(argv=None):
    from data.prepare_fewshot import IMAGE_FORMATS, prepare_aircraft
    from data.prepare_output import preparation_parser, report
    args = preparation_parser(__doc__, 'fgvc-aircraft-2013b.tar.gz, or the folder it extracts to',
                              ['Aircraft_fewshot'], IMAGE_FORMATS).parse_args(argv)
    report(prepare_aircraft(args.sources, args.dst, overwrite=args.overwrite, image_format=args.format), 'aircraft')


if __name__ == '__main__':
    main()
