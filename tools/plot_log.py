"""Plot the training curves of a run: loss, train and val accuracy, and learning rate per epoch.

    python tools/plot_log.py checkpoints/mini_imagenet/ResNet12_stl_frn_pretrain/output.log [--out curves.png]

The curves come from metrics.jsonl beside the log, which training writes; for an older run
that has only output.log, the log's lines are parsed instead. Writes curves.png beside the
log unless --out is given. Training writes the same file when it ends; this redraws it at
any time, for instance while a run is still going.
"""
import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cli  # noqa: E402  (after the sys.path line; first, as it sets up the process)
from engine.metrics import CURVES_FILE, METRICS_FILE, new_epoch, plot_epochs, read_metrics  # noqa: E402
from utils import FRNError  # noqa: E402

# The trainer's output.log lines that carry the numbers (batch lines may go on after the loss).
EPOCH = re.compile(r'Epoch (\d+) \| lr (\S+)')
BATCH = re.compile(r'Epoch (\d+) \| Batch (\d+)/(\d+) \| Loss ([^\s|]+)(?: \|.*)?')
VAL = re.compile(r'val loss is (\S+), val acc is (\S+)')
TRAIN = re.compile(r'train loss is (\S+), train acc is (\S+)')


def parse_log(path):
    """The records of read_metrics, recovered from an output.log (for runs older than metrics.jsonl).

    As with the records, an `Epoch N | lr` line starts epoch N afresh, so after a resume the
    newest values win.
    """
    try:
        with open(path, encoding='utf-8') as f:
            lines = f.read().splitlines()
    except OSError as err:
        raise FRNError(f'cannot read log {path!r} ({err.strerror}); give the output.log of a training run') from None
    epochs, current = {}, None
    for line in lines:
        if m := EPOCH.fullmatch(line):
            current = int(m[1])
            epochs = {e: v for e, v in epochs.items() if e < current}
            epochs[current] = new_epoch(current, float(m[2]))
        elif current is None:
            continue
        elif (m := BATCH.fullmatch(line)) and int(m[1]) == current:
            epochs[current]['batch_loss'].append((int(m[2]) / int(m[3]), float(m[4])))
        elif m := VAL.fullmatch(line):
            epochs[current].update(val_loss=float(m[1]), val_acc=float(m[2]))
        elif m := TRAIN.fullmatch(line):
            epochs[current].update(train_loss=float(m[1]), train_acc=float(m[2]))
    return [epochs[e] for e in sorted(epochs)]


def run_epochs(log_path):
    """The epochs of a run: from metrics.jsonl beside the log when it is there, else parsed from the log."""
    metrics = os.path.join(os.path.dirname(os.path.abspath(log_path)), METRICS_FILE)
    if os.path.isfile(metrics):
        return read_metrics(metrics)
    if os.path.isdir(log_path):
        raise FRNError(f'{log_path!r} is a folder without {METRICS_FILE}; give the output.log of a training run')
    return parse_log(log_path)


def plot_log(log_path, out_path=None):
    """Write the curves of the run of `log_path` to `out_path` (default: curves.png beside the log)."""
    epochs = run_epochs(log_path)
    if not epochs:
        raise FRNError(f'{log_path!r} has no "Epoch N | lr X" lines; give the output.log of pretrain.py or '
                       f'meta_train.py')
    folder = os.path.dirname(os.path.abspath(log_path))
    out_path = out_path or os.path.join(folder, CURVES_FILE)
    plot_epochs(epochs, out_path, os.path.basename(folder))
    return out_path, epochs


@cli.cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('log', help='output.log of pretrain.py or meta_train.py')
    parser.add_argument('--out', default=None, help='PNG to write (default: curves.png beside the log)')
    args = parser.parse_args(argv)
    path, epochs = plot_log(args.log, args.out)
    print(f'{len(epochs)} epoch(s) of {args.log} plotted to {path}')


if __name__ == '__main__':
    main()
