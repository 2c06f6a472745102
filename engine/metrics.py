"""Training metrics as data: per-epoch and per-batch records in metrics.jsonl, the curves drawn from them.

The trainer writes one JSON object per line into <run folder>/metrics.jsonl, beside
output.log (whose lines people read; both come from the same values):
    {"event": "epoch_start", "epoch": 3, "lr": 0.05}
    {"event": "batch", "epoch": 3, "batch": 50, "batches": 150, "loss": 1.234567}
    {"event": "epoch_end", "epoch": 3, "train_loss": ..., "train_acc": ..., "val_loss": ..., "val_acc": ...,
     "best_acc": ..., "best_epoch": ..., "minutes": ...}
A resumed run appends to the same file. An epoch_start of epoch N drops what the file held
for epoch N and later, so the newest run's values win and the epochs of an abandoned run
beyond the resume point are not plotted. curves.png and the optional VisualDL scalars are
drawn from these records. Plots use matplotlib's Agg canvas (no display, no global backend change).
"""
import json
import os

from utils import FRNError, atomic_write

METRICS_FILE = 'metrics.jsonl'
CURVES_FILE = 'curves.png'


def new_epoch(epoch, lr):
    """One epoch's values as read_metrics returns them; a value not recorded is None."""
    return {'epoch': epoch, 'lr': lr, 'batch_loss': [], 'train_loss': None, 'train_acc': None, 'val_loss': None,
            'val_acc': None}


def read_metrics(path):
    """[{'epoch', 'lr', 'batch_loss': [(fraction of the epoch, loss)], 'train_loss', 'train_acc', 'val_loss',
    'val_acc'}] in epoch order. A torn last line (a run killed while writing it) is skipped."""
    try:
        with open(path, encoding='utf-8') as f:
            lines = f.read().splitlines()
    except OSError as err:
        raise FRNError(f'cannot read metrics {path!r} ({err.strerror}); give the {METRICS_FILE} of a training run') \
            from None
    epochs, current = {}, None
    for number, line in enumerate(lines):
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines) - 1:
                continue
            raise FRNError(f'{path!r} line {number + 1} is not JSON; it must be the {METRICS_FILE} a training run '
                           f'wrote') from None
        event = record.get('event')
        if event == 'epoch_start':
            current = record['epoch']
            epochs = {e: v for e, v in epochs.items() if e < current}
            epochs[current] = new_epoch(current, record['lr'])
        elif current is None or record.get('epoch') != current:
            continue
        elif event == 'batch':
            epochs[current]['batch_loss'].append((record['batch'] / record['batches'], record['loss']))
        elif event == 'epoch_end':
            epochs[current].update({k: record.get(k) for k in ('train_loss', 'train_acc', 'val_loss', 'val_acc')})
    return [epochs[e] for e in sorted(epochs)]


class MetricsLog:
    """Appends the trainer's records to metrics.jsonl (flushed at once) and mirrors them to VisualDL when asked.

    `path=None` (a rank other than 0) records nothing.
    """

    def __init__(self, path, visualdl_dir=None, log=print):
        self.path = path
        self.scalars = Scalars(bool(path and visualdl_dir), visualdl_dir, log)

    def write(self, event, **values):
        if not self.path:
            return
        with open(self.path, 'a', encoding='utf-8') as f:
            f.write(json.dumps({'event': event, **values}) + '\n')

    def epoch_start(self, epoch, lr):
        self.write('epoch_start', epoch=epoch, lr=lr)
        self.scalars.add('lr', lr, epoch)

    def batch(self, epoch, batch, batches, loss):
        self.write('batch', epoch=epoch, batch=batch, batches=batches, loss=loss)
        self.scalars.add('train/batch_loss', loss, epoch * batches + batch)

    def epoch_end(self, epoch, **values):
        self.write('epoch_end', epoch=epoch, **values)
        for key in ('train_loss', 'train_acc', 'val_loss', 'val_acc'):
            if values.get(key) is not None:
                self.scalars.add(key.replace('_', '/'), values[key], epoch)

    def close(self):
        self.scalars.close()


def _series(epochs, key):
    points = [(e['epoch'], e[key]) for e in epochs if e[key] is not None]
    return [p[0] for p in points], [p[1] for p in points]


def plot_epochs(epochs, out_path, title):
    """Draw loss, accuracy and learning rate per epoch (the records of read_metrics) into a PNG at `out_path`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(15, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    loss_ax, acc_ax, lr_ax = fig.subplots(1, 3)
    style = dict(marker='o', markersize=4)

    batches = [(e['epoch'] + frac, loss) for e in epochs for frac, loss in e['batch_loss']]
    if batches:
        loss_ax.plot(*zip(*batches), '.', color='0.7', markersize=3, label='batch loss (logged)')
    loss_ax.plot(*_series(epochs, 'train_loss'), label='train loss (epoch mean)', **style)
    if any(e['val_loss'] is not None for e in epochs):
        loss_ax.plot(*_series(epochs, 'val_loss'), '--', label='val loss', **style)
    loss_ax.set(title='loss', xlabel='epoch', ylabel='loss')

    acc_ax.plot(*_series(epochs, 'train_acc'), label='train acc', **style)
    val = _series(epochs, 'val_acc')
    if val[0]:
        best = max(range(len(val[1])), key=lambda i: val[1][i])  # the first best, as the trainer keeps it
        acc_ax.plot(*val, label=f'val acc (best {val[1][best]:.2f} at epoch {val[0][best]})', **style)
    else:
        acc_ax.text(0.5, 0.5, 'no validation (--val last)', transform=acc_ax.transAxes, ha='center', color='0.5')
    acc_ax.set(title='accuracy', xlabel='epoch', ylabel='accuracy (%)')

    lr_ax.step(*_series(epochs, 'lr'), where='post', **style)
    lr_ax.set(title='learning rate', xlabel='epoch', ylabel='lr', yscale='log')

    for ax in (loss_ax, acc_ax, lr_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(f'{title}: {len(epochs)} epoch(s)')
    fig.tight_layout()
    atomic_write(out_path, lambda tmp: fig.savefig(tmp, format='png'))
    return out_path


def save_curves(run_dir, log):
    """At the end of training: curves.png from the run's metrics.jsonl. A failure only warns: the weights are saved."""
    run_dir = os.path.abspath(run_dir)
    out_path = os.path.join(run_dir, CURVES_FILE)
    try:
        plot_epochs(read_metrics(os.path.join(run_dir, METRICS_FILE)), out_path, os.path.basename(run_dir))
        log(f'training curves saved to {out_path}')
    except Exception as err:  # noqa: BLE001  (a plot must never fail a finished run)
        log(f'warning: could not plot the training curves ({type(err).__name__}: {err}); '
            f'run python tools/plot_log.py {os.path.join(run_dir, "output.log")}')


class Scalars:
    """VisualDL scalars when `enabled` and VisualDL is installed; otherwise every call does nothing."""

    def __init__(self, enabled, logdir, log):
        self.writer = None
        if not enabled:
            return
        try:
            from visualdl import LogWriter
        except ImportError:
            log('warning: --visualdl was given but VisualDL is not installed; training goes on without it '
                '(pip install visualdl to log scalars)')
            return
        self.writer = LogWriter(logdir=logdir)
        log(f'VisualDL scalars go to {logdir} (view them with: visualdl --logdir {logdir})')

    def add(self, tag, value, step):
        if self.writer is not None:
            self.writer.add_scalar(tag=tag, value=float(value), step=int(step))

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None
