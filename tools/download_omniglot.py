"""Download Omniglot's two official zips and the Vinyals split files into a folder, verified.

    python tools/download_omniglot.py --dst data/omniglot

The zips come from github.com/brendenlake/omniglot (python/) and must match the upstream
size and md5; the split files come from github.com/jakesnell/prototypical-networks and
must have the expected number of well-formed lines. Files already there that check out
are skipped. Each file goes to a temp file first and is renamed into place only once it
checks out. Offline, it says which files to place where, and exits with code 2.
Then use the folder as `--data_path` with `--dataset omniglot`.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import utils  # noqa: E402  (after the sys.path line, so the script runs from anywhere)


@utils.cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--dst', required=True, help='folder for the zips and splits_vinyals/ (created if needed)')
    parser.add_argument('--timeout', type=float, default=60, help='seconds to wait for the network before giving up')
    args = parser.parse_args(argv)
    from data.omniglot import fetch_omniglot
    fetch_omniglot(args.dst, timeout=args.timeout)
    print(f'Omniglot is ready: --dataset omniglot --data_path {args.dst}')


if __name__ == '__main__':
    main()
