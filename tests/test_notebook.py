"""frn_paddle.ipynb executed headless (nbclient) with its small CPU setting, so it cannot silently rot."""
import json
import os
import re
import sys
import time

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import REPO, SHARED, shared_path

NOTEBOOK = REPO / 'frn_paddle.ipynb'


def test_notebook_is_committed_without_outputs_and_explains_every_step():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == 'code']
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    kinds = [c.cell_type for c in nb.cells]
    assert kinds[0] == 'markdown' and all(a != b for a, b in zip(kinds, kinds[1:]))  # markdown before each code cell
    assert "SETTING = 'small'" in code[0].source and "SETTING == 'full'" in code[0].source


@pytest.mark.slow
def test_notebook_runs_headless_and_reports_test_accuracies_and_a_prediction(tmp_path, monkeypatch):
    shared_path('data', 'tinyimagenet32_miniformat.tar.gz')
    work = tmp_path / 'work'
    monkeypatch.setenv('FRN_NOTEBOOK_SETTING', 'small')
    monkeypatch.setenv('FRN_NOTEBOOK_WORK', str(work))
    monkeypatch.setenv('FRN_SHARED', str(SHARED))
    monkeypatch.setenv('FRN_NOTEBOOK_INSTALL', 'dry-run')  # the install cell runs the guard, pip does not run
    # the kernelspec runs `python`: make it this interpreter, which has ipykernel
    monkeypatch.setenv('PATH', os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', ''))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    start = time.time()
    NotebookClient(nb, timeout=600, kernel_name='python3', resources={'metadata': {'path': str(REPO)}}).execute()
    print(f'notebook ran in {time.time() - start:.1f} s')
    text = ''.join(o.get('text', '') for c in nb.cells if c.cell_type == 'code' for o in c.outputs)

    for shot in (1, 5):
        result = json.loads((work / 'results' / f'5w{shot}s' / 'mini_imagenet_Conv4_meta_frn.json').read_text())
        assert result['n_shot'] == shot and result['test_n_episode'] == 10 and 0 <= result['acc'] <= 100
        assert f'5-way {shot}-shot: {result["acc"]:.2f}% +- {result["ci95"]:.2f}%' in text
    images = [o for c in nb.cells if c.cell_type == 'code' for o in c.outputs if 'image/png' in o.get('data', {})]
    assert len(images) == 2  # the curves of pretraining and meta-training

    classes = sorted(os.listdir(work / 'my_images' / 'support'))
    header = re.search(r'^query +prediction +(.+)$', text, flags=re.M)
    assert header and header[1].split() == classes
    rows = re.findall(r'^(n\d{8}_\d\.jpg) +(\S+)((?: +\d\.\d{3}){5})$', text, flags=re.M)
    assert len(rows) == 15 and all(pred in classes for _, pred, _ in rows)
    assert 'checked with paddle.inference on CPU with oneDNN' in text
    assert 'leaving PaddlePaddle as it is' in text  # the install cell saw this Paddle and kept it
