"""The install never puts the CPU wheel over an installed PaddlePaddle: tools/install.py, the README and the notebook."""
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO, load_tool, quoted_commands

GUARD = REPO / 'tools' / 'install.py'


def fake_site(root, name, version):
    """A site folder holding only the dist-info of `name` `version` (what pip leaves behind)."""
    info = root / f'{name.replace("-", "_")}-{version}.dist-info'
    info.mkdir(parents=True)
    (info / 'METADATA').write_text(f'Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n')
    return root


def dry_run(site):
    result = subprocess.run([sys.executable, str(GUARD), '--dry-run', '--site', str(site)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def pip_installs(output):
    return [line[2:].split() for line in output.splitlines() if line.startswith('$ ')]


def installs_paddle(command):
    return any(re.match(r"'?paddlepaddle", arg) for arg in command[command.index('install') + 1:])


def test_requirements_txt_leaves_paddle_out():
    lines = [line.strip() for line in (REPO / 'requirements.txt').read_text().splitlines()]
    assert not [line for line in lines if line.lower().startswith('paddle')]


def test_on_a_machine_without_paddle_the_guard_installs_the_cpu_wheel_then_the_requirements(tmp_path):
    (tmp_path / 'site').mkdir()
    commands = pip_installs(dry_run(tmp_path / 'site'))
    assert len(commands) == 2 and installs_paddle(commands[0]) and "'paddlepaddle>=2.6,<4'" in commands[0]
    assert commands[1][-2:] == ['-r', str(REPO / 'requirements.txt')]


@pytest.mark.parametrize('name, version, numpy_pin', [('paddlepaddle-gpu', '2.6.2', True),
                                                     ('paddlepaddle_gpu', '3.0.0', False),
                                                     ('paddlepaddle', '3.3.1', False)])
def test_an_installed_paddlepaddle_of_any_kind_is_left_alone(tmp_path, name, version, numpy_pin, capsys):
    load_tool('install').main(['--dry-run', '--site', str(fake_site(tmp_path / 'site', name, version))])
    out = capsys.readouterr().out
    commands = pip_installs(out)
    assert 'leaving PaddlePaddle as it is' in out and version in out
    assert len(commands) == 1 and not installs_paddle(commands[0])
    assert ("'numpy<2'" in commands[0]) == numpy_pin  # Paddle 2.x wheels need numpy 1


def test_notebook_install_cell_runs_the_guard_before_any_script_and_never_pip_installs_paddle():
    cells = [''.join(c['source']) for c in json.loads((REPO / 'frn_paddle.ipynb').read_text())['cells']
             if c['cell_type'] == 'code']
    install = [i for i, src in enumerate(cells) if "'tools', 'install.py'" in src]
    first_script = min(i for i, src in enumerate(cells) if re.search(r"^run\(", src, flags=re.M))
    assert len(install) == 1 and install[0] < first_script
    for src in cells:
        assert not re.search(r'pip\S* install', src) and 'requirements.txt' not in src, src


def test_readme_install_is_the_guard_and_the_gpu_path_installs_only_a_gpu_build_before_it():
    readme = (REPO / 'README.md').read_text()
    assert 'pip install -r requirements.txt' not in readme
    quick = readme.split('```bash', 1)[1].split('```', 1)[0]
    assert quick.splitlines()[1].startswith('python tools/install.py')
    section = readme.split('## Install', 1)[1].split('\n## ', 1)[0]
    commands = [line.strip() for block in re.findall(r'```bash\n(.*?)```', section, flags=re.S)
                for line in block.splitlines() if line.strip()]
    gpu = [i for i, c in enumerate(commands) if c.startswith('pip install paddlepaddle-gpu')]
    assert gpu and commands[gpu[0] + 1] == 'python tools/install.py'
    assert not [c for c in commands if re.match(r'pip install (paddlepaddle|-r)(?!-gpu)', c)]


def test_ci_installs_with_exactly_the_readme_command():
    ci = (REPO / '.ci' / 'run').read_text()
    assert re.search(r'^\s*python tools/install\.py\s*$', ci, flags=re.M)
    assert 'pip install --quiet -r requirements.txt' not in ci and 'pip install -r requirements.txt' not in ci



def test_the_readme_states_the_fast_tier_and_the_test_command_ci_runs():
    """The README's Tests section names the fast tier and the whole suite exactly as .ci/run runs it: CI's
    environment variables exported, then its pytest line."""
    section = (REPO / 'README.md').read_text().split('## Tests', 1)[1].split('\n## ', 1)[0]
    readme = [line.split('#')[0].strip() for _, line in quoted_commands('README.md') if line.split('#')[0].strip()
              and line.split('#')[0].strip() in section]
    assert 'python -m pytest -q -m "not slow"' in readme
    assert 'bash .ci/run' in readme
    ci = (REPO / '.ci' / 'run').read_text()
    ci_pytest = re.findall(r'^\s*(python -m pytest\b.*?)\s*$', ci, flags=re.M)
    assert len(ci_pytest) == 1, ci_pytest
    whole = [c for c in readme if c.endswith(ci_pytest[0])]
    assert whole, f'the README should quote CI\'s test command {ci_pytest[0]!r}: {readme}'
    for assignment in whole[0][:-len(ci_pytest[0])].split():
        assert re.search(rf'^export {re.escape(assignment)}$', ci, flags=re.M), assignment
    markers = (REPO / 'pytest.ini').read_text()
    assert re.search(r'^\s+slow:', markers, flags=re.M), 'the fast tier needs the slow marker'


@pytest.mark.slow
def test_ci_runs_every_test_and_a_missing_shared_folder_fails_it(tmp_path):
    """CI runs the whole suite with FRN_REQUIRE_SHARED=1, under which missing shared data fails instead of skipping."""
    ci = (REPO / '.ci' / 'run').read_text()
    assert re.search(r'^export FRN_REQUIRE_SHARED=1$', ci, flags=re.M)
    assert re.search(r'^\s*python -m pytest -q --durations=15$', ci, flags=re.M)  # no -m: the slow tests too
    test = 'tests/test_prepare_imagenet_inat.py::test_the_shipped_split_files_are_ravi_and_larochelles'
    (tmp_path / 'empty').mkdir()
    outcomes = {}
    for shared, require in (('nowhere', '0'), ('empty', '1'), ('nowhere', '1')):
        env = dict(os.environ, FRN_SHARED=str(tmp_path / shared), FRN_REQUIRE_SHARED=require)
        done = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', test], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=300)
        outcomes[shared, require] = (done.returncode, done.stdout + done.stderr)
    assert outcomes['nowhere', '0'][0] == 0 and '1 skipped' in outcomes['nowhere', '0'][1]
    assert outcomes['empty', '1'][0] == 1 and 'FRN_REQUIRE_SHARED is set' in outcomes['empty', '1'][1]
    assert outcomes['nowhere', '1'][0] == 4 and 'FRN_REQUIRE_SHARED is set' in outcomes['nowhere', '1'][1]
