"""Open-set rejection and the support-set diagnostics, on real Omniglot characters with the committed model.

The Omniglot Conv-4 (98.7% 5-way 1-shot) tells characters apart well enough for both questions to have
clear answers; the Tiny-ImageNet Conv-4 (41% 5-way 5-shot) does not (see docs/deploy.md). Calibration
and measurement use disjoint test classes, so no class is used for both.
"""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, load_tool, shared_path
from deploy import openset, support_check
from deploy.export import DygraphFeatures

CHECKPOINT = REPO / 'results' / 'omniglot' / 'Conv4_meta_frn_60way_1shot_metatrain' / 'best_model.pdparams'
RATE = 0.05


@pytest.fixture(scope='module')
def omni(tmp_path_factory):
    """The model, 60 test classes (30 to calibrate on, 30 to measure on) with 10 images each as maps."""
    from data.omniglot import read_omniglot
    split = read_omniglot(str(shared_path('data', 'omniglot')), 'test')
    classes = sorted(np.random.RandomState(0).choice(split.n_classes, 60, replace=False).tolist())
    features = DygraphFeatures(str(CHECKPOINT))
    calibration_split, measure_split = split.subset(classes[:30]), split.subset(classes[30:])
    return {'split': split, 'features': features, 'measure_split': measure_split, 'calibration_split': calibration_split,
            'cal': openset.split_maps(features, calibration_split, 10),
            'test': openset.split_maps(features, measure_split, 10),
            'root': tmp_path_factory.mktemp('openset')}


# ---- the numbers ----

def test_threshold_accepts_at_most_the_target_share_of_unknowns():
    rng = np.random.RandomState(0)
    for n, rate in ((200, 0.05), (37, 0.1), (10, 0.0), (50, 0.5)):
        unknown = np.round(rng.randn(n), 1)  # with ties
        t = openset.threshold_at(unknown, rate)
        assert np.mean(unknown >= t) <= rate
        assert np.mean(unknown >= np.nextafter(unknown[unknown < t].max(), -np.inf)) > rate  # and no lower one would


def test_auroc_is_the_share_of_known_unknown_pairs_in_order_ties_half():
    rng = np.random.RandomState(1)
    known, unknown = np.round(rng.randn(40) + 1, 1), np.round(rng.randn(30), 1)
    pairs = (known[:, None] > unknown[None]).mean() + 0.5 * (known[:, None] == unknown[None]).mean()
    assert openset.auroc(known, unknown) == pytest.approx(pairs, abs=1e-12)


def test_explained_fraction_is_one_minus_the_error_over_the_query_energy(omni):
    maps, members = omni['test']
    f = omni['features']
    from deploy.predict import class_scores
    query, support = maps[members[0][:3]], [maps[members[c][3:5]] for c in range(3)]
    explained = openset.explained_fraction(class_scores(query, support, f.alpha, f.beta), query)
    for c, s in enumerate(support):  # numpy float64 ridge, Equation 8
        S = s.reshape(-1, s.shape[2]).astype(np.float64)
        lam = S.shape[0] / S.shape[1] * np.exp(np.float32(f.alpha)) + 1e-6
        rebuilt = np.exp(f.beta) * query.astype(np.float64) @ S.T @ np.linalg.inv(S @ S.T + lam * np.eye(len(S))) @ S
        error = np.square(rebuilt - query).sum(axis=2).mean(axis=1)
        np.testing.assert_allclose(explained[:, c], 1 - error / np.square(query).sum(axis=2).mean(axis=1), atol=2e-5)


# ---- rejection on held-out classes ----

def test_calibrated_threshold_rejects_unknown_characters_better_than_max_softmax(omni):
    """Calibrated on 30 test classes, measured on 30 others: the explained fraction separates known from unknown
    queries (AUROC >= 0.95), better than the maximum softmax probability, and its threshold keeps the unknowns it
    accepts near the target while accepting most knowns."""
    f = omni['features']
    record = openset.calibrate(f, *omni['cal'], shots=(1,), episodes=40, rate=RATE)
    assert record['thresholds'].keys() == {'1'} and record['measured']['1']['false_accept'] <= RATE
    run = openset.run_episodes(*omni['test'], (f.scale, f.alpha, f.beta), 5, 1, 3, 5, 40, seed=7)
    measured = openset.rates(run, 'explained', record['thresholds']['1'])
    baseline = openset.auroc(run['known']['msp'], run['unknown']['msp'])
    assert measured['auroc'] >= 0.95 and measured['auroc'] > baseline + 0.02, (measured, baseline)
    assert measured['false_accept'] <= 3 * RATE and measured['known_correct_accept'] >= 0.8, measured


def write_pngs(split, indices, folder):
    folder.mkdir(parents=True, exist_ok=True)
    for i in indices:
        split.load_image(i).save(folder / f'{i:05d}.png')


@pytest.fixture(scope='module')
def folders(omni):
    """Support folders of 5 measured classes (3 images each) and queries: 2 more of each, 2 of 5 other classes."""
    split, root = omni['measure_split'], omni['root']
    members = split.class_members()
    for c in range(5):
        write_pngs(split, members[c][:3], root / 'support' / f'char{c}')
        write_pngs(split, members[c][3:5], root / 'query')
    for c in range(5, 10):
        write_pngs(split, members[c][:2], root / 'query' / 'unknown')
    for png in (root / 'query' / 'unknown').iterdir():
        png.rename(root / 'query' / f'unknown_{png.name}')
    (root / 'query' / 'unknown').rmdir()
    return root


def infer(*args):
    result = subprocess.run([sys.executable, str(REPO / 'tools' / 'infer.py'), *map(str, args), '--threads', '2'],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.slow
def test_calibrate_then_infer_reject_turns_away_characters_of_other_classes(omni, folders, tmp_path):
    """tools/calibrate_openset.py writes openset.json beside a copy of the checkpoint; infer.py --reject finds it
    and answers null for most queries of classes outside the support, and the right class for most of the others."""
    model = tmp_path / 'model'
    model.mkdir()
    for name in ('best_model.pdparams', 'preprocess.json'):
        shutil.copy(CHECKPOINT.parent / name, model / name)
    labelled = tmp_path / 'labelled'  # the 30 calibration classes as class folders, 6 images each
    for c, images in enumerate(omni['calibration_split'].class_members()):
        write_pngs(omni['calibration_split'], images[:6], labelled / f'class{c:02d}')
    cal = subprocess.run([sys.executable, str(REPO / 'tools' / 'calibrate_openset.py'), '--model_path',
                          str(model / 'best_model.pdparams'), '--data_path', str(labelled), '--class_folders',
                          '--shots', '3', '--episodes', '30', '--images_per_class', '6', '--threads', '2'],
                         capture_output=True, text=True, timeout=1200)
    assert cal.returncode == 0, cal.stderr
    record = json.loads((model / 'openset.json').read_text())
    assert record['target_false_accept'] == RATE and record['score'] == 'explained' and list(record['thresholds']) == ['3']
    assert record['calibration']['way'] == 5 and record['model']['backbone'] == 'Conv4'
    out = json.loads(infer('--support', folders / 'support', '--query', folders / 'query', '--model_path',
                           model / 'best_model.pdparams', '--reject', '--json').stdout)
    rows = out['predictions']
    unknown = [r for r in rows if r['query'].startswith('unknown_')]
    known = [r for r in rows if not r['query'].startswith('unknown_')]
    truth = {f'{i:05d}.png': f'char{c}' for c, m in enumerate(omni['measure_split'].class_members()[:5]) for i in m[3:5]}
    assert sum(r['prediction'] is None for r in unknown) >= 8, unknown  # of 10
    assert sum(r['prediction'] == truth[r['query']] for r in known) >= 8, known  # of 10
    decisions = out['open_set']['queries']
    assert all((r['prediction'] is None) == (not d['accepted']) for r, d in zip(rows, decisions))
    assert all(d['accepted'] == (d['confidence'] >= d['threshold']) for d in decisions)
    table = infer('--support', folders / 'support', '--query', folders / 'query', '--model_path',
                  model / 'best_model.pdparams', '--calibration', model / 'openset.json').stdout
    assert table.count('(unknown)') == sum(r['prediction'] is None for r in rows)


@pytest.mark.slow
def test_a_calibration_of_another_model_is_refused_in_one_line(omni, folders, tmp_path):
    f = omni['features']
    record = openset.calibrate(f, *omni['cal'], shots=(1,), episodes=5)
    record['model']['r'] = [record['model']['r'][0] + 0.5, record['model']['r'][1]]
    path = tmp_path / 'other.json'
    path.write_text(json.dumps(record))
    result = subprocess.run([sys.executable, str(REPO / 'tools' / 'infer.py'), '--support', str(folders / 'support'),
                             '--query', str(folders / 'query'), '--model_path', str(CHECKPOINT), '--calibration',
                             str(path)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith('error: ')
    assert 'was calibrated for another model' in result.stderr and 'Traceback' not in result.stderr


def test_a_class_larger_than_calibrated_uses_the_largest_calibrated_threshold():
    cal = openset.Calibration({'score': 'explained', 'thresholds': {'1': 0.5, '3': 0.7}, 'target_false_accept': 0.05,
                               'model': {'scale': 1.0}, 'calibration': {'way': 5}}, 'x.json')
    assert [cal.threshold(k) for k in (1, 2, 3, 8)] == [0.5, 0.5, 0.7, 0.7]
    decision = cal.decide(np.array([[-1.0, -2.0], [-3.0, -0.5]]), np.array([[0.6, 0.1], [0.2, 0.69]]), [1, 3])
    assert decision['best'].tolist() == [0, 1] and decision['accepted'].tolist() == [True, False]


# ---- support diagnostics: a planted wrong image ----

def plant(omni, root, source_class, into=0, way=5, shot=4):
    """Support folders of `way` measured classes with `shot` images each, and one image of `source_class`
    (another support class, or one outside) planted into class `into`. Returns (folder, planted path)."""
    split = omni['measure_split']
    members = split.class_members()
    for c in range(way):
        write_pngs(split, members[c][:shot], root / 'support' / f'char{c}')
    planted = members[source_class][-1]
    split.load_image(planted).save(root / 'support' / f'char{into}' / 'planted.png')
    for c in range(way):
        write_pngs(split, members[c][shot:shot + 2], root / 'query')
    return root


@pytest.mark.parametrize('source_class', [1, 3, 7, 12])
def test_a_planted_character_is_flagged_first_and_clean_classes_are_not(omni, tmp_path, source_class):
    """One image of another class (1 and 3: in the support; 7 and 12: outside it) planted into char0: it heads
    the report, flagged; no image of another class is flagged."""
    root = plant(omni, tmp_path, source_class)
    out = json.loads(infer('--support', root / 'support', '--query', root / 'query', '--model_path', CHECKPOINT,
                           '--check_support', '--json').stdout)
    images = out['support_check']['images']
    assert images[0]['image'] == 'char0/planted.png' and images[0]['flags'], images[:3]
    assert 'the rest of \'char0\'' in images[0]['reason']
    assert not [i for i in images if i['flags'] and i['class'] != 'char0'], images
    assert len(images) == 5 * 4 + 1 and all(i['own'] is not None for i in images)


def test_a_clean_support_set_has_no_flags(omni, tmp_path):
    split = omni['measure_split']
    members = split.class_members()
    for c in range(5, 10):
        write_pngs(split, members[c][:4], tmp_path / 'support' / f'char{c}')
    maps = omni['features']
    from deploy.predict import read_support
    check = support_check.check_support(maps, read_support(str(tmp_path / 'support')))
    assert check['flagged'] == 0, [i['reason'] for i in check['images'] if i['flags']]
    assert all(i['help'] is None for i in check['images'])  # no queries, no help


def test_a_class_of_one_image_is_reported_unchecked_not_flagged(omni):
    maps, members = omni['test']
    f = omni['features']
    report = support_check.check_maps([maps[members[0][:1]], maps[members[1][:3]]], f.alpha, f.beta)
    assert report[0]['own'] is None and report[0]['foreign_rank'] is None and report[0]['flags'] == []
    assert all(item['own'] is not None for item in report[1:])


def test_the_measurement_table_in_the_docs_is_the_committed_json():
    """docs/deploy.md's tables come from the committed measurements (tools/measure_openset.py --docs)."""
    from deploy.open_measure import table
    docs = (REPO / 'docs' / 'deploy.md').read_text()
    found = sorted((REPO / 'results').glob('*/openset/measure.json'))
    assert found, 'no committed measurement'
    for path in found:
        name = path.parent.parent.name
        assert f'<!-- openset:{name} -->\n{table(json.loads(path.read_text()))}\n<!-- /openset:{name} -->' in docs, name


def test_calibrate_tool_refuses_too_few_images_per_class(capsys):
    with pytest.raises(SystemExit) as stop:
        load_tool('calibrate_openset').main(['--model_path', str(CHECKPOINT), '--data_path', 'x', '--shots', '5',
                                            '--images_per_class', '6'])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and '--images_per_class 6 is fewer than' in err


def test_measure_tool_refuses_to_calibrate_and_measure_on_the_same_classes(capsys):
    with pytest.raises(SystemExit) as stop:
        load_tool('measure_openset').main(['--model_path', str(CHECKPOINT), '--data_path', 'x', '--out', 'm.json',
                                          '--cal_split', 'test', '--test_split', 'test'])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "--cal_split and --test_split are both 'test'" in err
