"""The committed results: the Omniglot checkpoint still classifies, and the README quotes the committed JSONs."""
import json
import re

import pytest

from conftest import REPO, shared_path

OMNIGLOT = REPO / 'results' / 'omniglot'
CHECKPOINT = OMNIGLOT / 'Conv4_meta_frn_60way_1shot_metatrain' / 'best_model.pdparams'


def committed_results():
    return sorted(OMNIGLOT.glob('*w*s/*.json')) + [path for folder in ('tinyimagenet32', 'tinyimagenet32_84')
                                                   for path in sorted((REPO / 'results' / folder).glob('*w*s/*.json'))]


@pytest.mark.slow
def test_committed_omniglot_checkpoint_is_far_above_chance_on_seeded_test_episodes(tmp_path):
    import test as test_script
    data = shared_path('data', 'omniglot')
    test_script.main(['--dataset', 'omniglot', '--omniglot_split', 'vinyals', '--data_path', str(data),
                      '--model', 'Conv4', '--image_size', '42', '--model_path', str(CHECKPOINT),
                      '--test_n_way', '5', '--n_shot', '1', '--n_query', '5', '--test_task_nums', '1',
                      '--test_n_episode', '20', '--seed', '3', '--results_dir', str(tmp_path)])
    result = json.loads((tmp_path / '5w1s' / 'omniglot_Conv4_meta_frn.json').read_text())
    assert result['test_n_episode'] == 20
    assert result['acc'] > 90.0, f'5-way 1-shot accuracy {result["acc"]:.2f}% (chance is 20%)'


def test_readme_results_table_quotes_the_committed_json_files():
    readme = (REPO / 'README.md').read_text()
    results = committed_results()
    assert len(results) >= 6, 'the Omniglot and Tiny-ImageNet test JSONs should be committed'
    for path in results:
        r = json.loads(path.read_text())
        cell = f'{r["acc"]:.2f} ± {r["ci95"]:.2f}'
        rel = path.relative_to(REPO).as_posix()
        rows = [line for line in readme.splitlines() if rel in line]
        assert rows, f'README results table has no row citing {rel}'
        assert any(cell in row for row in rows), f'README row for {rel} should say {cell}: {rows}'
        assert re.search(r'\b%d-way %d-shot\b' % (r['n_way'], r['n_shot']), rows[0]), rows[0]
