"""The committed results: the Omniglot checkpoint still classifies, and the README and docs/results.md quote the
committed JSONs."""
import json
import re

import pytest

from conftest import REPO, shared_path

OMNIGLOT = REPO / 'results' / 'omniglot'
CHECKPOINT = OMNIGLOT / 'Conv4_meta_frn_60way_1shot_metatrain' / 'best_model.pdparams'


CARS = REPO / 'results' / 'cars'


def committed_results():
    return sorted(OMNIGLOT.glob('*w*s/*.json')) + [path for folder in ('tinyimagenet32', 'tinyimagenet32_84')
                                                   for path in sorted((REPO / 'results' / folder).glob('*w*s/*.json'))] \
        + sorted(CARS.glob('*/*w*s/*.json'))


def committed_comparisons():
    return sorted(CARS.glob('*/paired_*.json'))


def difference_cell(paired):
    return f'{paired["difference"]:+.2f} ± {paired["difference_ci95"]:.2f}'


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


def cell(result):
    return f'{result["acc"]:.2f} ± {result["ci95"]:.2f}'


def test_readme_results_table_has_a_row_per_committed_json_with_its_number_and_a_link_to_it():
    readme = (REPO / 'README.md').read_text(encoding='utf-8')
    results = committed_results()
    assert len(results) >= 6, 'the Omniglot and Tiny-ImageNet test JSONs should be committed'
    for path in results:
        r = json.loads(path.read_text())
        rel = path.relative_to(REPO).as_posix()
        rows = [line for line in readme.splitlines() if f']({rel})' in line and line.startswith('|')]
        assert len(rows) == 1, f'README results table should have one row linking {rel}: {rows}'
        assert f'| {cell(r)} |' in rows[0], f'README row for {rel} should say {cell(r)}: {rows[0]}'
        assert re.search(r'\b%d-way %d-shot\b' % (r['n_way'], r['n_shot']), rows[0]), rows[0]


def test_results_page_quotes_each_committed_json_where_it_links_it():
    page = (REPO / 'docs' / 'results.md').read_text(encoding='utf-8')
    for path in committed_results():
        rel = '../' + path.relative_to(REPO).as_posix()
        lines = [line for line in page.splitlines() if f']({rel})' in line]
        assert lines, f'docs/results.md does not link {rel}'
        r = json.loads(path.read_text())
        for line in lines:  # a table row, or a cell: the number stands just before the link
            assert f'{cell(r)} ([json]({rel}))' in line or f'| {cell(r)} |' in line, (rel, line)


def test_every_accuracy_with_an_interval_in_the_readme_and_results_page_is_a_committed_or_paper_number():
    """No number with an interval is quoted that is neither one of our JSONs nor a paper's, as docs/reproducing.md
    gives them."""
    ours = {cell(json.loads(p.read_text())) for p in committed_results()}
    ours |= {difference_cell(json.loads(p.read_text())).lstrip('+-') for p in committed_comparisons()}
    paper = set(re.findall(r'\d+\.\d\d ± \d\.\d\d', (REPO / 'docs' / 'reproducing.md').read_text(encoding='utf-8')))
    for doc in ('README.md', 'docs/results.md'):
        quoted = set(re.findall(r'\d+\.\d\d ± \d\.\d\d', (REPO / doc).read_text(encoding='utf-8')))
        assert quoted, doc
        assert quoted <= ours | paper, f'{doc} quotes numbers no committed file holds: {sorted(quoted - ours - paper)}'


def test_each_paired_comparison_is_recomputed_from_its_two_results_and_quoted_beside_its_link():
    """results/cars/*/paired_*.json are tools/compare_results.py's output for the two JSONs they name; the README
    and docs/results.md quote their differences."""
    from engine.compare import paired_comparison, read_result
    readme = (REPO / 'README.md').read_text(encoding='utf-8')
    page = (REPO / 'docs' / 'results.md').read_text(encoding='utf-8')
    found = committed_comparisons()
    assert len(found) == 4, found
    for path in found:
        paired = json.loads(path.read_text())
        again = paired_comparison(read_result(str(REPO / paired['a']['path'])), read_result(str(REPO / paired['b']['path'])))
        assert abs(again['difference'] - paired['difference']) < 1e-9
        assert abs(again['difference_ci95'] - paired['difference_ci95']) < 1e-9
        rel = path.relative_to(REPO).as_posix()
        row = [line for line in readme.splitlines() if f']({rel})' in line]
        assert len(row) == 1 and difference_cell(paired) in row[0], (rel, row)
        assert difference_cell(paired) in page, rel
