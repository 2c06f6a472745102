"""Training curves: parse output.log, plot loss, accuracy and learning rate per epoch; optional VisualDL scalars.

The log lines are those of engine/trainer.py:
    Epoch 3 | lr 0.05                      starts epoch 3
    Epoch 3 | Batch 50/150 | Loss 1.234567 | avg_reader_cost: 0.00100 sec | avg_batch_cost: 0.50000 sec | avg_ips: 256.00 images/sec
    val loss is 1.23, val acc is 45.67
    train loss is 1.23, train acc is 45.67
A resumed run appends to the same log. An `Epoch N | lr` line starts epoch N afresh and
drops what the log held for epoch N and later, so the newest run's values win and the
epochs of an abandoned run beyond the resume point are not plotted.

Plots are drawn with matplotlib's Agg canvas (no display, no global backend change).
"""
import os
import re

from utils import FRNError, atomic_write

EPOCH = re.compile(r'Epoch (\d+) \| lr (\S+)')
BATCH = re.compile(r'Epoch (\d+) \| Batch (\d+)/(\d+) \| Loss (\S+)(?: \| avg_reader_cost: .*)?')  # + TIPC timings
VAL = re.compile(r'val loss is (\S+), val acc is (\S+)')
TRAIN = re.compile(r'train loss is (\S+), train acc is (\S+)')
CURVES_FILE = 'curves.png'


def parse_log(path):
    """[{'epoch', 'lr', 'batch_loss': [(fraction of the epoch, loss)], 'train_loss', 'train_acc', 'val_loss',
    'val_acc'}] in epoch order; a value the log lacks is None."""
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
            epochs[current] = {'epoch': current, 'lr': float(m[2]), 'batch_loss': [], 'train_loss': None,
                               'train_acc': None, 'val_loss': None, 'val_acc': None}
        elif current is None:
            continue
        elif (m := BATCH.fullmatch(line)) and int(m[1]) == current:
            epochs[current]['batch_loss'].append((int(m[2]) / int(m[3]), float(m[4])))
        elif m := VAL.fullmatch(line):
            epochs[current].update(val_loss=float(m[1]), val_acc=float(m[2]))
        elif m := TRAIN.fullmatch(line):
            epochs[current].update(train_loss=float(m[1]), train_acc=float(m[2]))
    return [epochs[e] for e in sorted(epochs)]


def _series(epochs, key):
    points = [(e['epoch'], e[key]) for e in epochs if e[key] is not None]
    return [p[0] for p in points], [p[1] for p in points]


def plot_log(log_path, out_path=None):
    """Write the curves of `log_path` to `out_path` (default: curves.png beside the log). Returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = parse_log(log_path)
    if not epochs:
        raise FRNError(f'{log_path!r} has no "Epoch N | lr X" lines; give the output.log of pretrain.py or '
                       f'meta_train.py')
    out_path = out_path or os.path.join(os.path.dirname(os.path.abspath(log_path)), CURVES_FILE)
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
    run = os.path.basename(os.path.dirname(os.path.abspath(log_path)))
    fig.suptitle(f'{run}: {len(epochs)} epoch(s)')
    fig.tight_layout()
    atomic_write(out_path, lambda tmp: fig.savefig(tmp, format='png'))
    return out_path


def save_curves(log):
    """At the end of training: curves.png beside the Logger's file. A failure only warns: the weights are saved."""
    if not getattr(log, 'path', None):
        return
    try:
        log(f'training curves saved to {plot_log(log.path)}')
    except Exception as err:  # noqa: BLE001  (a plot must never fail a finished run)
        log(f'warning: could not plot the training curves ({type(err).__name__}: {err}); '
            f'run python tools/plot_log.py {log.path}')


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
