"""Feature inversion: the decoder learns, its checkpoint knows its model, and visualize decodes FRN's own rebuilds.

Uses the committed Tiny-ImageNet Conv-4 model at 84 px (64 x 5 x 5 maps), real photos of the
Tiny-ImageNet subset, and the committed decoder trained on that model.
"""
import csv
import os
import shutil
import subprocess
import sys

import numpy as np
import paddle
import pytest
from PIL import Image

from conftest import REPO, load_tool
from deploy import inverter
from deploy.explain import explain, explain_maps
from deploy.export import DygraphFeatures
from deploy.predict import load_images
from methods.ridge import recon_explain
from utils import FRNError

RESULTS = REPO / 'results' / 'tinyimagenet32_84'
MODEL = RESULTS / 'Conv4_meta_frn_20way_5shot_metatrain' / 'best_model.pdparams'
MODEL32 = REPO / 'results' / 'tinyimagenet32' / 'Conv4_meta_frn_20way_5shot_metatrain' / 'best_model.pdparams'
TRAINED = RESULTS / 'inverter' / 'inverter.pdparams'
WAY, SHOT = 3, 2


@pytest.fixture(scope='module')
def features():
    return DygraphFeatures(str(MODEL))


@pytest.fixture(scope='module')
def folders(tiny_mini, tmp_path_factory):
    """A 3-way 2-shot support folder and one query of real test photos; and 16 training photos."""
    with open(tiny_mini / 'test.csv') as f:
        rows = list(csv.reader(f))[1:]
    root = tmp_path_factory.mktemp('inv')
    (root / 'query').mkdir()
    for k, label in enumerate(sorted({c for _, c in rows})[:WAY]):
        names = [n for n, c in rows if c == label]
        (root / 'support' / label).mkdir(parents=True)
        for n in names[:SHOT]:
            shutil.copy(tiny_mini / 'images' / n, root / 'support' / label / n)
        if k == 0:
            shutil.copy(tiny_mini / 'images' / names[SHOT], root / 'query' / names[SHOT])
    with open(tiny_mini / 'train.csv') as f:
        train = [str(tiny_mini / 'images' / n) for n, _ in list(csv.reader(f))[1:]]
    return {'root': root, 'train': train[::20][:16], 'test': [str(tiny_mini / 'images' / n) for n, _ in rows][::10]}


def one_line_error(capsys, tool, args):
    with pytest.raises(SystemExit) as stop:
        load_tool(tool).main([str(a) for a in args])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith('error: ') and len(err.strip().splitlines()) == 1, err
    return err


# ---- (a) the decoder learns ----

@pytest.mark.slow
def test_a_few_adam_steps_reduce_the_l1_on_real_images(features, folders):
    images = paddle.to_tensor(load_images(folders['train'], 84, features.preprocess))  # 16, 3, 84, 84
    with paddle.no_grad():
        maps = features.model.get_feature_map(images)  # 16, 25, 64
    paddle.seed(0)
    model = inverter.Inverter(64, 5, 84)
    optimizer = paddle.optimizer.Adam(learning_rate=3e-3, parameters=model.parameters())
    losses = []
    for _ in range(12):
        loss = inverter.loss_fn(model(maps), images)
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.75 * losses[0], losses


def test_the_committed_decoder_beats_each_images_mean_colour_on_test_photos(features, folders):
    """On unseen test-split photos: L1 below that of the best constant image per photo (its mean colour)."""
    model, record = inverter.load(str(TRAINED))
    inverter.check_matches(record, features, str(TRAINED))
    images = paddle.to_tensor(load_images(folders['test'][:24], 84, features.preprocess))
    with paddle.no_grad():
        decoded = model(features.model.get_feature_map(images))
    flat = paddle.mean(images, axis=[2, 3], keepdim=True).expand_as(images)
    assert inverter.loss_fn(decoded, images).item() < 0.9 * inverter.loss_fn(flat, images).item()


@pytest.mark.slow
def test_train_inverter_resumed_after_an_interrupt_ends_bit_exact(tiny_mini, tmp_path, monkeypatch, capsys):
    common = ['--model_path', MODEL, '--data_path', tiny_mini, '--epoch', '2', '--images_per_epoch', '16',
              '--batch_size', '8', '--val_images', '8', '--threads', '2', '--print_freq', '1']
    load_tool('train_inverter').main([str(a) for a in common + ['--out', tmp_path / 'whole']])
    log = (tmp_path / 'whole' / 'output.log').read_text()
    assert 'Epoch 1 | train L1' in log and 'val L1' in log and 'mean-colour image' in log
    saves = []
    real_save = inverter.save

    def save_then_stop(path, model, record):
        saves.append(path)
        if len(saves) == 2:  # killed while writing epoch 1's checkpoint
            raise KeyboardInterrupt
        real_save(path, model, record)
    monkeypatch.setattr(inverter, 'save', save_then_stop)
    with pytest.raises(SystemExit) as stop:
        load_tool('train_inverter').main([str(a) for a in common + ['--out', tmp_path / 'cut']])
    assert stop.value.code == 130 and '--resume' in capsys.readouterr().err
    monkeypatch.setattr(inverter, 'save', real_save)
    load_tool('train_inverter').main([str(a) for a in common + ['--out', tmp_path / 'cut', '--resume']])
    assert 'resumed after epoch 0' in (tmp_path / 'cut' / 'output.log').read_text()
    whole, cut = paddle.load(str(tmp_path / 'whole' / 'inverter.pdparams')), \
        paddle.load(str(tmp_path / 'cut' / 'inverter.pdparams'))
    assert whole['inverter'] == cut['inverter'] and whole['inverter']['trained']['epochs'] == 2
    for key, value in whole['state_dict'].items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(cut['state_dict'][key]), err_msg=key)


# ---- (b) the checkpoint knows its model ----

def test_checkpoint_round_trips_with_its_record(features, tmp_path):
    paddle.seed(1)
    model = inverter.Inverter(64, 5, 84)
    model.eval()
    record = inverter.record_for(features, inverter.CHANNELS, str(MODEL))
    inverter.save(str(tmp_path / 'inv.pdparams'), model, record)
    loaded, got = inverter.load(str(tmp_path / 'inv.pdparams'))
    assert got == record and got['map_shape'] == [64, 5, 5] and got['backbone'] == 'Conv4' and got['image_size'] == 84
    assert got['preprocess']['normalize'] == features.preprocess['normalize']
    maps = np.random.RandomState(0).rand(2, 25, 64).astype(np.float32)
    np.testing.assert_array_equal(inverter.decode(loaded, maps, got['preprocess']),
                                  inverter.decode(model, maps, record['preprocess']))
    inverter.check_matches(got, features, 'inv.pdparams')  # its own model: no error


def test_a_mismatched_checkpoint_is_refused_with_a_one_line_error(features, folders, tmp_path, capsys):
    model = inverter.Inverter(64, 5, 84)
    record = inverter.record_for(features, inverter.CHANNELS, str(MODEL))
    bad = {'other_backbone': dict(record, backbone='ResNet12'),
           'other_weights': dict(record, probe=(np.asarray(record['probe']) * 1.5).tolist()),
           'other_norm': dict(record, preprocess=dict(record['preprocess'], normalize=None))}
    for name, rec in bad.items():
        inverter.save(str(tmp_path / f'{name}.pdparams'), model, rec)
    root = folders['root']
    common = ['--support', root / 'support', '--query', root / 'query', '--out', tmp_path / 'out', '--threads', '2']
    err = one_line_error(capsys, 'visualize', common + ['--model_path', MODEL, '--inverter',
                                                        tmp_path / 'other_backbone.pdparams'])
    assert 'was trained on ResNet12 features of 84 px images' in err
    err = one_line_error(capsys, 'visualize', common + ['--model_path', MODEL, '--inverter',
                                                        tmp_path / 'other_weights.pdparams'])
    assert 'by another model' in err
    err = one_line_error(capsys, 'visualize', common + ['--model_path', MODEL, '--inverter',
                                                        tmp_path / 'other_norm.pdparams'])
    assert 'normalised with None' in err
    err = one_line_error(capsys, 'visualize', common + ['--model_path', MODEL32, '--inverter', TRAINED])
    assert 'features of 84 px images, not on' in err and '32 px' in err
    err = one_line_error(capsys, 'visualize', common + ['--model_path', MODEL, '--inverter', MODEL])
    assert 'not an inverter checkpoint' in err
    err = one_line_error(capsys, 'visualize', common + ['--model_path', MODEL, '--inverter', tmp_path / 'none.pdparams'])
    assert 'does not exist' in err
    assert not (tmp_path / 'out').exists()


def test_train_inverter_bad_flags_are_one_line_errors(tiny_mini, tmp_path, capsys):
    common = ['--data_path', tiny_mini, '--out', tmp_path / 'run']
    assert 'does not exist' in one_line_error(capsys, 'train_inverter', common + ['--model_path', tmp_path / 'x.pdparams'])
    assert 'at least 2' in one_line_error(capsys, 'train_inverter', common + ['--model_path', MODEL, '--batch_size', '1'])
    err = one_line_error(capsys, 'train_inverter', common + ['--model_path', MODEL, '--resume'])
    assert 'does not exist' in err and 'inverter.pdopt' in err
    (tmp_path / 'run').mkdir()
    (tmp_path / 'run' / 'inverter.pdparams').write_bytes(b'')
    assert '--overwrite' in one_line_error(capsys, 'train_inverter', common + ['--model_path', MODEL])
    assert not (tmp_path / 'run' / 'output.log').exists()


def test_a_second_train_inverter_into_the_same_out_stops_at_once(tiny_mini, tmp_path, capsys):
    """The run lock of the training scripts (engine/runlock.py), held here by another process on --out."""
    out = tmp_path / 'run'
    holder = subprocess.Popen([sys.executable, '-c', 'import time; from engine.runlock import RunLock; '
                               f'RunLock({str(out)!r}).acquire(); print("held", flush=True); time.sleep(600)'],
                              cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        err = one_line_error(capsys, 'train_inverter', ['--model_path', MODEL, '--data_path', tiny_mini, '--out', out,
                                                        '--epoch', '1', '--images_per_epoch', '16', '--batch_size',
                                                        '8', '--val_images', '0'])
        assert f'run folder {out} is in use by another run (pid {holder.pid} ' in err and 'another --out' in err
        assert os.listdir(out) == ['run.lock']
    finally:
        holder.kill()
        holder.wait(timeout=60)


def test_train_inverter_resume_from_a_truncated_state_is_one_line(tiny_mini, tmp_path, capsys):
    common = ['--model_path', MODEL, '--data_path', tiny_mini, '--out', tmp_path / 'run', '--epoch', '2',
              '--images_per_epoch', '16', '--batch_size', '8', '--val_images', '0', '--threads', '2']
    (tmp_path / 'run').mkdir()
    (tmp_path / 'run' / 'inverter.pdparams').write_bytes(b'')
    (tmp_path / 'run' / 'inverter.pdopt').write_bytes(TRAINED.read_bytes()[:2000])
    err = one_line_error(capsys, 'train_inverter', common + ['--resume'])
    assert 'cannot read the resume state' in err and 'inverter.pdopt' in err and 'truncated' in err


# ---- (c) what is decoded is FRN's reconstruction ----

def test_reconstructions_are_the_ridge_weights_times_the_support(features, folders):
    support = [features(load_images(paths, 84, features.preprocess)) for paths in
               [[str(p) for p in sorted(d.iterdir())] for d in sorted((folders['root'] / 'support').iterdir())]]
    query = features(load_images(folders['test'][:2], 84, features.preprocess))  # 2, 25, 64
    out = explain_maps(query, support, features.alpha, features.beta, features.scale, reconstruct=True)
    assert out['reconstructions'].shape == (2, WAY, 25, 64)
    for c, maps in enumerate(support):
        s = paddle.to_tensor(maps.reshape(1, -1, 64))
        dist, weights = recon_explain(paddle.to_tensor(query.reshape(-1, 64)), s, paddle.to_tensor(features.alpha),
                                      paddle.to_tensor(features.beta))
        w_s = weights.numpy()[0].astype(np.float64) @ maps.reshape(-1, 64).astype(np.float64)  # 2*25, 64
        np.testing.assert_allclose(out['reconstructions'][:, c].reshape(-1, 64), w_s, rtol=1e-5,
                                   atol=1e-6 * np.abs(w_s).max())
        resid = ((out['reconstructions'][:, c] - query).astype(np.float64) ** 2).sum(axis=2)  # 2, 25
        np.testing.assert_allclose(resid, out['errors'][:, c].reshape(2, 25), rtol=1e-3)


def test_with_the_query_as_support_and_rho_1_the_reconstruction_is_the_query(features, folders):
    query = features(load_images(folders['test'][:1], 84, features.preprocess))  # 1, 25, 64
    out = explain_maps(query, [query, query * 0.5 + 1.0], alpha=-12.0, beta=0.0, scale=1.0,
                       reconstruct=True)  # lam ~ 2.4e-6, rho 1
    np.testing.assert_allclose(out['reconstructions'][0, 0], query[0], atol=1e-3 * np.abs(query).max())
    assert np.abs(out['reconstructions'][0, 1] - query[0]).max() > 0.05 * np.abs(query).max()


def test_reconstruct_flag_leaves_distances_and_weights_bit_exact(features, folders):
    maps = features(load_images(folders['test'][:3], 84, features.preprocess))
    q, s = paddle.to_tensor(maps[:1].reshape(-1, 64)), paddle.to_tensor(maps[1:].reshape(1, -1, 64))
    a, b = paddle.to_tensor(features.alpha), paddle.to_tensor(features.beta)
    plain, extended = recon_explain(q, s, a, b), recon_explain(q, s, a, b, reconstruct=True)
    assert len(plain) == 2 and len(extended) == 3
    for x, y in zip(plain, extended):
        np.testing.assert_array_equal(x.numpy(), y.numpy())


# ---- (d) the figure ----

@pytest.mark.slow
def test_visualize_decodes_the_query_map_and_its_rebuilds_into_a_third_row(features, folders, tmp_path, monkeypatch,
                                                                          capsys):
    root = folders['root']
    common = ['--support', root / 'support', '--query', root / 'query', '--model_path', MODEL, '--threads', '2']
    viz = load_tool('visualize')
    viz.main([str(a) for a in common + ['--out', tmp_path / 'plain']])
    fed = []
    real_decode = inverter.decode

    def recording_decode(model, maps, preprocess):
        fed.append(np.array(maps))
        return real_decode(model, maps, preprocess)
    monkeypatch.setattr(inverter, 'decode', recording_decode)
    viz.main([str(a) for a in common + ['--out', tmp_path / 'inv', '--inverter', TRAINED]])
    assert 'wrote 1 figure(s)' in capsys.readouterr().out

    support = [(d.name, [str(p) for p in sorted(d.iterdir())]) for d in sorted((root / 'support').iterdir())]
    query = [str(p) for p in sorted((root / 'query').iterdir())]
    result = explain(features, support, query, reconstruct=True)
    (maps,) = fed
    assert maps.shape == (1 + WAY, 25, 64)
    np.testing.assert_array_equal(maps[0], result['query_maps'][0])
    np.testing.assert_array_equal(maps[1:], result['reconstructions'][0])

    (plain,), (with_row,) = list((tmp_path / 'plain').glob('*.png')), list((tmp_path / 'inv').glob('*.png'))
    shown = len(viz.shown_support(result['correspondences'][0], len(support[result['predicted'][0]][1])))
    with Image.open(with_row) as img:
        assert img.size == viz.figure_size(WAY, shown, inverter=True)
        pixels = np.asarray(img.convert('RGB'))
    with Image.open(plain) as img:
        assert img.size == viz.figure_size(WAY, shown) and img.size[1] < pixels.shape[0]
    bottom = pixels[-pixels.shape[0] // 3:]  # the decoded row
    assert bottom.std() > 20 and len(np.unique(bottom.reshape(-1, 3) // 8, axis=0)) > 100


def test_visualize_json_names_the_inverter(folders, tmp_path, capsys):
    import json
    root = folders['root']
    load_tool('visualize').main([str(a) for a in ['--support', root / 'support', '--query', root / 'query',
                                                  '--model_path', MODEL, '--out', tmp_path, '--inverter', TRAINED,
                                                  '--json', '--threads', '2']])
    data = json.loads(capsys.readouterr().out)
    assert data['inverter'] == str(TRAINED) and data['queries'][0]['png'].endswith('.png')


def test_the_committed_cars_decoder_belongs_to_the_cars_model_and_beats_the_mean_colour_on_test_photos(cars_small):
    """docs/inversion_example.png's decoder: its record matches the Cars FRN it was trained on, and on unseen
    test-split car photos its L1 is below that of each photo's mean colour."""
    cars_model = REPO / 'results' / 'cars' / 'Conv4_meta_frn_20way_5shot_metatrain' / 'best_model.pdparams'
    trained = REPO / 'results' / 'cars' / 'inverter' / 'inverter.pdparams'
    cars_features = DygraphFeatures(str(cars_model))
    model, record = inverter.load(str(trained))
    inverter.check_matches(record, cars_features, str(trained))
    with pytest.raises(FRNError, match='model'):  # and not the Tiny-ImageNet model of the same shape
        inverter.check_matches(record, DygraphFeatures(str(MODEL)), str(trained))
    photos = sorted(str(p) for p in (cars_small / 'test').glob('*/*.jpg'))[::10][:24]
    images = paddle.to_tensor(load_images(photos, 84, cars_features.preprocess))
    with paddle.no_grad():
        decoded = model(cars_features.model.get_feature_map(images))
    flat = paddle.mean(images, axis=[2, 3], keepdim=True).expand_as(images)
    assert inverter.loss_fn(decoded, images).item() < 0.9 * inverter.loss_fn(flat, images).item()
