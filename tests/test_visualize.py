"""Seeing what FRN sees: error maps that are FRN's own numbers, weights that rebuild the query, and the figure.

Uses the committed Tiny-ImageNet-32 Conv-4 model on real test photos (2 x 2 feature maps at 32 px).
"""
import csv
import os
import shutil

import numpy as np
import paddle
import pytest
from PIL import Image

from conftest import REPO, load_tool
from deploy.explain import explain, explain_maps
from deploy.export import DygraphFeatures
from deploy.predict import class_probabilities, load_images
from methods.episode import split_episode
from methods.ridge import neg_l2_dist, recon_explain, ridge_lambda

MODEL = REPO / 'results' / 'tinyimagenet32' / 'Conv4_meta_frn_20way_5shot_metatrain' / 'best_model.pdparams'
SIZE, WAY, SHOT, QUERY = 32, 3, 5, 2


@pytest.fixture(scope='module')
def episode(tiny_mini, tmp_path_factory):
    """The trained model, and a 3-way 5-shot 2-query episode of real test photos, also as class folders."""
    with open(tiny_mini / 'test.csv') as f:
        rows = list(csv.reader(f))[1:]
    classes = sorted({label for _, label in rows})[:WAY]
    root = tmp_path_factory.mktemp('viz')
    support, queries = [], []
    (root / 'query').mkdir()
    for label in classes:
        names = [n for n, c in rows if c == label]
        (root / 'support' / label).mkdir(parents=True)
        for n in names[:SHOT]:
            shutil.copy(tiny_mini / 'images' / n, root / 'support' / label / n)
        for n in names[SHOT:SHOT + QUERY]:
            shutil.copy(tiny_mini / 'images' / n, root / 'query' / n)
        support.append((label, [str(root / 'support' / label / n) for n in names[:SHOT]]))
        queries += [str(root / 'query' / n) for n in names[SHOT:SHOT + QUERY]]
    features = DygraphFeatures(str(MODEL), image_size=SIZE)
    return {'root': root, 'features': features, 'support': support, 'queries': queries, 'classes': classes}


# ---- (a) the numbers are FRN's ----

def test_mean_error_map_is_exactly_frns_episode_distance(episode):
    """The head with the explanation's extras: -mean over positions of its errors == FRN.get_neg_l2_dist,
    bit for bit, on a real episode."""
    model = episode['features'].model
    images = load_images([p for _, paths in episode['support'] for p in paths] + episode['queries'], SIZE)
    x = paddle.to_tensor(images)
    with paddle.no_grad():
        expected = model.get_neg_l2_dist(x, WAY, SHOT, QUERY).numpy()
        fm = model.get_feature_map(x)  # N, r, d
        support, query = split_episode(fm, WAY, SHOT, QUERY)  # WAY, SHOT, r, d; WAY*QUERY, r, d
        support = paddle.reshape(support, [WAY, -1, fm.shape[2]])  # WAY, SHOT*r, d
        errors = neg_l2_dist(query, support, model.r[0], model.r[1], explain=True)['dist']  # WAY*QUERY, r, WAY
        got = -paddle.mean(errors, axis=1).numpy()
    np.testing.assert_array_equal(got, expected)


def test_explain_scores_and_probabilities_are_exactly_infers(episode):
    f = episode['features']
    result = explain(f, episode['support'], episode['queries'])
    support_maps = [f(load_images(paths, SIZE)) for _, paths in episode['support']]
    expected = class_probabilities(f(load_images(episode['queries'], SIZE)), support_maps, f.alpha, f.beta, f.scale)
    np.testing.assert_array_equal(result['probabilities'], expected)
    np.testing.assert_allclose(result['scores'], -result['errors'].mean(axis=(2, 3)), rtol=1e-6)
    assert result['errors'].shape == (WAY * QUERY, WAY, 2, 2)
    assert result['predictions'] == [episode['classes'][c] for c in result['probabilities'].argmax(axis=1)]


def test_ridge_weights_rebuild_the_query_as_equation_8_in_float64(episode):
    """W S = rho q S^T (S S^T + lam I)^-1 S (numpy, float64), and ||W S - q||^2 is the returned error."""
    f = episode['features']
    support = f(load_images(episode['support'][0][1], SIZE))  # k, r, d
    query = f(load_images(episode['queries'][:2], SIZE)).reshape(-1, support.shape[2])  # 2r, d
    s = support.reshape(1, -1, support.shape[2])  # 1, kr, d
    errors, weights = recon_explain(paddle.to_tensor(query), paddle.to_tensor(s), paddle.to_tensor(f.alpha),
                                    paddle.to_tensor(f.beta))
    kr, d = s.shape[1:]
    lam = float(ridge_lambda(kr, d, paddle.to_tensor(f.alpha, dtype='float32')))
    s64, q64 = s[0].astype(np.float64), query.astype(np.float64)
    w64 = np.exp(f.beta) * q64 @ s64.T @ np.linalg.inv(s64 @ s64.T + lam * np.eye(kr))
    q_bar = w64 @ s64
    np.testing.assert_allclose(weights.numpy()[0], w64, rtol=1e-4, atol=1e-5 * np.abs(w64).max())
    np.testing.assert_allclose(weights.numpy()[0].astype(np.float64) @ s64, q_bar, atol=1e-4 * np.abs(q_bar).max())
    np.testing.assert_allclose(errors.numpy()[:, 0], ((q_bar - q64) ** 2).sum(axis=1), rtol=1e-4)


# ---- (b) a known answer ----

def test_half_a_and_half_b_query_is_explained_by_a_on_the_left_and_b_on_the_right(episode):
    """Query feature map: left column from support image 2 of class A, right column from image 3 of class B.

    A's reconstruction must be better on the left and B's on the right, and the largest
    ridge weight of each copied position must point at the support position it came from.
    """
    f = episode['features']
    support_maps = [f(load_images(paths, SIZE)) for _, paths in episode['support'][:2]]  # A, B: k, r, d
    side, r = 2, support_maps[0].shape[1]
    a, b = support_maps[0][2].reshape(side, side, -1), support_maps[1][3].reshape(side, side, -1)  # h, w, d
    mixed = np.concatenate([a[:, :1], b[:, 1:]], axis=1).reshape(1, r, -1)  # 1, r, d
    errors = explain_maps(mixed, support_maps, f.alpha, f.beta, f.scale)['errors'][0]  # way, h, w
    assert (errors[0, :, 0] < errors[1, :, 0]).all() and (errors[1, :, 1] < errors[0, :, 1]).all(), errors
    assert (errors[0, :, 0] < errors[0, :, 1]).all() and (errors[1, :, 1] < errors[1, :, 0]).all(), errors
    for cls, image, col in ((0, 2, 0), (1, 3, 1)):  # each class alone: it is the prediction, all 4 positions traced
        matches = explain_maps(mixed, [support_maps[cls]], f.alpha, f.beta, f.scale, top=1,
                               positions=2)['correspondences'][0]
        assert sorted((m['row'], m['col']) for m in matches) == [(0, 0), (0, 1), (1, 0), (1, 1)]
        for m in matches:
            if m['col'] == col:
                assert m['support'][0]['image'] == image and (m['support'][0]['row'], m['support'][0]['col']) == \
                    (m['row'], m['col']), m


# ---- (c) the figure ----

@pytest.mark.slow
def test_visualize_writes_a_decodable_colourful_png_per_query(episode, capsys):
    root, out = episode['root'], episode['root'] / 'out'
    load_tool('visualize').main(['--support', str(root / 'support'), '--query', str(root / 'query'), '--model_path',
                            str(MODEL), '--image_size', str(SIZE), '--out', str(out), '--threads', '2'])
    text = capsys.readouterr().out
    assert f'wrote {WAY * QUERY} figure(s)' in text
    pngs = sorted(out.glob('*.png'))
    assert len(pngs) == WAY * QUERY and not list(out.glob('.*'))  # no temp file left behind
    viz = load_tool('visualize')
    first = next(q for q in episode['queries'] if q.endswith(pngs[0].stem + '.jpg'))
    shown = viz.shown_support(explain(episode['features'], episode['support'], [first])['correspondences'][0], SHOT)
    with Image.open(pngs[0]) as img:
        assert img.format == 'PNG' and img.size == viz.figure_size(WAY, len(shown))
        pixels = np.asarray(img.convert('RGB'))
    assert pixels.std() > 20
    assert len(np.unique(pixels.reshape(-1, 3) // 16, axis=0)) > 50  # heat maps, photos, coloured boxes


def test_visualize_json_has_the_error_maps_and_correspondences(episode, capsys):
    import json
    root = episode['root']
    query = episode['queries'][0]
    load_tool('visualize').main(['--support', str(root / 'support'), '--query', query, '--model_path', str(MODEL),
                            '--image_size', str(SIZE), '--out', str(root / 'out_json'), '--json', '--top', '2',
                            '--threads', '2'])
    data = json.loads(capsys.readouterr().out)
    (record,) = data['queries']
    assert set(record['errors']) == set(episode['classes'])
    for c in episode['classes']:
        assert np.asarray(record['errors'][c]).shape == (2, 2)
        assert record['scores'][c] == pytest.approx(-np.mean(record['errors'][c]), rel=1e-6)
    assert all(len(m['support']) == 2 for m in record['correspondences'])
    assert {m['kind'] for m in record['correspondences']} == {'best', 'worst'}


def test_queries_whose_names_clash_each_get_their_own_figure(episode, tmp_path, capsys):
    """a.jpg and a.png share a stem, and a.jpg's fallback name a_jpg is a_jpg.png's stem; A.PNG differs from a.png
    only in case, which a case-insensitive file system does not tell apart."""
    import json
    root, queries = episode['root'], tmp_path / 'queries'
    queries.mkdir()
    for name, source in zip(['a.jpg', 'a.png', 'a_jpg.png', 'A.PNG'], episode['queries']):
        with Image.open(source) as img:
            img.convert('RGB').save(queries / name)
    load_tool('visualize').main(['--support', str(root / 'support'), '--query', str(queries), '--model_path',
                                 str(MODEL), '--image_size', str(SIZE), '--out', str(tmp_path / 'out'), '--json',
                                 '--threads', '2'])
    records = json.loads(capsys.readouterr().out)['queries']
    pngs = [r['png'] for r in records]
    assert len(records) == 4 and len({p.lower() for p in pngs}) == 4, pngs
    assert sorted(os.listdir(tmp_path / 'out')) == sorted(os.path.basename(p) for p in pngs)


def test_infer_explain_adds_error_maps_and_keeps_the_scores(episode, capsys):
    import json
    root = episode['root']
    common = ['--support', str(root / 'support'), '--query', str(root / 'query'), '--model_path', str(MODEL),
              '--image_size', str(SIZE), '--threads', '2', '--json']
    load_tool('infer').main(common)
    plain = json.loads(capsys.readouterr().out)
    load_tool('infer').main(common + ['--explain'])
    explained = json.loads(capsys.readouterr().out)
    for p, e in zip(plain['predictions'], explained['predictions']):
        assert 'errors' not in p and e['scores'] == p['scores'] and e['prediction'] == p['prediction']
        best = min(e['errors'], key=lambda c: np.mean(e['errors'][c]))
        assert best == e['prediction']


# ---- (d) errors users can cause ----

def viz_error(capsys, *args):
    with pytest.raises(SystemExit) as stop:
        load_tool('visualize').main([str(a) for a in args] + ['--threads', '2'])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith('error: ') and len(err.strip().splitlines()) == 1, err
    return err


def test_bad_input_is_a_one_line_error(episode, tmp_path, capsys):
    root = episode['root']
    common = ['--model_path', MODEL, '--image_size', SIZE, '--out', tmp_path / 'out']
    err = viz_error(capsys, '--support', tmp_path / 'nowhere', '--query', root / 'query', *common)
    assert 'is not a folder' in err
    one = tmp_path / 'one'
    shutil.copytree(root / 'support' / episode['classes'][0], one / episode['classes'][0])
    err = viz_error(capsys, '--support', one, '--query', root / 'query', *common)
    assert 'at least 2 class subfolders' in err
    broken = shutil.copytree(root / 'support', tmp_path / 'broken')
    (broken / episode['classes'][1] / 'bad.jpg').write_bytes(b'not a JPEG')
    err = viz_error(capsys, '--support', broken, '--query', root / 'query', *common)
    assert 'cannot read image' in err and 'bad.jpg' in err
    err = viz_error(capsys, '--support', root / 'support', '--query', root / 'query', *common, '--model', 'ResNet12')
    assert 'does not match this model' in err
    assert not (tmp_path / 'out').exists()


# ---- (d) a figure that reads at a glance ----

LONG_NAMES = [f'{make}_Continental_Supersports_Convertible_{year}' for make, year in
              zip(['Bentley', 'Aston_Martin', 'Rolls_Royce', 'Mercedes_Benz', 'Lamborghini', 'Chevrolet', 'Hyundai',
                   'Volkswagen', 'Mitsubishi', 'Land_Rover'], range(2003, 2013))]


def fake_explanation(way, side=5, shots=3, seed=0):
    """What deploy/explain.explain gives for one query among `way` classes (the figure needs nothing else)."""
    rng = np.random.RandomState(seed)
    errors = rng.uniform(1, 10, (1, way, side, side)).astype('float32')
    scores = -errors.mean(axis=(2, 3))
    probabilities = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    predicted = scores.argmax(axis=1)
    matches = [{'kind': kind, 'row': k, 'col': k, 'error': 1.0,
                'support': [{'image': (k + j) % shots, 'row': j, 'col': k, 'weight': 0.5} for j in range(3)]}
               for k, kind in enumerate(['best', 'best', 'worst', 'worst'])]
    return {'classes': LONG_NAMES[:way], 'errors': errors, 'scores': scores, 'probabilities': probabilities,
            'predicted': predicted, 'predictions': [LONG_NAMES[predicted[0]]], 'correspondences': [matches],
            'names': ['my_holiday_photos/a_very_long_folder_name/IMG_20240817_153012.jpg']}


def text_boxes(fig):
    """The window extents of every visible, non-empty text of the figure: titles, labels, tick labels, legend."""
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    from matplotlib.text import Text
    texts = [t for t in {id(t): t for t in fig.findobj(Text)}.values() if t.get_visible() and t.get_text().strip()]
    return [(t.get_text(), t.get_window_extent(renderer)) for t in texts]


@pytest.mark.parametrize('way', [2, 5, 7, 10])
def test_figure_texts_never_overlap_with_long_class_names(way):
    viz = load_tool('visualize')
    result = fake_explanation(way)
    view = np.full((84, 84, 3), 128, dtype=np.uint8)
    fig = viz.render(result, 0, view, {k: view for k in viz.shown_support(result['correspondences'][0], 3)}, 84)
    boxes = text_boxes(fig)
    assert len(boxes) > way  # the class titles are there
    width, height = fig.canvas.get_width_height()
    for n, (text, box) in enumerate(boxes):
        assert box.x0 >= -1 and box.y0 >= -1 and box.x1 <= width + 1 and box.y1 <= height + 1, text  # on the canvas
        for other, other_box in boxes[n + 1:]:
            assert not box.overlaps(other_box), (text, other)


def test_figure_wraps_classes_into_full_rows_and_shows_the_supports_in_their_order():
    viz = load_tool('visualize')
    assert [viz.layout(way) for way in (2, 5, 6, 7, 10)] == [(1, 2), (1, 5), (2, 3), (2, 4), (2, 5)]
    matches = fake_explanation(3)['correspondences'][0]  # they point at images 1, 2, 0 in that order
    assert viz.shown_support(matches, 3) == [0, 1, 2] and viz.shown_support(matches) == [0, 1, 2]


def test_error_maps_are_drawn_alone_so_their_colours_are_the_colour_bars():
    viz = load_tool('visualize')
    result = fake_explanation(5)
    view = np.zeros((84, 84, 3), dtype=np.uint8)
    fig = viz.render(result, 0, view, {0: view}, 84)
    maps = [ax for ax in fig.axes if any(im.get_cmap().name == 'magma_r' for im in ax.get_images())]
    assert len(maps) == 5 and all(len(ax.get_images()) == 1 for ax in maps)  # no photo under the heat map
    assert all(im.get_alpha() in (None, 1) for ax in maps for im in ax.get_images())


def test_a_small_map_traces_one_best_and_one_worst_position_by_default():
    from deploy.explain import traced_positions
    assert traced_positions(4) == 1 and traced_positions(9) == 1 and traced_positions(25) == 2
    assert traced_positions(4, positions=2) == 2 and traced_positions(25, positions=20) == 12  # asked for: at most half
