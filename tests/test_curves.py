"""Training curves: metrics.jsonl records (resumed runs too), the PNG, and VisualDL."""
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, load_tool
from utils import FRNError
from engine.metrics import CURVES_FILE, METRICS_FILE, Scalars, read_metrics


_tool = load_tool('plot_log')


def plot_log(path, out_path=None):
    return _tool.plot_log(path, out_path)[0]

C0, C1 = (31, 119, 180), (255, 127, 14)  # matplotlib's first two line colours: train and val


def epoch_records(epoch, lr, train, val=None, batches=((0, 4, 2.5), (2, 4, 2.0))):
    """The records the trainer writes for one epoch."""
    records = [{'event': 'epoch_start', 'epoch': epoch, 'lr': lr}]
    records += [{'event': 'batch', 'epoch': epoch, 'batch': i, 'batches': n, 'loss': loss} for i, n, loss in batches]
    records.append({'event': 'epoch_end', 'epoch': epoch, 'train_loss': train[0], 'train_acc': train[1],
                    'val_loss': val[0] if val else None, 'val_acc': val[1] if val else None})
    return records


def write_metrics(folder, *runs):
    """A run folder whose metrics.jsonl holds the records of `runs` one after the other (a resumed run appends)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / METRICS_FILE).write_text(''.join(json.dumps(r) + '\n' for run in runs for r in run))
    return folder


def colour_pixels(png, rgb, tol=40):
    pixels = np.asarray(Image.open(png).convert('RGB'), dtype=int)
    return int((np.abs(pixels - np.array(rgb)).sum(axis=2) < tol).sum())


def test_read_metrics_reads_every_field_of_the_trainer_records(tmp_path):
    run = write_metrics(tmp_path / 'run', epoch_records(0, 0.05, (3.0, 20.0), (2.9, 25.5))
                        + epoch_records(1, 0.005, (2.0, 40.0), (2.1, 38.25)))
    epochs = read_metrics(run / METRICS_FILE)
    assert [e['epoch'] for e in epochs] == [0, 1]
    assert epochs[1]['lr'] == 0.005 and epochs[1]['train_loss'] == 2.0 and epochs[1]['train_acc'] == 40.0
    assert epochs[1]['val_loss'] == 2.1 and epochs[1]['val_acc'] == 38.25
    assert epochs[0]['batch_loss'] == [(0.0, 2.5), (0.5, 2.0)]  # (fraction of the epoch, loss)


def test_resumed_run_keeps_the_newest_value_of_each_epoch_and_drops_abandoned_epochs(tmp_path):
    first = sum((epoch_records(e, 0.1, (5.0 - e, 10.0 * e), (9.0, 11.0 * e)) for e in range(5)), [])
    # resumed from the checkpoint of epoch 1: epochs 2 and 3 are trained again, then the run stops
    second = sum((epoch_records(e, 0.01, (1.0, 90.0 + e), (1.5, 80.0 + e)) for e in (2, 3)), [])
    epochs = read_metrics(write_metrics(tmp_path / 'run', first, second) / METRICS_FILE)
    assert [e['epoch'] for e in epochs] == [0, 1, 2, 3]  # epoch 4 of the first run belongs to an abandoned run
    assert [e['train_acc'] for e in epochs] == [0.0, 10.0, 92.0, 93.0]
    assert [e['val_acc'] for e in epochs] == [0.0, 11.0, 82.0, 83.0]
    assert [e['lr'] for e in epochs] == [0.1, 0.1, 0.01, 0.01]


def test_interrupted_epoch_is_replaced_not_merged(tmp_path):
    killed = epoch_records(0, 0.1, (3.0, 20.0))[:2]  # killed after the first batch record
    rerun = epoch_records(0, 0.1, (2.0, 30.0), batches=((0, 4, 7.0),))
    epochs = read_metrics(write_metrics(tmp_path / 'run', killed, rerun) / METRICS_FILE)
    assert len(epochs) == 1 and epochs[0]['batch_loss'] == [(0.0, 7.0)] and epochs[0]['train_acc'] == 30.0


def test_plot_log_cli_writes_a_png_with_the_train_and_val_curves(tmp_path):
    run = write_metrics(tmp_path / 'run', sum(
        (epoch_records(e, 0.1 * 0.1 ** (e // 3), (3.0 - 0.3 * e, 20.0 + 6 * e), (3.1 - 0.2 * e, 22.0 + 5 * e))
         for e in range(6)), []))
    log = run / 'output.log'  # as users pass it; the numbers come from metrics.jsonl beside it
    result = subprocess.run([sys.executable, str(REPO / 'tools' / 'plot_log.py'), str(log)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    png = run / CURVES_FILE
    assert f'6 epoch(s) of {log} plotted to {png}' in result.stdout
    image = Image.open(png)
    assert image.format == 'PNG' and image.size[0] >= 1000 and image.size[1] >= 300
    # lines were drawn: many pixels in the train colour (loss, accuracy, lr) and in the val colour
    assert colour_pixels(png, C0) > 2000 and colour_pixels(png, C1) > 1000


def test_run_without_validation_plots_no_val_curve(tmp_path):
    run = write_metrics(tmp_path / 'run', sum((epoch_records(e, 0.1, (3.0 - e, 20.0 + 9 * e)) for e in range(4)), []))
    png = plot_log(run, tmp_path / 'no_val.png')
    assert colour_pixels(png, C0) > 2000 and colour_pixels(png, C1) < 50


def test_plot_log_cli_rejects_a_folder_without_metrics_in_one_line(tmp_path):
    (tmp_path / 'test.log').write_text('10 Test Acc = 50.00% +- 1.00%\n')
    result = subprocess.run([sys.executable, str(REPO / 'tools' / 'plot_log.py'), str(tmp_path / 'test.log')],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert f'has no {METRICS_FILE}' in result.stderr


def test_every_committed_training_run_has_its_epochs_in_metrics_jsonl():
    """The committed run folders older than metrics.jsonl had it written once from their output.log."""
    runs = [p.parent for p in (REPO / 'results').glob('*/*/best_model.pdparams')]
    assert len(runs) >= 6
    for run in runs:
        epochs = read_metrics(run / METRICS_FILE)
        if epochs and epochs[-1]['train_loss'] is None:  # stopped between sittings: a resume redoes that epoch
            epochs = epochs[:-1]
        ends = (run / 'output.log').read_text().count('\ntrain loss is ')
        assert [e['epoch'] for e in epochs] == list(range(ends)), run
        assert all(e['train_loss'] is not None for e in epochs), run


def test_visualdl_missing_gives_one_warning_and_no_scalars(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'visualdl', None)  # import visualdl -> ImportError
    messages = []
    scalars = Scalars(True, str(tmp_path / 'vdl'), messages.append)
    scalars.add('train/loss', 1.0, 0)
    scalars.close()
    assert len(messages) == 1 and messages[0].startswith('warning: --visualdl') and 'pip install visualdl' in messages[0]
    assert not (tmp_path / 'vdl').exists()
    assert Scalars(False, str(tmp_path / 'vdl'), messages.append).writer is None and len(messages) == 1


@pytest.fixture(scope='module')
def trained(tiny_mini, tmp_path_factory):
    """pretrain.py for 1 epoch with --visualdl, then resumed to 2 epochs; the PNG is copied after each."""
    work = tmp_path_factory.mktemp('curves_run')
    args = [sys.executable, str(REPO / 'pretrain.py'), '--data_path', str(tiny_mini), '--model', 'Conv4',
            '--image_size', '32', '--batch_size', '32', '--milestones', '1', '--val_n_episode', '2', '--n_query', '3',
            '--print_freq', '3', '--threads', '2', '--visualdl']
    run_dir = work / 'checkpoints' / 'mini_imagenet' / 'Conv4_stl_frn_pretrain'
    out = {'run_dir': run_dir}
    for epochs, extra in (('1', []), ('2', ['--resume', 'auto'])):
        result = subprocess.run(args + ['--epoch', epochs, *extra], cwd=work, capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
        out[epochs] = (run_dir / CURVES_FILE).read_bytes()
        out['stdout' + epochs] = result.stdout
    return out


@pytest.mark.slow
def test_training_saves_the_curves_beside_output_log_also_after_resuming(trained):
    assert trained['1'] != trained['2']  # redrawn when the resumed run finished
    assert f'training curves saved to {trained["run_dir"] / CURVES_FILE}' in trained['stdout2']
    epochs = read_metrics(trained['run_dir'] / METRICS_FILE)
    assert [e['epoch'] for e in epochs] == [0, 1] and all(e['val_acc'] is not None for e in epochs)
    log = (trained['run_dir'] / 'output.log').read_text()  # one log across the resume, each epoch once
    assert 'resumed from' in log and log.count('Epoch 0 | lr') == 1 and log.count('Epoch 1 | lr') == 1
    assert colour_pixels(trained['run_dir'] / CURVES_FILE, C1) > 200  # the val curve is drawn


@pytest.mark.slow
def test_visualdl_flag_logs_scalars_when_installed_and_warns_otherwise(trained):
    try:
        from visualdl import LogReader
    except ImportError:
        for key in ('stdout1', 'stdout2'):
            assert trained[key].count('warning: --visualdl was given but VisualDL is not installed') == 1
        return
    values = {}
    for record in sorted((trained['run_dir'] / 'visualdl').iterdir()):
        reader = LogReader(file_path=str(record))
        for tag in reader.get_tags().get('scalar', []):
            values.setdefault(tag, {}).update({r.id: r.value for r in reader.get_data('scalar', tag)})
    assert {'lr', 'train/loss', 'train/acc', 'val/loss', 'val/acc', 'train/batch_loss'} <= set(values)
    assert sorted(values['train/loss']) == [0, 1] and sorted(values['val/acc']) == [0, 1]
    assert values['lr'][0] == pytest.approx(0.05) and values['lr'][1] == pytest.approx(0.005)
    assert sorted(values['train/batch_loss']) == list(range(20))  # 10 batches per epoch, global steps


@pytest.mark.slow
def test_metrics_jsonl_holds_the_numbers_of_output_log_for_every_epoch_after_resuming(trained):
    """Each record, printed as the trainer prints it, is a line of output.log (which holds both runs)."""
    records = [json.loads(line) for line in (trained['run_dir'] / METRICS_FILE).read_text().splitlines()]
    log = (trained['run_dir'] / 'output.log').read_text().splitlines()
    batch_lines = {re.sub(r' \| avg_reader_cost.*', '', line) for line in log}
    assert [r['epoch'] for r in records if r['event'] == 'epoch_end'] == [0, 1]
    assert sum(r['event'] == 'batch' for r in records) == 20
    for r in records:
        if r['event'] == 'epoch_start':
            assert f'Epoch {r["epoch"]} | lr {r["lr"]:.6g}' in log
        elif r['event'] == 'batch' and r['batch'] % 3 == 0:  # --print_freq 3
            assert f'Epoch {r["epoch"]} | Batch {r["batch"]}/{r["batches"]} | Loss {r["loss"]:.6f}' in batch_lines
        elif r['event'] == 'epoch_end':
            for seed_line in (f'train loss is {r["train_loss"]:.2f}, train acc is {r["train_acc"]:.2f}',
                              f'val loss is {r["val_loss"]:.2f}, val acc is {r["val_acc"]:.2f}'):
                # the seed's line, then what the accuracy is over: ' (% over all 16 training classes, ...)'
                assert any(line == seed_line or line.startswith(seed_line + ' (') for line in log), seed_line


def test_read_metrics_skips_a_torn_last_line_and_rejects_garbage_inside(tmp_path):
    good = '{"event": "epoch_start", "epoch": 0, "lr": 0.1}\n{"event": "epoch_end", "epoch": 0, "train_loss": 1.0}\n'
    (tmp_path / 'a.jsonl').write_text(good + '{"event": "ba')
    epochs = read_metrics(tmp_path / 'a.jsonl')
    assert len(epochs) == 1 and epochs[0]['train_loss'] == 1.0
    (tmp_path / 'b.jsonl').write_text('not json\n' + good)
    with pytest.raises(FRNError, match='line 1 is not JSON'):
        read_metrics(tmp_path / 'b.jsonl')


def one_epoch_pretraining():
    """The records of a one-epoch pretraining run over 792 classes, validated on 5-way episodes."""
    records = epoch_records(0, 0.1, (6.1, 0.36), (0.55, 79.56))
    records[-1].update(pretraining=True, train_way=792, val_way=5)
    return records


def test_curves_of_a_one_epoch_run_have_whole_epoch_ticks_and_a_readable_range(tmp_path):
    from engine.metrics import curves_figure
    epochs = read_metrics(write_metrics(tmp_path / 'run', one_epoch_pretraining()) / METRICS_FILE)
    fig = curves_figure(epochs, 'run')
    for ax in fig.axes:
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert high - low >= 0.9, (ax.get_title(), low, high)  # an epoch wide, not hundredths around 0
        assert ticks == [0.0], (ax.get_title(), ticks)  # the one epoch, numbered as in output.log


def test_curves_keep_the_training_and_validation_losses_apart_and_say_what_they_are_over(tmp_path):
    from engine.metrics import curves_figure
    epochs = read_metrics(write_metrics(tmp_path / 'run', one_epoch_pretraining()) / METRICS_FILE)
    fig = curves_figure(epochs, 'run')
    titles = {ax.get_title(): ax for ax in fig.axes}
    train, val = titles['training loss (over all 792 training classes)'], titles['validation loss (5-way val episodes)']
    assert [line.get_ydata()[0] for line in train.get_lines() if line.get_marker() == 'o'] == [6.1]
    assert [line.get_ydata()[0] for line in val.get_lines() if line.get_marker() == 'o'] == [0.55]
    labels = titles['accuracy'].get_legend_handles_labels()[1]
    assert labels[0] == 'train (over all 792 training classes)' and labels[1].startswith('val (5-way val episodes)')
