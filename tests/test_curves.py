"""Training curves: metrics.jsonl records and the output.log fallback (resumed runs), the PNG, and VisualDL."""
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, load_tool
from utils import FRNError
from engine.metrics import CURVES_FILE, METRICS_FILE, Scalars, read_metrics


_tool = load_tool('plot_log')
parse_log = _tool.parse_log


def plot_log(log_path, out_path=None):
    return _tool.plot_log(log_path, out_path)[0]

C0, C1 = (31, 119, 180), (255, 127, 14)  # matplotlib's first two line colours: train and val


def epoch_lines(epoch, lr, train, val=None, batches=((0, 4, 2.5), (2, 4, 2.0))):
    lines = [f'Epoch {epoch} | lr {lr:.6g}']
    lines += [f'Epoch {epoch} | Batch {i}/{n} | Loss {loss:.6f}' for i, n, loss in batches]
    if val:
        lines += ['best model! save...', f'val loss is {val[0]:.2f}, val acc is {val[1]:.2f}',
                  f'model best acc is {val[1]:.2f}, best acc epoch is {epoch}']
    lines += ['This epoch use 0.10 minutes', f'train loss is {train[0]:.2f}, train acc is {train[1]:.2f}']
    return lines


def write_log(path, *runs):
    text = []
    for run in runs:
        text += ['==== 2026-01-01T00:00:00 python pretrain.py ...', 'args: ...', 'paddle 3.3.1 | device cpu'] + run
    path.write_text('\n'.join(text) + '\n')
    return path


def colour_pixels(png, rgb, tol=40):
    pixels = np.asarray(Image.open(png).convert('RGB'), dtype=int)
    return int((np.abs(pixels - np.array(rgb)).sum(axis=2) < tol).sum())


def test_parse_log_reads_every_field_of_the_trainer_lines(tmp_path):
    log = write_log(tmp_path / 'output.log',
                    epoch_lines(0, 0.05, (3.0, 20.0), (2.9, 25.5)) + epoch_lines(1, 0.005, (2.0, 40.0), (2.1, 38.25)))
    epochs = parse_log(log)
    assert [e['epoch'] for e in epochs] == [0, 1]
    assert epochs[1]['lr'] == 0.005 and epochs[1]['train_loss'] == 2.0 and epochs[1]['train_acc'] == 40.0
    assert epochs[1]['val_loss'] == 2.1 and epochs[1]['val_acc'] == 38.25
    assert epochs[0]['batch_loss'] == [(0.0, 2.5), (0.5, 2.0)]  # (fraction of the epoch, loss)


def test_resumed_log_keeps_the_newest_value_of_each_epoch_and_drops_abandoned_epochs(tmp_path):
    first = sum((epoch_lines(e, 0.1, (5.0 - e, 10.0 * e), (9.0, 11.0 * e)) for e in range(5)), [])
    # resumed from the checkpoint of epoch 1: epochs 2 and 3 are trained again, then the run stops
    second = ['resumed from last_model.pdopt: epoch 1 done'] + sum(
        (epoch_lines(e, 0.01, (1.0, 90.0 + e), (1.5, 80.0 + e)) for e in (2, 3)), [])
    epochs = parse_log(write_log(tmp_path / 'output.log', first, second))
    assert [e['epoch'] for e in epochs] == [0, 1, 2, 3]  # epoch 4 of the first run belongs to an abandoned run
    assert [e['train_acc'] for e in epochs] == [0.0, 10.0, 92.0, 93.0]
    assert [e['val_acc'] for e in epochs] == [0.0, 11.0, 82.0, 83.0]
    assert [e['lr'] for e in epochs] == [0.1, 0.1, 0.01, 0.01]


def test_interrupted_epoch_is_replaced_not_merged(tmp_path):
    killed = epoch_lines(0, 0.1, (3.0, 20.0))[:2]  # killed after the first batch line
    rerun = epoch_lines(0, 0.1, (2.0, 30.0), batches=((0, 4, 7.0),))
    epochs = parse_log(write_log(tmp_path / 'output.log', killed, rerun))
    assert len(epochs) == 1 and epochs[0]['batch_loss'] == [(0.0, 7.0)] and epochs[0]['train_acc'] == 30.0


def test_plot_log_cli_writes_a_png_with_the_train_and_val_curves(tmp_path):
    log = write_log(tmp_path / 'output.log', sum(
        (epoch_lines(e, 0.1 * 0.1 ** (e // 3), (3.0 - 0.3 * e, 20.0 + 6 * e), (3.1 - 0.2 * e, 22.0 + 5 * e))
         for e in range(6)), []))
    result = subprocess.run([sys.executable, str(REPO / 'tools' / 'plot_log.py'), str(log)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    png = tmp_path / CURVES_FILE
    assert f'6 epoch(s) of {log} plotted to {png}' in result.stdout
    image = Image.open(png)
    assert image.format == 'PNG' and image.size[0] >= 1000 and image.size[1] >= 300
    # lines were drawn: many pixels in the train colour (loss, accuracy, lr) and in the val colour
    assert colour_pixels(png, C0) > 2000 and colour_pixels(png, C1) > 1000


def test_log_without_validation_plots_no_val_curve(tmp_path):
    log = write_log(tmp_path / 'output.log', sum((epoch_lines(e, 0.1, (3.0 - e, 20.0 + 9 * e)) for e in range(4)), []))
    png = plot_log(log, tmp_path / 'no_val.png')
    assert colour_pixels(png, C0) > 2000 and colour_pixels(png, C1) < 50


def test_plot_log_cli_rejects_a_log_without_epochs_in_one_line(tmp_path):
    (tmp_path / 'test.log').write_text('10 Test Acc = 50.00% +- 1.00%\n')
    result = subprocess.run([sys.executable, str(REPO / 'tools' / 'plot_log.py'), str(tmp_path / 'test.log')],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert 'no "Epoch N | lr X" lines' in result.stderr


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
    epochs = parse_log(trained['run_dir'] / 'output.log')
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
    records = read_metrics(trained['run_dir'] / METRICS_FILE)
    parsed = parse_log(trained['run_dir'] / 'output.log')
    assert [e['epoch'] for e in records] == [0, 1]
    for rec, old in zip(records, parsed):
        assert rec['lr'] == pytest.approx(old['lr'], rel=1e-5)
        for key in ('train_loss', 'train_acc', 'val_loss', 'val_acc'):   # the log prints them rounded to 0.01
            assert abs(rec[key] - old[key]) <= 0.005 + 1e-9
        logged = dict(old['batch_loss'])
        assert len(rec['batch_loss']) == 10 and all(abs(dict(rec['batch_loss'])[f] - v) < 5e-7
                                                      for f, v in logged.items())


def test_read_metrics_skips_a_torn_last_line_and_rejects_garbage_inside(tmp_path):
    good = '{"event": "epoch_start", "epoch": 0, "lr": 0.1}\n{"event": "epoch_end", "epoch": 0, "train_loss": 1.0}\n'
    (tmp_path / 'a.jsonl').write_text(good + '{"event": "ba')
    epochs = read_metrics(tmp_path / 'a.jsonl')
    assert len(epochs) == 1 and epochs[0]['train_loss'] == 1.0
    (tmp_path / 'b.jsonl').write_text('not json\n' + good)
    with pytest.raises(FRNError, match='line 1 is not JSON'):
        read_metrics(tmp_path / 'b.jsonl')


def test_the_fallback_parser_reads_batch_lines_with_the_tipc_speed_fields(tmp_path):
    lines = epoch_lines(0, 0.1, (3.0, 20.0), batches=())
    lines.insert(1, 'Epoch 0 | Batch 2/4 | Loss 1.500000 | avg_reader_cost: 0.00100 sec | avg_batch_cost: 0.50000 sec'
                    ' | avg_ips: 256.00 images/sec')
    epochs = parse_log(write_log(tmp_path / 'output.log', lines))
    assert epochs[0]['batch_loss'] == [(0.5, 1.5)]
