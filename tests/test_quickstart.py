"""scripts/quickstart.sh: its data lookup. (The full run takes about 6 minutes; scripts/quickstart.sh has its timing.)"""
import os
import subprocess

from conftest import REPO


def test_quickstart_without_data_says_how_to_get_it(tmp_path):
    env = dict(os.environ, FRN_SHARED=str(tmp_path / 'no_shared'))
    result = subprocess.run(['bash', str(REPO / 'scripts' / 'quickstart.sh'), str(tmp_path / 'empty')],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2
    assert 'no Omniglot data found' in result.stderr
    assert 'python tools/download_omniglot.py --dst datasets/omniglot' in result.stderr
    assert '== 1/3' not in result.stdout  # nothing started
