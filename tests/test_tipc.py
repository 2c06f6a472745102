"""The TIPC chain of the Conv-4 config, as a reviewer runs it: prepare.sh, then test_train_inference_python.sh.

It runs in a copy of the repository's scripts so that test_tipc/output and test_tipc/data of the
checkout are left alone; `python` is this interpreter.
"""
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, SHARED, shared_path
from data import preprocess
from engine.metrics import METRICS_FILE, read_metrics

CONFIG = 'test_tipc/configs/FRN_Conv4/train_infer_python.txt'
STEPS = ('pretrain', 'meta_train', 'eval', 'export', 'infer_inference', 'infer_dygraph')
BATCH_LINE = re.compile(r'Epoch 0 \| Batch \d+/\d+ \| Loss \d+\.\d{6} \| avg_reader_cost: \d+\.\d{5} sec '
                        r'\| avg_batch_cost: \d+\.\d{5} sec \| avg_ips: \d+\.\d{2} images/sec')


@pytest.mark.slow
def test_conv4_lite_chain_trains_exports_and_infers_with_a_status_line_per_step(tmp_path):
    shared_path('data', 'tinyimagenet32_miniformat.tar.gz')
    repo = tmp_path / 'repo'
    shutil.copytree(REPO, repo, ignore=shutil.ignore_patterns('.git', 'results', 'test_tipc', '__pycache__',
                                                              'checkpoints', 'benchmarks', 'docs'))
    shutil.copytree(REPO / 'test_tipc', repo / 'test_tipc', ignore=shutil.ignore_patterns('output', 'data'))
    env = dict(os.environ, FRN_SHARED=str(SHARED),
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', ''))
    prepare = subprocess.run(['bash', 'test_tipc/prepare.sh', CONFIG, 'lite_train_lite_infer'], cwd=repo, env=env,
                             capture_output=True, text=True, timeout=300)
    assert prepare.returncode == 0, prepare.stderr
    chain = subprocess.run(['bash', 'test_tipc/test_train_inference_python.sh', CONFIG, 'lite_train_lite_infer'],
                           cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    out = chain.stdout
    assert chain.returncode == 0, out + chain.stderr
    status = [line for line in out.splitlines() if 'Run successfully' in line or 'Run failed' in line]
    assert len(status) == len(STEPS) and all('Run successfully with command - FRN_Conv4 - ' in s for s in status)
    for name, line in zip(STEPS, status):
        assert line.rstrip().endswith(f'lite_train_lite_infer/{name}.log \033[0m'), line
    results = (repo / 'test_tipc/output/FRN_Conv4/lite_train_lite_infer/results_python.log').read_text()
    assert results.count('Run successfully') == len(STEPS)

    runs = repo / 'test_tipc/output/FRN_Conv4/checkpoints/mini_imagenet'
    for run in ('Conv4_stl_frn_pretrain', 'Conv4_meta_frn_5way_1shot_metatrain'):
        log = (runs / run / 'output.log').read_text()
        assert BATCH_LINE.search(log), log  # the seed's line, then the TIPC timings
        assert read_metrics(runs / run / METRICS_FILE)[0]['batch_loss']  # and the curves still read it
        assert preprocess.read_sidecar(runs / run / 'best_model.pdparams') == preprocess.record_for('mini_imagenet', 32)
    head = (repo / 'test_tipc/output/FRN_Conv4/inference/frn_head.json').read_text()
    assert '"colour": "rgb"' in head and '"image_size": 32' in head
    infer = (repo / 'test_tipc/output/FRN_Conv4/lite_train_lite_infer/infer_inference.log').read_text()
    assert '"backend": "paddle.inference on CPU with oneDNN"' in infer and infer.count('"prediction"') == 3
