"""Inference-model export and few-shot prediction on folders of real photos (Tiny-ImageNet-32 subset).

The models are randomly initialised (a trained one would take too long to make here),
with random BatchNorm statistics and a non-default scale and r, so that an export that
dropped any of them would show. Anything that might crash the process (the
paddle.inference predictor) runs in a subprocess.
"""
import csv
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest
from PIL import Image

from conftest import REPO, jpeg_claiming, mounted_small_disk
from deploy.export import DygraphFeatures, InferenceFeatures, read_head
from methods.FRN import FRN
from deploy.predict import class_probabilities, head_inputs, load_images
from methods.ridge import neg_l2_dist

SIZE = 32
SCALE, R = 4.0, (0.2, 0.1)
SHOTS = (1, 2, 3, 2)  # support images of the four classes: unequal on purpose
FEATURE_TOLERANCE = 2e-5  # max |exported - dygraph| / max |dygraph|; measured 1e-6 to 3e-6 here
SCORE_TOLERANCE = 1e-5  # max |difference| of the per-class probabilities between the two paths


def tool(name):
    spec = importlib.util.spec_from_file_location(f'tool_{name}', REPO / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_tool(name, *args, check=True):
    result = subprocess.run([sys.executable, str(REPO / 'tools' / f'{name}.py'), *map(str, args)],
                            capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def make_checkpoint(backbone, path, seed=0):
    paddle.seed(seed)
    model = FRN(backbone=backbone, image_size=SIZE)
    rng = np.random.RandomState(seed)
    for name, value in model.state_dict().items():
        if name.endswith('_mean'):
            value.set_value(rng.normal(0, 0.2, value.shape).astype('float32'))
        elif name.endswith('_variance'):
            value.set_value(rng.uniform(0.5, 2.0, value.shape).astype('float32'))
    model.scale.set_value(paddle.to_tensor([SCALE]))
    model.r.set_value(paddle.to_tensor(R, dtype='float32'))
    paddle.save(model.state_dict(), str(path))
    return path


@pytest.fixture(scope='module')
def work(tiny_mini, tmp_path_factory):
    """Checkpoints, both exports, and a support/query folder pair from four real test classes.

    Queries are crops (rescaled) of the support images, named q00.png, ... so the name
    tells nothing; `truth` maps each to the class folder its source image is in.
    """
    root = tmp_path_factory.mktemp('infer')
    out = {'root': root, 'truth': {}}
    for backbone in ('ResNet12', 'Conv4'):
        out[backbone] = make_checkpoint(backbone, root / f'{backbone}.pdparams')
        out[backbone + '_export'] = run_tool('export_model', '--model', backbone, '--model_path', out[backbone],
                                             '--save_dir', root / f'export_{backbone}', '--image_size', SIZE,
                                             '--threads', '2').stdout
    with open(tiny_mini / 'test.csv') as f:
        rows = list(csv.reader(f))[1:]
    classes = sorted({label for _, label in rows})[:len(SHOTS)]
    (root / 'query').mkdir()
    for label, shots in zip(classes, SHOTS):
        (root / 'support' / label).mkdir(parents=True)
        for name in [n for n, c in rows if c == label][:shots]:
            shutil.copy(tiny_mini / 'images' / name, root / 'support' / label / name)
            query = f'q{len(out["truth"]):02d}.png'
            with Image.open(tiny_mini / 'images' / name) as img:
                img.convert('RGB').crop((2, 2, 30, 30)).resize((SIZE, SIZE), Image.BICUBIC).save(root / 'query' / query)
            out['truth'][query] = label
    out['classes'] = classes
    return out


@pytest.fixture(scope='module')
def predictions(work):
    """infer.py --json through the dygraph checkpoint and through the exported model (ResNet-12)."""
    root = work['root']
    common = ['--support', root / 'support', '--query', root / 'query', '--json', '--threads', '2']
    dygraph = run_tool('infer', *common, '--model_path', work['ResNet12'], '--image_size', SIZE)
    exported = run_tool('infer', *common, '--inference_dir', root / 'export_ResNet12')
    return json.loads(dygraph.stdout), json.loads(exported.stdout)


# ---- export ----

# paddle.jit.save writes the program as model.json on Paddle 3.x and as model.pdmodel on Paddle 2.x
PROGRAM_FILE = 'model.json' if int(paddle.__version__.split('.')[0]) >= 3 else 'model.pdmodel'


@pytest.mark.slow
def test_export_writes_the_inference_model_and_the_head_json(work):
    """The program file is this Paddle's own format: model.json on 3.x, model.pdmodel on 2.x."""
    for backbone, d in (('ResNet12', 640), ('Conv4', 64)):
        folder = work['root'] / f'export_{backbone}'
        assert {PROGRAM_FILE, 'model.pdiparams', 'frn_head.json'} <= {p.name for p in folder.iterdir()}
        head = read_head(str(folder))
        assert head['backbone'] == backbone and head['image_size'] == SIZE
        assert head['resolution'] == 4 and head['d'] == d  # 32 px -> 2 x 2 positions
        assert head['scale'] == SCALE and head['r'] == [float(np.float32(v)) for v in R]
        assert 'checked with paddle.inference on CPU with oneDNN' in work[backbone + '_export']


COMPARE = '''
import json, sys
sys.path.insert(0, sys.argv[1])
from runtime.device import set_threads
set_threads(2)
from deploy.export import DygraphFeatures, InferenceFeatures
from deploy.predict import load_images
import numpy as np
images = load_images(sys.argv[2:], {size})
out = {{}}
for backbone in ('ResNet12', 'Conv4'):
    ref = DygraphFeatures('{root}/' + backbone + '.pdparams', image_size={size})(images)
    exported = InferenceFeatures('{root}/export_' + backbone, threads=2)
    got = exported(images)
    out[backbone] = dict(backend=exported.backend, shape=list(got.shape), max_abs=float(np.abs(got - ref).max()),
                         max_ref=float(np.abs(ref).max()))
print(json.dumps(out))
'''


@pytest.mark.slow
def test_exported_model_gives_the_dygraph_feature_maps(work):
    """On the real photos: max |exported - dygraph| <= 2e-5 of the largest feature (measured 1e-6 to 3e-6)."""
    images = sorted(str(p) for p in (work['root'] / 'support').rglob('*.jpg'))
    code = COMPARE.format(size=SIZE, root=work['root'])
    result = subprocess.run([sys.executable, '-c', code, str(REPO), *images], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    for backbone, d in (('ResNet12', 640), ('Conv4', 64)):
        cmp = json.loads(result.stdout)[backbone]
        assert cmp['backend'] == 'paddle.inference on CPU with oneDNN'  # the pinned predictor, not the fallback
        assert cmp['shape'] == [len(images), 4, d]
        assert cmp['max_abs'] <= FEATURE_TOLERANCE * cmp['max_ref'], cmp


@pytest.mark.slow
def test_without_a_predictor_the_export_runs_through_jit_load(work, monkeypatch):
    def refuse(config):
        raise RuntimeError('no predictor today')
    monkeypatch.setattr(paddle.inference, 'create_predictor', refuse)
    messages = []
    exported = InferenceFeatures(str(work['root'] / 'export_Conv4'), log=messages.append)
    assert exported.backend.startswith('paddle.jit.load')
    assert len(messages) == 1 and 'no predictor today' in messages[0] and 'falling back to paddle.jit.load' in messages[0]
    images = load_images(sorted(str(p) for p in (work['root'] / 'query').iterdir()), SIZE)
    reference = DygraphFeatures(str(work['Conv4']), image_size=SIZE)(images)
    assert np.abs(exported(images) - reference).max() <= FEATURE_TOLERANCE * np.abs(reference).max()


# ---- prediction ----

@pytest.mark.slow
def test_infer_labels_every_query_with_the_class_of_its_source_image(work, predictions):
    """Each query is a crop of one support image; FRN must reconstruct it best from that image's class.

    A random backbone still maps a crop of an image close to the image itself, so this
    checks the plumbing end to end on real photos: folder -> class name, the support of
    each class (1 to 3 images), the softmax over classes, and the query -> row order.
    Swapped labels, a wrong softmax axis or mixed-up supports fail it.
    """
    dygraph, _ = predictions
    assert dygraph['classes'] == work['classes']
    assert dygraph['support'] == dict(zip(work['classes'], SHOTS))
    assert [p['query'] for p in dygraph['predictions']] == sorted(work['truth'])
    for p in dygraph['predictions']:
        scores = p['scores']
        assert p['prediction'] == work['truth'][p['query']], p
        assert max(scores, key=scores.get) == p['prediction']
        assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
def test_dygraph_and_exported_paths_give_the_same_predictions_and_scores(predictions):
    """Same class for every query; per-class probabilities within 1e-5."""
    dygraph, exported = predictions
    assert dygraph['backend'] == 'dygraph on cpu' and exported['backend'] == 'paddle.inference on CPU with oneDNN'
    assert [p['prediction'] for p in dygraph['predictions']] == [p['prediction'] for p in exported['predictions']]
    for a, b in zip(dygraph['predictions'], exported['predictions']):
        assert a['query'] == b['query']
        for cls in a['scores']:
            assert abs(a['scores'][cls] - b['scores'][cls]) <= SCORE_TOLERANCE, (a, b)


@pytest.fixture(scope='module')
def conv4(work):
    """A Conv-4 FRN, the support images of each class (1, 2, 3, 2) and the query images, as arrays."""
    features = DygraphFeatures(str(work['Conv4']), image_size=SIZE)
    support = [load_images(sorted(str(p) for p in (work['root'] / 'support' / c).iterdir()), SIZE)
               for c in work['classes']]
    queries = load_images(sorted(str(p) for p in (work['root'] / 'query').iterdir()), SIZE)
    return features, support, queries


def frn_episode_scores(model, support_images, query_images):
    """FRN's own get_neg_l2_dist for an episode of equal shots: [queries, way]."""
    way, shot = len(support_images), len(support_images[0])
    episode = paddle.to_tensor(np.concatenate(list(support_images) + [query_images]))
    with paddle.no_grad():
        # get_neg_l2_dist wants way * query_shot queries; the score of a query does not depend on the others
        return model.get_neg_l2_dist(episode, way, shot, len(query_images) // way).numpy()


@pytest.mark.slow
def test_scores_are_the_softmax_of_frns_episode_scores_when_shots_are_equal(conv4):
    """Two shots for each of three classes: probabilities = softmax(scale * FRN.get_neg_l2_dist), per query."""
    features, support, queries = conv4
    two_shot = [images[:2] for images in support if len(images) >= 2]  # 3 classes
    queries = queries[:len(queries) // len(two_shot) * len(two_shot)]
    expected = F.softmax(paddle.to_tensor(frn_episode_scores(features.model, two_shot, queries)) * features.scale,
                         axis=1).numpy()
    got = class_probabilities(features(queries), [features(images) for images in two_shot], features.alpha,
                              features.beta, features.scale)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.slow
def test_with_unequal_shots_each_class_is_scored_by_frn_with_its_own_support(conv4):
    """Shots 1, 2, 3, 2: class c's column is FRN's 1-way k_c-shot score (so lambda uses c's own kr),
    and the columns follow the order of the classes."""
    features, support, queries = conv4
    query_maps = features(queries)
    scores = neg_l2_dist(*head_inputs(query_maps, [features(images) for images in support], features.alpha,
                                      features.beta)).numpy()
    assert scores.shape == (len(queries), len(support))
    for c, images in enumerate(support):
        np.testing.assert_allclose(scores[:, c], frn_episode_scores(features.model, [images], queries)[:, 0],
                                   rtol=1e-5, atol=1e-7)
    reordered = neg_l2_dist(*head_inputs(query_maps, [features(images) for images in support[::-1]],
                                         features.alpha, features.beta)).numpy()
    np.testing.assert_allclose(reordered, scores[:, ::-1], rtol=1e-6)


@pytest.mark.slow
def test_table_output_has_a_row_per_query_with_its_prediction_and_scores(work, capsys):
    root = work['root']
    tool('infer').main(['--support', str(root / 'support'), '--query', str(root / 'query'), '--model_path',
                        str(work['ResNet12']), '--image_size', str(SIZE), '--threads', '2'])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f'model: {work["ResNet12"]} (ResNet12, 32 px, dygraph on cpu)')
    assert lines[1] == 'support: ' + ', '.join(f'{c} ({k})' for c, k in zip(work['classes'], SHOTS))
    header = lines.index(next(line for line in lines if line.startswith('query')))
    assert lines[header].split() == ['query', 'prediction'] + work['classes']
    rows = [line.split() for line in lines[header + 1:]]
    assert [r[0] for r in rows] == sorted(work['truth']) and all(len(r) == 2 + len(SHOTS) for r in rows)
    assert [r[1] for r in rows] == [work['truth'][r[0]] for r in rows]
    assert all(abs(sum(map(float, r[2:])) - 1) < 0.003 for r in rows)  # three decimals each


@pytest.mark.slow
@pytest.mark.skipif(paddle.device.is_compiled_with_cuda(), reason='this checks the CPU-only fallback')
def test_gpu_without_cuda_warns_once_and_runs_on_the_cpu(work, capsys):
    features = DygraphFeatures(str(work['Conv4']), image_size=SIZE, use_gpu=True)
    err = capsys.readouterr().err
    assert features.backend == 'dygraph on cpu' and err.count('warning: --gpu was given') == 1


# ---- errors users can cause: one line on stderr, exit code 2, before any work ----

def infer_error(capsys, *args):
    with pytest.raises(SystemExit) as stop:
        tool('infer').main([str(a) for a in args] + ['--threads', '2'])
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith('warning: ')]  # warnings may come first
    assert stop.value.code == 2 and len(lines) == 1 and lines[0].startswith('error: '), err
    return lines[0]


@pytest.fixture
def support_copy(work, tmp_path):
    shutil.copytree(work['root'] / 'support', tmp_path / 'support')
    return tmp_path / 'support'


@pytest.mark.slow
def test_empty_class_folder_is_named_in_the_error(work, support_copy, capsys):
    (support_copy / 'zebra').mkdir()
    err = infer_error(capsys, '--support', support_copy, '--query', work['root'] / 'query', '--model_path',
                      work['Conv4'])
    assert str(support_copy / 'zebra') in err and 'holds no images' in err


@pytest.mark.slow
def test_unreadable_image_is_named_in_the_error(work, support_copy, capsys):
    broken = support_copy / work['classes'][0] / 'broken.jpg'
    broken.write_bytes(b'this is not a JPEG')
    err = infer_error(capsys, '--support', support_copy, '--query', work['root'] / 'query', '--model_path',
                      work['Conv4'], '--image_size', SIZE)
    assert str(broken) in err and 'cannot read image' in err


@pytest.mark.slow
def test_fewer_than_two_classes_is_an_error(work, support_copy, capsys):
    for folder in work['classes'][1:]:
        shutil.rmtree(support_copy / folder)
    err = infer_error(capsys, '--support', support_copy, '--query', work['root'] / 'query', '--model_path',
                      work['Conv4'])
    assert 'at least 2 class subfolders' in err and work['classes'][0] in err


@pytest.mark.slow
def test_missing_query_path_is_an_error(work, capsys):
    err = infer_error(capsys, '--support', work['root'] / 'support', '--query', work['root'] / 'nowhere.jpg',
                      '--model_path', work['Conv4'])
    assert '--query' in err and 'does not exist' in err


@pytest.mark.slow
def test_checkpoint_of_another_backbone_is_an_error(work, capsys):
    err = infer_error(capsys, '--support', work['root'] / 'support', '--query', work['root'] / 'query',
                      '--model_path', work['ResNet12'], '--model', 'Conv4')
    assert 'does not match this model' in err and '--model' in err


@pytest.mark.slow
def test_exported_model_of_another_size_or_backbone_is_an_error(work, capsys):
    common = ['--support', work['root'] / 'support', '--query', work['root'] / 'query', '--inference_dir',
              work['root'] / 'export_ResNet12']
    err = infer_error(capsys, *common, '--image_size', 84)
    assert '--image_size 84 does not match' in err and 'takes 32 px images' in err
    err = infer_error(capsys, *common, '--model', 'Conv4')
    assert '--model Conv4 does not match' in err and 'is a ResNet12' in err


@pytest.mark.slow
def test_folder_that_is_not_an_export_is_an_error(work, capsys):
    err = infer_error(capsys, '--support', work['root'] / 'support', '--query', work['root'] / 'query',
                      '--inference_dir', work['root'] / 'support')
    assert 'has no frn_head.json' in err and 'tools/export_model.py' in err


@pytest.mark.slow
def test_head_json_of_another_model_is_an_error(work, tmp_path, capsys):
    folder = shutil.copytree(work['root'] / 'export_Conv4', tmp_path / 'export')
    head = json.loads((folder / 'frn_head.json').read_text())
    (folder / 'frn_head.json').write_text(json.dumps(dict(head, d=640)))
    err = infer_error(capsys, '--support', work['root'] / 'support', '--query', work['root'] / 'query',
                      '--inference_dir', folder)
    assert 'do not belong together' in err and ', 4, 64], but' in err and 'export the model again' in err


@pytest.mark.slow
def test_cli_error_is_one_line_without_a_traceback(work, tmp_path):
    (tmp_path / 'only').mkdir()
    shutil.copy(work['root'] / 'query' / 'q00.png', tmp_path / 'only')
    result = run_tool('infer', '--support', tmp_path, '--query', work['root'] / 'query', '--model_path',
                      work['Conv4'], check=False)
    assert result.returncode == 2 and 'Traceback' not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: --support {str(tmp_path)!r} must hold at least 2 class subfolders (found only 'only'); "
        f"put each class's example images in {tmp_path}/<class name>/"]


@pytest.mark.slow
def test_export_of_a_checkpoint_with_the_wrong_backbone_is_a_one_line_error(work, tmp_path):
    result = run_tool('export_model', '--model', 'Conv4', '--model_path', work['ResNet12'], '--save_dir',
                      tmp_path / 'export', '--image_size', SIZE, check=False)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert 'does not match this model' in result.stderr and 'Check --model' in result.stderr
    assert not (tmp_path / 'export' / 'frn_head.json').exists()


# ---- an export appears whole or not at all (issue 23) ----

def one_line_failure(result, *fragments):
    """Exit code 2 and one error line (after the checkpoint's notes, such as a missing preprocess.json, and Paddle's
    own glog lines, such as 2.6's 'I1206 19:27:55.08 ... New Executor is Running.')."""
    assert result.returncode == 2 and 'Traceback' not in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if not re.match(r'[IW]\d{4} ', line)]
    assert lines[-1].startswith('error: '), result.stderr
    assert all(line.startswith('warning: ') and 'falling back' not in line for line in lines[:-1]), result.stderr
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]
    return lines[-1]


def export_conv4(work, save_dir, *extra):
    return run_tool('export_model', '--model', 'Conv4', '--model_path', work['Conv4'], '--save_dir', save_dir,
                    '--image_size', SIZE, '--threads', '2', *extra, check=False)


def snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_a_first_export_onto_a_full_disk_is_one_line_and_leaves_nothing(work, small_disk):
    """300 KB cannot hold the 480 KB Conv-4 export: paddle.jit.save writes model.pdiparams short without an error,
    which reading the export back shows."""
    line = one_line_failure(export_conv4(work, small_disk / 'export'), str(small_disk / 'export'),
                            'nothing was changed')
    assert 'space' in line
    assert os.listdir(small_disk) == []


def test_a_re_export_onto_a_full_disk_leaves_the_earlier_export_whole(work, tmp_path):
    with mounted_small_disk(tmp_path / 'disk', '700k') as disk:  # room for one export, not two
        shutil.copytree(work['root'] / 'export_Conv4', disk / 'export')
        before = snapshot(disk / 'export')
        one_line_failure(export_conv4(work, disk / 'export'), str(disk / 'export'), 'nothing was changed')
        assert snapshot(disk / 'export') == before and os.listdir(disk) == ['export']


def test_a_re_export_replaces_every_file_of_the_earlier_one(work, tmp_path):
    folder = shutil.copytree(work['root'] / 'export_Conv4', tmp_path / 'export')
    (folder / 'model.pdmodel.old').write_bytes(b'a file of an earlier export')  # gone after the swap
    other = make_checkpoint('Conv4', tmp_path / 'other.pdparams', seed=1)
    result = run_tool('export_model', '--model', 'Conv4', '--model_path', other, '--save_dir', folder,
                      '--image_size', SIZE, '--threads', '2', '--no_check')
    assert 'exported Conv4' in result.stdout
    assert read_head(str(folder))['checkpoint'] == str(other) and not (folder / 'model.pdmodel.old').exists()
    assert sorted(os.listdir(tmp_path)) == ['export', 'other.pdparams']  # no temp folder, no lock file left


def test_a_save_dir_holding_other_files_is_refused_and_left_alone(work, tmp_path):
    (tmp_path / 'mine.txt').write_text('keep me')
    one_line_failure(export_conv4(work, tmp_path), '--save_dir', 'mine.txt', 'not part of an export')
    assert os.listdir(tmp_path) == ['mine.txt']


@pytest.mark.parametrize('damage', ['truncated params', 'garbage params', 'truncated program', 'garbage program'])
def test_a_damaged_export_is_one_line_naming_its_folder(work, tmp_path, damage):
    folder = shutil.copytree(work['root'] / 'export_Conv4', tmp_path / 'export')
    target = folder / ('model.pdiparams' if 'params' in damage else PROGRAM_FILE)
    data = target.read_bytes()
    target.write_bytes(data[:len(data) // 2] if 'truncated' in damage else
                       np.random.default_rng(0).integers(0, 256, len(data), dtype=np.uint8).tobytes())
    result = run_tool('infer', '--support', work['root'] / 'support', '--query', work['root'] / 'query',
                      '--inference_dir', folder, '--threads', '2', check=False)
    one_line_failure(result, str(folder), 'damaged or truncated', 'export the model again')


@pytest.mark.parametrize('edit, fragment', [
    ({'r': [0.2]}, 'has a bad "r": [0.2]'),
    ({'r': 'oops'}, 'has a bad "r": "oops"'),
    ({'scale': None}, 'has a bad "scale": null'),
    ({'image_size': 84}, 'says image_size 84, but its preprocessing record says 32 px'),
])
def test_a_head_file_with_a_bad_value_or_another_size_than_its_record_is_refused(work, tmp_path, capsys, edit,
                                                                                 fragment):
    folder = shutil.copytree(work['root'] / 'export_Conv4', tmp_path / 'export')
    head = json.loads((folder / 'frn_head.json').read_text())
    (folder / 'frn_head.json').write_text(json.dumps(dict(head, **edit)))
    err = infer_error(capsys, '--support', work['root'] / 'support', '--query', work['root'] / 'query',
                      '--inference_dir', folder)
    assert fragment in err and 'export the model again' in err


def test_a_protonet_checkpoint_is_refused_by_prediction_and_export(work, tmp_path, capsys):
    """ProtoNet has no r = [alpha, beta]; FRN's head must not run with the initial zeros in its place."""
    from methods.protonet import Proto
    path = tmp_path / 'proto.pdparams'
    paddle.save(Proto(backbone='Conv4', image_size=SIZE).state_dict(), str(path))
    err = infer_error(capsys, '--support', work['root'] / 'support', '--query', work['root'] / 'query',
                      '--model_path', path)
    assert 'is a ProtoNet checkpoint' in err and 'test.py --method meta_proto' in err
    one_line_failure(export_conv4(dict(work, Conv4=path), tmp_path / 'export'), 'is a ProtoNet checkpoint')
    assert not (tmp_path / 'export').exists()


def test_an_unknown_checkpoint_asks_for_the_model_flag_these_tools_have(work, tmp_path, capsys):
    path = tmp_path / 'odd.pdparams'
    paddle.save({'encoder.weight': paddle.zeros([2, 2])}, str(path))
    err = infer_error(capsys, '--support', work['root'] / 'support', '--query', work['root'] / 'query',
                      '--model_path', path)
    assert 'cannot tell the backbone' in err and 'Pass --model to force one' in err


def test_a_support_image_past_the_decompression_bomb_limit_is_named(work, support_copy, capsys):
    bomb = support_copy / work['classes'][0] / 'huge.jpg'
    bomb.write_bytes(jpeg_claiming(60000, 60000))
    err = infer_error(capsys, '--support', support_copy, '--query', work['root'] / 'query', '--model_path',
                      work['Conv4'], '--image_size', SIZE)
    assert str(bomb) in err and 'decompression-bomb' in err
