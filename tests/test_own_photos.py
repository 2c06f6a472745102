"""A newcomer's own photos through tools/infer.py: labelled query folders and their accuracy, a table that fits a
terminal with long class names, and a warning when the images are not what the model was trained on.

Real photos (Stanford Cars crops) on the committed Tiny-ImageNet Conv-4 at 84 px; real Omniglot characters on the
committed Omniglot Conv-4. Everything runs in this process.
"""
import io
import json
import shutil
import zipfile

import pytest

from conftest import REPO, load_tool, shared_path
from deploy.report import WIDTH, accuracy, prediction_lines
from utils import FRNError

PHOTO_MODEL = REPO / 'results' / 'tinyimagenet32_84' / 'Conv4_meta_frn_20way_5shot_metatrain' / 'best_model.pdparams'
OMNIGLOT_MODEL = REPO / 'results' / 'omniglot' / 'Conv4_meta_frn_60way_1shot_metatrain' / 'best_model.pdparams'
SHOTS, QUERIES = 3, 4


def infer(capsys, *args):
    """tools/infer.py in this process: (stdout, stderr)."""
    load_tool('infer').main([str(a) for a in args] + ['--threads', '2'])
    captured = capsys.readouterr()
    return captured.out, captured.err


@pytest.fixture(scope='module')
def cars_folders(cars_small, tmp_path_factory):
    """support/<class>/ (3 photos each) and query/<class>/ (4 others each) from the 5 test classes of the Cars
    subset, and the flat query folder of the same photos, named so that the name tells nothing."""
    root = tmp_path_factory.mktemp('own_photos')
    flat = root / 'flat'
    flat.mkdir()
    for folder in sorted((cars_small / 'test').iterdir()):
        name = folder.name.split('.', 1)[1]
        images = sorted(folder.iterdir())
        for kind, chosen in (('support', images[:SHOTS]), ('query', images[SHOTS:SHOTS + QUERIES])):
            (root / kind / name).mkdir(parents=True)
            for image in chosen:
                shutil.copy(image, root / kind / name / image.name)
                if kind == 'query':
                    shutil.copy(image, flat / f'{name}_{image.name}')
    return root


def test_labelled_query_folders_give_the_accuracy_of_the_predictions_on_real_photos(cars_folders, capsys):
    root = cars_folders
    common = ['--support', root / 'support', '--model_path', PHOTO_MODEL, '--json']
    labelled = json.loads(infer(capsys, *common, '--query', root / 'query')[0])
    flat = json.loads(infer(capsys, *common, '--query', root / 'flat')[0])
    classes = labelled['classes']
    rows = labelled['predictions']
    assert len(rows) == len(classes) * QUERIES and 'accuracy' not in flat
    # each query's true class is its folder, and its prediction is the one it gets unlabelled
    assert all(row['query'].split('/')[0] == row['truth'] for row in rows)
    unlabelled = {row['query']: row['prediction'] for row in flat['predictions']}
    assert [row['prediction'] for row in rows] == [unlabelled[row['query'].replace('/', '_')] for row in rows]
    right = [row['prediction'] == row['truth'] for row in rows]
    result = labelled['accuracy']
    assert (result['right'], result['total']) == (sum(right), len(rows))
    assert result['accuracy'] == pytest.approx(100 * sum(right) / len(rows), abs=0.01) and result['chance'] == 20.0
    for c in classes:
        mine = [r for r, row in zip(right, rows) if row['truth'] == c]
        assert result['per_class'][c] == {'right': sum(mine), 'total': QUERIES,
                                          'accuracy': pytest.approx(100 * sum(mine) / QUERIES, abs=0.01)}
    out, _ = infer(capsys, *common[:-1], '--query', root / 'query')
    assert f'accuracy: {sum(right)} of {len(rows)} queries right' in out


def test_a_query_folder_not_named_after_a_support_class_is_named_in_the_error(cars_folders, tmp_path):
    from deploy.predict import read_queries
    shutil.copytree(cars_folders / 'query', tmp_path / 'query')
    (tmp_path / 'query' / next(iter(sorted((tmp_path / 'query').iterdir()))).name).rename(tmp_path / 'query' / 'zebra')
    with pytest.raises(FRNError, match="zebra' is not a class of the support"):
        read_queries(str(tmp_path / 'query'), [p.name for p in (cars_folders / 'support').iterdir()])


def test_accuracy_counts_an_unknown_answer_as_wrong_and_reports_each_class():
    result = accuracy(['a', None, 'b', 'a'], ['a', 'a', 'b', 'b'], ['a', 'b', 'c'])
    assert (result['right'], result['total'], result['accuracy'], result['chance']) == (2, 4, 50.0, 33.33)
    assert result['per_class'] == {'a': {'right': 1, 'total': 2, 'accuracy': 50.0},
                                   'b': {'right': 1, 'total': 2, 'accuracy': 50.0}}


def test_the_table_stays_within_120_characters_with_ten_long_class_names():
    infer = load_tool('infer')
    classes = [f'{make}_Continental_Supersports_Convertible_{year}' for make, year in
               zip(['Bentley', 'Aston_Martin', 'Rolls_Royce', 'Mercedes_Benz', 'Lamborghini', 'Chevrolet', 'Hyundai',
                    'Volkswagen', 'Mitsubishi', 'Land_Rover'], range(2003, 2013))]
    names = [f'{c}/photo_taken_on_holiday_{i:02d}.jpg' for i, c in enumerate(classes)]
    probabilities = [[0.91 if j == i else 0.01 for j in range(10)] for i in range(10)]
    predictions = [classes[(i + 1) % 10] if i % 3 == 0 else classes[i] for i in range(10)]
    predictions[5] = None  # --reject's unknown
    result = {'classes': classes, 'support': {c: 3 for c in classes}, 'predictions': predictions,
              'probabilities': probabilities, 'truths': classes, 'accuracy': accuracy(predictions, classes, classes)}

    class Features:
        def describe(self):
            return 'checkpoints/cars/Conv4_meta_frn_20way_5shot_metatrain/best_model.pdparams (Conv4, 84 px, dygraph)'
    lines = infer.as_table(result, names, Features()).splitlines()
    assert max(len(line) for line in lines) <= WIDTH, max(lines, key=len)
    rows = [line for line in lines if line.startswith(('Bentley', 'Aston', 'Rolls', 'Merc', 'Lambo', 'Chev', 'Hyun',
                                                        'Volks', 'Mits', 'Land'))]
    assert sum(line.split()[3] == 'right' for line in rows[:10]) == 5  # a right/wrong column, one row per query
    assert 'accuracy: 5 of 10 queries right, 50.0% (10 classes, chance 10.0%)' in lines
    # few short names keep the full table of probabilities
    table = prediction_lines(['cat', 'dog'], ['a.jpg'], ['dog'], [[0.25, 0.75]])
    assert table[0].split() == ['query', 'prediction', 'cat', 'dog'] and table[1].split() == ['a.jpg', 'dog', '0.250',
                                                                                              '0.750']


@pytest.fixture(scope='module')
def characters(tmp_path_factory):
    """support/<character>/ (3 drawings each) and query/<character>/ (1 other) of 5 Omniglot characters."""
    root = tmp_path_factory.mktemp('characters')
    with zipfile.ZipFile(shared_path('data', 'omniglot', 'images_evaluation.zip')) as z:
        names = sorted(n for n in z.namelist() if n.endswith('.png') and '/Angelic/' in n)
        for character in sorted({n.split('/')[2] for n in names})[:5]:
            drawings = [n for n in names if n.split('/')[2] == character][:SHOTS + 1]
            for kind, chosen in (('support', drawings[:SHOTS]), ('query', drawings[SHOTS:])):
                (root / kind / character).mkdir(parents=True)
                for n in chosen:
                    (root / kind / character / n.split('/')[-1]).write_bytes(io.BytesIO(z.read(n)).getvalue())
    return root


@pytest.mark.parametrize('model, own, other, seen', [
    (OMNIGLOT_MODEL, 'characters', 'cars_folders', 'look like colour photos'),
    (PHOTO_MODEL, 'cars_folders', 'characters', 'look like greyscale line drawings or characters')],
    ids=['omniglot model', 'photo model'])
def test_a_model_warns_once_for_images_unlike_its_training_data_and_not_for_its_own(model, own, other, seen, request,
                                                                                     capsys):
    own, other = request.getfixturevalue(own), request.getfixturevalue(other)
    _, err = infer(capsys, '--support', own / 'support', '--query', own / 'query', '--model_path', model)
    assert 'warning' not in err
    _, err = infer(capsys, '--support', other / 'support', '--query', other / 'query', '--model_path', model)
    assert err.count('warning:') == 1 and len(err.strip().splitlines()) == 1 and seen in err, err
    assert ('trained on omniglot' if model == OMNIGLOT_MODEL else 'trained on mini_imagenet, colour photos') in err


def test_the_readme_own_photos_command_runs_as_pasted_and_reports_the_accuracy(cars_folders, capsys, monkeypatch):
    """The README's "Your own photos" command, with my_photos/ holding real car photos in class folders."""
    import shlex
    readme = (REPO / 'README.md').read_text(encoding='utf-8')
    section = readme.split('## Your own photos', 1)[1].split('\n## ', 1)[0]
    commands = [line for line in section.split('```bash\n', 1)[1].split('```')[0].splitlines() if line.strip()]
    assert len(commands) == 1 and commands[0].startswith('python tools/infer.py '), commands
    argv = shlex.split(commands[0])[2:]
    model = argv[argv.index('--model_path') + 1]
    assert (REPO / model).is_file() and (REPO / model).with_name('preprocess.json').is_file(), model
    monkeypatch.chdir(cars_folders.parent)  # my_photos/ beside the repository's paths, as a user would have it
    (cars_folders.parent / 'my_photos').symlink_to(cars_folders, target_is_directory=True)
    argv = [str(REPO / a) if a == model else a for a in argv]
    out, err = infer(capsys, *argv)
    assert 'accuracy:' in out and not err, (out, err)
    assert max(len(line) for line in out.splitlines()) <= WIDTH
