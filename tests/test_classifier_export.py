"""The whole few-shot classifier in Paddle Inference, and the gallery built on it, on real photos.

The committed Tiny-ImageNet Conv-4 (84 px) is exported with --classifier; its classifier.* program (FRN's
ridge head included) runs through paddle.inference on real Stanford Cars episodes whose classes have 1 to
5 support images, and must give the dygraph scores of deploy/predict (each class solved alone) within the
feature export's tolerance. The export runs in a subprocess (the predictor is native code).
"""
import json
import subprocess
import sys

import numpy as np
import paddle
import pytest

from conftest import REPO, load_tool
from deploy.classifier_export import ExportedClassifier, compare_with_dygraph, pad_support
from deploy.export import DygraphFeatures, read_head
from deploy.predict import class_scores, load_images, read_support
from utils import FRNError

CHECKPOINT = REPO / 'results' / 'tinyimagenet32_84' / 'Conv4_meta_frn_20way_5shot_metatrain' / 'best_model.pdparams'
TOLERANCE = 2e-5  # max |exported - dygraph| / max |dygraph|, as for the feature maps (tests/test_export_infer.py)
PROGRAM = 'classifier.json' if int(paddle.__version__.split('.')[0]) >= 3 else 'classifier.pdmodel'


def run_tool(name, *args):
    result = subprocess.run([sys.executable, str(REPO / 'tools' / f'{name}.py'), '--threads', '2', *map(str, args)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope='module')
def export(tmp_path_factory):
    folder = tmp_path_factory.mktemp('classifier') / 'export'
    out = run_tool('export_model', '--model', 'Conv4', '--model_path', CHECKPOINT, '--save_dir', folder,
                   '--classifier', '--max_shot', 5)
    return folder, out.stdout


@pytest.fixture(scope='module')
def cars(cars_small):
    """The 5 test classes of the Cars subset: their image paths, sorted."""
    return [sorted(str(p) for p in folder.iterdir()) for folder in sorted((cars_small / 'test').iterdir())]


@pytest.mark.slow
def test_export_writes_the_classifier_beside_the_feature_program_and_checks_it(export):
    folder, stdout = export
    assert {PROGRAM, 'classifier.pdiparams', 'model.pdiparams', 'frn_head.json'} <= {p.name for p in folder.iterdir()}
    head = read_head(str(folder))
    assert head['classifier']['max_shot'] == 5 and set(head['classifier']['inputs']) == {'query', 'support', 'shots'}
    assert 'classifier scores within' in stdout


@pytest.mark.slow
@pytest.mark.parametrize('shots', [(1, 2, 3, 4, 5), (5, 5, 5, 5, 5), (1, 1), (3, 1, 4)])
def test_exported_classifier_gives_the_dygraph_scores_on_real_episodes(export, cars, shots):
    """Real Cars crops, classes of unequal sizes (zero-padded to max_shot in the program): scores within 2e-5 of
    the largest, the same predicted classes, probabilities summing to 1, explained = 1 + score / query energy."""
    folder, _ = export
    features = DygraphFeatures(str(CHECKPOINT))
    exported = ExportedClassifier(str(folder), read_head(str(folder)), threads=2)
    assert exported.backend == 'paddle.inference on CPU'
    support = [load_images(paths[:k], 84, features.preprocess) for paths, k in zip(cars, shots)]
    queries = load_images([p for paths in cars[:len(shots)] for p in paths[10:13]], 84, features.preprocess)
    relative, _ = compare_with_dygraph(features, exported, queries, support)
    assert relative <= TOLERANCE
    support_maps, query_maps = [features(s) for s in support], features(queries)
    out = exported(queries, support_maps)
    reference = class_scores(query_maps, support_maps, features.alpha, features.beta)
    assert (out['scores'].argmax(axis=1) == reference.argmax(axis=1)).all()
    np.testing.assert_allclose(out['probabilities'].sum(axis=1), 1, rtol=1e-5)
    energy = np.square(query_maps.astype(np.float64)).sum(axis=2).mean(axis=1)
    np.testing.assert_allclose(out['explained'], 1 + reference / energy[:, None], atol=2e-5)


def test_a_class_with_more_images_than_the_export_takes_is_refused():
    with pytest.raises(FRNError, match='export again with --max_shot 7'):
        pad_support([np.zeros((7, 25, 64), np.float32), np.zeros((2, 25, 64), np.float32)], 5)


@pytest.mark.slow
def test_gallery_adds_removes_and_classifies_like_infer(export, cars, tmp_path):
    """Classes added from a support folder, one more by name, one removed: classify gives infer.py's predictions
    (dygraph) for the same classes, scores within the tolerance."""
    folder, _ = export
    support = tmp_path / 'support'
    for c, paths in enumerate(cars[:3]):
        (support / f'car{c}').mkdir(parents=True)
        for p in paths[:3]:
            (support / f'car{c}' / p.split('/')[-1]).write_bytes(open(p, 'rb').read())
    queries = tmp_path / 'query'
    queries.mkdir()
    for paths in cars[:4]:
        for p in paths[20:22]:
            (queries / p.split('/')[-1]).write_bytes(open(p, 'rb').read())
    gallery = tmp_path / 'classes.npz'
    common = ['--gallery', gallery, '--inference_dir', folder]
    run_tool('gallery', *common, 'add', '--support', support)
    from deploy.export import InferenceFeatures
    from deploy.gallery import Gallery
    features = InferenceFeatures(str(folder))
    stored = Gallery.open(str(gallery), features)
    for name, paths in (('extra', cars[4][:2]), ('car3', cars[3][:4])):
        stored.add(name, paths, features)
    stored.remove('extra')
    stored.save()
    listed = run_tool('gallery', *common, 'list').stdout.split()
    assert listed == ['car0', '3', 'car1', '3', 'car2', '3', 'car3', '4']
    got = json.loads(run_tool('gallery', *common, 'classify', '--query', queries, '--json').stdout)
    (support / 'car3').mkdir()
    for p in cars[3][:4]:
        (support / 'car3' / p.split('/')[-1]).write_bytes(open(p, 'rb').read())
    want = json.loads(run_tool('infer', '--support', support, '--query', queries, '--model_path', CHECKPOINT,
                               '--json').stdout)
    assert got['classes'] == want['classes'] == ['car0', 'car1', 'car2', 'car3']
    for a, b in zip(got['predictions'], want['predictions']):
        assert a['query'] == b['query'] and a['prediction'] == b['prediction']
        assert max(abs(a['scores'][c] - b['scores'][c]) for c in got['classes']) <= 1e-5
    # the same photos in class folders: the accuracy of the same predictions, as infer.py gives it
    labelled = tmp_path / 'labelled'
    for c, paths in enumerate(cars[:4]):
        (labelled / f'car{c}').mkdir(parents=True)
        for p in paths[20:22]:
            (labelled / f'car{c}' / p.split('/')[-1]).write_bytes(open(p, 'rb').read())
    got = json.loads(run_tool('gallery', *common, 'classify', '--query', labelled, '--json').stdout)
    want = json.loads(run_tool('infer', '--support', support, '--query', labelled, '--model_path', CHECKPOINT,
                               '--json').stdout)
    assert [a['truth'] for a in got['predictions']] == [f'car{c}' for c in range(4) for _ in range(2)]
    assert got['accuracy'] == want['accuracy'] and want['accuracy']['total'] == 8


@pytest.mark.slow
def test_gallery_of_another_model_is_refused(export, cars, tmp_path):
    folder, _ = export
    from deploy.gallery import Gallery
    from deploy.export import InferenceFeatures
    features = InferenceFeatures(str(folder))
    gallery = Gallery.open(str(tmp_path / 'g.npz'), features, create=True)
    gallery.add('a', cars[0][:2], features)
    gallery.save()
    features.alpha += 0.25
    with pytest.raises(FRNError, match='holds maps of another model'):
        Gallery.open(str(tmp_path / 'g.npz'), features)
    assert read_support  # the folder reader the gallery's add --support uses


def test_gallery_add_needs_a_support_folder_or_a_named_class_with_images(capsys, tmp_path):
    with pytest.raises(SystemExit) as stop:
        load_tool('gallery').main(['--gallery', str(tmp_path / 'g.npz'), '--inference_dir', str(tmp_path), 'add',
                                   '--name', 'sedan'])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and 'add takes either --support DIR, or --name NAME with --images FILE' in err
    assert not (tmp_path / 'g.npz').exists()


def test_a_missing_or_foreign_gallery_file_is_one_clear_error(tmp_path):
    from deploy.gallery import Gallery
    with pytest.raises(FRNError, match='no gallery .*: add classes first'):
        Gallery.open(str(tmp_path / 'none.npz'), features=None)
    (tmp_path / 'photo.npz').write_bytes(b'\xff\xd8\xff\xe0 not an npz')
    with pytest.raises(FRNError, match='is not a gallery this code can read'):
        Gallery.open(str(tmp_path / 'photo.npz'), features=None)
