"""Preprocessing travels with the model: the record, its transform, export, infer.py and cross-domain test.py.

The committed Omniglot model (inverted greyscale strokes at 42 px, no normalisation) is the
case the natural-image defaults get wrong, so it is the one exported and run here.
"""
import csv
import json

import numpy as np
import pytest

from conftest import REPO, load_tool, shared_path
from data import preprocess
from data.dataset import EpisodicBatchSampler
from data.images import load_image
from data.transforms import eval_transform, omniglot_transform
from utils import FRNError

OMNIGLOT_RUN = REPO / 'results' / 'omniglot' / 'Conv4_meta_frn_60way_1shot_metatrain'
CHECKPOINT = OMNIGLOT_RUN / 'best_model.pdparams'
EPISODES, WAY, SHOT, QUERY, SEED = 20, 5, 1, 5, 3


@pytest.fixture(scope='module')
def omniglot_test():
    from data.omniglot import read_omniglot
    return read_omniglot(str(shared_path('data', 'omniglot')), 'test', scheme='vinyals')


def test_records_are_json_and_rebuild_todays_eval_transforms_bit_identically(tiny_mini, omniglot_test):
    with open(tiny_mini / 'test.csv') as f:
        photos = [load_image(tiny_mini / 'images' / name) for name, _ in list(csv.reader(f))[1:][::37]]
    strokes = [omniglot_test.load_image(i) for i in range(0, len(omniglot_test), 997)]
    cases = [('mini_imagenet', 84, eval_transform(84), photos), ('custom', 32, eval_transform(32), photos),
             ('omniglot', 42, omniglot_transform(42), strokes), ('omniglot', 28, omniglot_transform(28), strokes)]
    for dataset, size, today, images in cases:
        record = json.loads(json.dumps(preprocess.record_for(dataset, size)))  # what a sidecar holds
        built = preprocess.eval_transform_from(preprocess.check(record, 'test'))
        assert built.deterministic
        for image in images:
            expected, got = today(image), built(image)
            assert got.dtype == expected.dtype == np.float32 and got.shape == (3, size, size)
            np.testing.assert_array_equal(got, expected)


def test_the_grey_record_gives_a_colour_photo_its_luminance_in_every_channel(tiny_mini):
    with open(tiny_mini / 'test.csv') as f:
        photo = load_image(tiny_mini / 'images' / list(csv.reader(f))[1][0])
    out = preprocess.eval_transform_from(preprocess.record_for('omniglot', 42))(photo)
    assert np.array_equal(out[0], out[1]) and np.array_equal(out[1], out[2])
    np.testing.assert_array_equal(out, omniglot_transform(42)(photo.convert('L').convert('RGB')))


def test_committed_omniglot_checkpoint_carries_the_omniglot_record():
    record = preprocess.read_sidecar(CHECKPOINT)
    assert record == preprocess.record_for('omniglot', 42)
    assert record['colour'] == 'grey' and record['invert'] and record['normalize'] is None


def write_episodes(split, root):
    """The episodes test.py draws (task 0, seed SEED) as support/query folders: root/e00/support/c0/..., truth."""
    members = split.class_members()
    sampler = EpisodicBatchSampler(split.n_classes, WAY, EPISODES, SHOT + QUERY, [len(m) for m in members],
                                   seed=SEED)
    sampler.set_epoch(0)
    truth = {}
    for e, episode in enumerate(sampler):
        for label, (cls, positions, _) in enumerate(episode):
            images = [members[cls][p] for p in positions]
            (root / f'e{e:02d}' / 'support' / f'c{label}').mkdir(parents=True)
            (root / f'e{e:02d}' / 'query').mkdir(exist_ok=True)
            for k, i in enumerate(images):
                if k < SHOT:
                    split.load_image(i).save(root / f'e{e:02d}' / 'support' / f'c{label}' / f'{k}.png')
                else:
                    name = f'q{label}_{k}.png'
                    split.load_image(i).save(root / f'e{e:02d}' / 'query' / name)
                    truth[e, name] = f'c{label}'
    return truth


@pytest.fixture(scope='module')
def omniglot_export(tmp_path_factory):
    """tools/export_model.py, in this process, given no flag but the committed Omniglot checkpoint."""
    save_dir = tmp_path_factory.mktemp('omniglot_export')
    load_tool('export_model').main(['--model', 'Conv4', '--model_path', str(CHECKPOINT), '--save_dir', str(save_dir),
                                    '--threads', '2'])
    return save_dir


def test_export_takes_the_image_size_and_preprocessing_from_the_checkpoints_record(omniglot_export):
    head = json.loads((omniglot_export / 'frn_head.json').read_text())
    assert head['image_size'] == 42 and head['preprocess'] == preprocess.record_for('omniglot', 42)


@pytest.mark.slow
def test_exported_omniglot_model_through_infer_reaches_test_py_accuracy_on_the_same_episodes(
        omniglot_test, omniglot_export, tmp_path, capsys):
    """Export (no flag but the checkpoint), then infer.py on PNG folders of test.py's 20 5-way 1-shot episodes:
    the number of correct queries is test.py's, or one off (the predictor's float rounding)."""
    import test as test_script
    data = shared_path('data', 'omniglot')
    test_script.main(['--dataset', 'omniglot', '--data_path', str(data), '--model', 'Conv4', '--image_size', '42',
                      '--model_path', str(CHECKPOINT), '--test_n_way', str(WAY), '--n_shot', str(SHOT),
                      '--n_query', str(QUERY), '--test_task_nums', '1', '--test_n_episode', str(EPISODES),
                      '--seed', str(SEED), '--results_dir', str(tmp_path / 'results'), '--threads', '2'])
    result = json.loads((tmp_path / 'results' / f'{WAY}w{SHOT}s' / 'omniglot_Conv4_meta_frn.json').read_text())
    expected_correct = round(result['acc'] / 100 * EPISODES * WAY * QUERY)


    truth = write_episodes(omniglot_test, tmp_path / 'episodes')
    capsys.readouterr()
    correct = {'inference': 0, 'dygraph': 0}
    for e in range(EPISODES):
        folder = tmp_path / 'episodes' / f'e{e:02d}'
        common = ['--support', str(folder / 'support'), '--query', str(folder / 'query'), '--json', '--threads', '2']
        for backend, model in (('inference', ['--inference_dir', str(omniglot_export)]),
                               ('dygraph', ['--model_path', str(CHECKPOINT)])):
            load_tool('infer').main(common + model)
            out = json.loads(capsys.readouterr().out)
            assert out['image_size'] == 42
            correct[backend] += sum(p['prediction'] == truth[e, p['query']] for p in out['predictions'])
    total = EPISODES * WAY * QUERY
    assert expected_correct > 0.9 * total  # the model works at all (chance: 20%)
    assert abs(correct['inference'] - expected_correct) <= 1, (correct, expected_correct)
    assert abs(correct['dygraph'] - expected_correct) <= 1, (correct, expected_correct)


def test_a_checkpoint_without_a_record_gets_the_natural_defaults_and_says_so_once(tmp_path, capsys):
    import shutil
    from deploy import export
    bare = tmp_path / 'converted.pdparams'
    shutil.copy(CHECKPOINT, bare)  # the same weights, no preprocess.json beside them
    first = export.DygraphFeatures(str(bare))
    second = export.DygraphFeatures(str(bare))
    err = capsys.readouterr().err
    assert first.preprocess == second.preprocess == preprocess.natural_default(84) and first.image_size == 84
    assert err.count('no preprocess.json beside it') == 1 and 'natural-image defaults' in err
    with pytest.raises(export.FRNError, match='trained on 42 px'):
        export.DygraphFeatures(str(CHECKPOINT), image_size=84)


@pytest.mark.slow
def test_cross_domain_test_uses_the_models_preprocessing_unless_told_otherwise(tiny_mini, tmp_path):
    """The Omniglot model on Tiny-ImageNet photos (the reverse of paper Table 8's direction of travel):
    by default the photos get the model's grey, inverted 42 px input; --preprocess data gives them the
    natural-image transform instead. The accuracy is the one evaluate() gives with that transform."""
    import cli
    import test as test_script
    from data.loaders import episode_loader, read_splits
    from engine.evaluation import evaluate
    from methods.checkpoint import load_model
    from methods.FRN import FRN
    common = ['--dataset', 'mini_imagenet', '--data_path', str(tiny_mini), '--model', 'Conv4', '--image_size', '42',
              '--model_path', str(CHECKPOINT), '--n_shot', '1', '--n_query', '5', '--test_task_nums', '1',
              '--test_n_episode', '10', '--threads', '2']
    results = {}
    for mode in ('model', 'data'):
        test_script.main(common + ['--preprocess', mode, '--results_dir', str(tmp_path / mode)])
        results[mode] = json.loads((tmp_path / mode / '5w1s' / 'mini_imagenet_Conv4_meta_frn.json').read_text())
        results[mode]['log'] = (tmp_path / mode / '5w1s' / 'mini_imagenet_Conv4_meta_frn.log').read_text()
    assert results['model']['preprocess'] == preprocess.record_for('omniglot', 42)
    assert "the model's preprocess.json, trained on omniglot" in results['model']['log']
    assert results['data']['preprocess'] == preprocess.record_for('mini_imagenet', 42)

    data = cli.testing_config(test_script.parse_args(common)).data
    (split,) = read_splits(data, 'test')
    loader = episode_loader(data, split, 5, 10)
    loader.dataset.transform = preprocess.eval_transform_from(preprocess.record_for('omniglot', 42))
    model = FRN(backbone='Conv4', image_size=42)
    load_model(model, str(CHECKPOINT))
    loader.set_epoch(0)
    accs, _ = evaluate(model, loader, 5, 1, 5)
    assert results['model']['acc'] == pytest.approx(float(np.mean(accs)), abs=1e-9)


def test_cross_domain_preprocessing_refuses_an_image_cache_prepared_for_the_data(tiny_mini, tmp_path, capsys):
    import test as test_script
    with pytest.raises(SystemExit) as stop:
        test_script.main(['--dataset', 'mini_imagenet', '--data_path', str(tiny_mini), '--model', 'Conv4',
                          '--model_path', str(CHECKPOINT), '--image_size', '42', '--cache_dir', str(tmp_path / 'c'),
                          '--test_n_episode', '2', '--test_task_nums', '1', '--results_dir', str(tmp_path / 'r')])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith('error: ') and '--preprocess data' in err
    assert not (tmp_path / 'c').exists()  # refused before the image cache was built


@pytest.mark.parametrize('key, value, fragment', [
    ('colour', 'RGB', 'has a bad "colour": "RGB" (expected "rgb" or "grey")'),
    ('image_size', '84', 'has a bad "image_size": "84" (expected a positive whole number)'),
    ('invert', 'no', 'has a bad "invert": "no" (expected true or false)'),
    ('resize', {'size': 96, 'interpolation': 'fancy'}, 'has a bad "resize"'),
    ('crop', {'centre': 84}, 'has a bad "crop": {"centre": 84}'),
    ('normalize', {'mean': [0.5], 'std': [1, 1, 1]}, 'has a bad "normalize"'),
    ('crop', 'missing', 'lacks crop; write it again'),
])
def test_a_bad_value_in_preprocess_json_is_named_with_the_value(tmp_path, key, value, fragment):
    record = preprocess.record_for('mini_imagenet', 84)
    if value == 'missing':
        del record[key]
    else:
        record[key] = value
    (tmp_path / preprocess.SIDECAR).write_text(json.dumps(record))
    with pytest.raises(FRNError) as err:
        preprocess.read_sidecar(str(tmp_path / 'best_model.pdparams'))
    assert fragment in str(err.value) and '  ' not in str(err.value), str(err.value)
