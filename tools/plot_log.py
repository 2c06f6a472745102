"""Plot the training curves of a run: training loss, validation loss, accuracy and learning rate per epoch.

    python tools/plot_log.py checkpoints/mini_imagenet/ResNet12_stl_frn_pretrain/output.log [--out curves.png]

The curves come from the run's metrics.jsonl (engine/metrics.py), which training writes beside
output.log; give the run folder, its output.log or its metrics.jsonl. Writes curves.png in the
run folder unless --out is given. Training writes the same file when it ends; this redraws it
at any time, for instance while a run is still going.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from engine.metrics import CURVES_FILE, METRICS_FILE, plot_epochs, read_metrics  # noqa: E402
from runtime.command import cli_main, new_parser  # noqa: E402
from utils import FRNError  # noqa: E402


def run_folder(path):
    """The run folder of `path`: the folder itself, or the one holding its output.log or metrics.jsonl."""
    return os.path.abspath(path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path)))


def plot_log(path, out_path=None):
    """Write the curves of the run of `path` to `out_path` (default: curves.png in the run folder)."""
    folder = run_folder(path)
    metrics = os.path.join(folder, METRICS_FILE)
    if not os.path.isfile(metrics):
        raise FRNError(f'{folder} has no {METRICS_FILE}; give the folder (or output.log) of a run of pretrain.py '
                       f'or meta_train.py, which write it')
    epochs = read_metrics(metrics)
    if not epochs:
        raise FRNError(f'{metrics!r} holds no epoch yet; plot it once the run has started its first epoch')
    out_path = out_path or os.path.join(folder, CURVES_FILE)
    plot_epochs(epochs, out_path, os.path.basename(folder))
    return out_path, epochs


@cli_main
def main(argv=None):
    parser = new_parser(__doc__.split('\n')[0])
    parser.add_argument('log', help=f'a run folder of pretrain.py or meta_train.py, or its output.log or {METRICS_FILE}')
    parser.add_argument('--out', default=None, help='PNG to write (default: curves.png in the run folder)')
    args = parser.parse_args(argv)
    path, epochs = plot_log(args.log, args.out)
    print(f'{len(epochs)} epoch(s) of {args.log} plotted to {path}')


if __name__ == '__main__':
    main()
