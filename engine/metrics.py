"""Training metrics as data: per-epoch and per-batch records in metrics.jsonl, the curves drawn from them.

The trainer writes one JSON object per line into <run folder>/metrics.jsonl, beside
output.log (whose lines people read; both come from the same values):
    {"event": "epoch_start", "epoch": 3, "lr": 0.05}
    {"event": "batch", "epoch": 3, "batch": 50, "batches": 150, "loss": 1.234567}
    {"event": "epoch_end", "epoch": 3, "train_loss": ..., "train_acc": ..., "val_loss": ..., "val_acc": ...,
     "best_acc": ..., "best_epoch": ..., "minutes": ..., "pretraining": true, "train_way": 64, "val_way": 5}
(train_way: the classes each training prediction chooses among, all of them when pretraining.)
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
            'val_acc': None, 'pretraining': None, 'train_way': None, 'val_way': None}


def read_metrics(path):
    """[{'epoch', 'lr', 'batch_loss': [(fraction of the epoch, loss)], 'train_loss', 'train_acc', 'val_loss',
    'val_acc', 'pretraining', 'train_way', 'val_way'}] in epoch order. A torn last line (a run killed while
    writing it) is skipped."""
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
            epochs[current].update({k: record.get(k) for k in ('train_loss', 'train_acc', 'val_loss', 'val_acc',
                                                               'pretraining', 'train_way', 'val_way')})
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


def _task(epochs):
    """(train, val): what the run's training and validation predictions choose among, as words for the plot
    (empty for records written before the trainer recorded it)."""
    last = epochs[-1]
    way, val_way = last.get('train_way'), last.get('val_way')
    if not way:
        train = ''
    elif last.get('pretraining'):
        train = f'over all {way} training classes'
    else:
        train = f'{way}-way training episodes'
    return train, f'{val_way}-way val episodes' if val_way else ''


def _label(head, detail):
    return f'{head} ({detail})' if detail else head


def _epoch_axis(ax, epochs):
    """Epoch n is the band [n - 0.5, n + 0.5] (its batches spread over it, its mean at n); whole-epoch ticks, so a
    one-epoch run is a band around 0, not a dot on an axis ticked in hundredths."""
    from matplotlib.ticker import MaxNLocator, MultipleLocator
    first, last = epochs[0]['epoch'], epochs[-1]['epoch']
    ax.set_xlim(first - 0.6, last + 0.6)
    ax.xaxis.set_major_locator(MultipleLocator(1) if last - first <= 12 else MaxNLocator(integer=True))
    ax.set_xlabel('epoch')
    ax.grid(alpha=0.3)


def _plot_points(ax, xs, ys, few, **style):
    """A line with a marker per value; with few values each is written beside its marker."""
    ax.plot(xs, ys, marker='o', markersize=5, **style)
    ax.margins(y=0.12)  # room for the labels above the markers
    if len(xs) <= few:
        for x, y in zip(xs, ys):
            ax.annotate(f'{y:.2f}', (x, y), textcoords='offset points', xytext=(0, 7), ha='center', fontsize=8,
                        color=style.get('color', 'black'))


def curves_figure(epochs, title, few=4):
    """The curves of read_metrics's records as a matplotlib Figure on its own Agg canvas: training loss,
    validation loss, accuracy and learning rate on four panels, so that losses of different tasks (a classifier
    over all training classes, N-way episodes) never share an axis. Series of at most `few` values are labelled."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    train_task, val_task = _task(epochs)
    train_colour, val_colour = 'C0', 'C1'
    fig = Figure(figsize=(13, 8), dpi=100)
    FigureCanvasAgg(fig)
    (loss_ax, val_ax), (acc_ax, lr_ax) = fig.subplots(2, 2)

    batches = [(e['epoch'] - 0.5 + frac, loss) for e in epochs for frac, loss in e['batch_loss']]
    if batches:
        loss_ax.plot(*zip(*batches), '.', color='0.65', markersize=3, label='logged batches')
    _plot_points(loss_ax, *_series(epochs, 'train_loss'), few, color=train_colour, label='epoch mean')
    loss_ax.set(title=_label('training loss', train_task), ylabel='loss (NLL)')

    if any(e['val_loss'] is not None for e in epochs):
        _plot_points(val_ax, *_series(epochs, 'val_loss'), few, color=val_colour, label='mean over the episodes')
    else:
        val_ax.text(0.5, 0.5, 'no validation (--val last)', transform=val_ax.transAxes, ha='center', color='0.5')
    val_ax.set(title=_label('validation loss', val_task), ylabel='loss (NLL)')

    _plot_points(acc_ax, *_series(epochs, 'train_acc'), few, color=train_colour,
                 label=_label('train', train_task))
    val = _series(epochs, 'val_acc')
    if val[0]:
        best = max(range(len(val[1])), key=lambda i: val[1][i])  # the first best, as the trainer keeps it
        _plot_points(acc_ax, *val, few, color=val_colour,
                     label=f'{_label("val", val_task)}: best {val[1][best]:.2f} at epoch {val[0][best]}')
    top = max([y for key in ('train_acc', 'val_acc') for y in _series(epochs, key)[1]] or [1.0])
    acc_ax.set_ylim(0, min(100.0, top * 1.15 + 1))
    acc_ax.set(title='accuracy', ylabel='accuracy (%)')

    _plot_points(lr_ax, *_series(epochs, 'lr'), 0, color=train_colour, drawstyle='steps-mid')
    lr_ax.set(title='learning rate', ylabel='lr', yscale='log')

    for ax in (loss_ax, val_ax, acc_ax, lr_ax):
        _epoch_axis(ax, epochs)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle(f'{title}: {len(epochs)} epoch(s)')
    fig.tight_layout()
    return fig


def plot_epochs(epochs, out_path, title):
    """Draw the curves of read_metrics's records (curves_figure) into a PNG at `out_path`."""
    fig = curves_figure(epochs, title)
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
