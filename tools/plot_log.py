"""Plot the training curves of an output.log: loss, train and val accuracy, and learning rate per epoch.

    python tools/plot_log.py checkpoints/mini_imagenet/ResNet12_stl_frn_pretrain/output.log [--out curves.png]

Writes curves.png beside the log unless --out is given. Training writes the same file
when it ends; this redraws it at any time, for instance while a run is still going.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cli  # noqa: E402  (after the sys.path line; first, as it sets up the process)


@cli.cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('log', help='output.log of pretrain.py or meta_train.py')
    parser.add_argument('--out', default=None, help='PNG to write (default: curves.png beside the log)')
    args = parser.parse_args(argv)
    from engine.metrics import parse_log, plot_log
    path = plot_log(args.log, args.out)
    epochs = parse_log(args.log)
    print(f'{len(epochs)} epoch(s) of {args.log} plotted to {path}')


if __name__ == '__main__':
    main()
