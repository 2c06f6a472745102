"""Every entry point (the three scripts and tools/): nothing of paddle imported before its process set-up, one line
for a wrong flag, the same flag names for the same things (old spellings still work, with a note), and the
backbones of network.BACKBONES."""
import subprocess
import sys

import pytest

from conftest import REPO, load_tool

SCRIPTS = ['pretrain.py', 'meta_train.py', 'test.py']
TOOLS = sorted(f'tools/{p.name}' for p in (REPO / 'tools').glob('*.py') if p.name != 'install.py')  # install: stdlib

IMPORT_EACH = '''
import importlib.util, sys
sys.path.insert(0, sys.argv[1])
for path in sys.argv[2:]:
    spec = importlib.util.spec_from_file_location(path.replace('/', '_')[:-3], f'{sys.argv[1]}/{path}')
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    if 'paddle' in sys.modules:
        sys.exit(f'importing {path} imported paddle')
'''


def test_no_entry_point_imports_paddle_before_its_process_set_up():
    """runtime/command.cli_main makes the process set-up first (runtime/process.py): an entry point that imported
    paddle at module level would run paddle's import before it."""
    result = subprocess.run([sys.executable, '-c', IMPORT_EACH, str(REPO), *SCRIPTS, *TOOLS], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def test_help_shows_no_warning_of_paddles_import():
    result = subprocess.run([sys.executable, str(REPO / 'test.py'), '--help'], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and '--model_path' in result.stdout
    assert 'Warning' not in result.stderr and 'ccache' not in result.stderr, result.stderr


@pytest.mark.parametrize('entry', SCRIPTS + TOOLS)
def test_an_unknown_flag_is_one_line_pointing_at_help(entry):
    result = subprocess.run([sys.executable, str(REPO / entry), '--no_such_flag'], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2 and result.stdout == ''
    line, = result.stderr.splitlines()
    assert line.startswith('error: ') and line.endswith('--help)'), result.stderr  # a missing or unknown flag


def test_old_spellings_work_with_a_one_line_note(tmp_path, capsys):
    (tmp_path / 'w.pdparams').write_bytes(b'')
    common = ['--support', str(tmp_path), '--query', str(tmp_path), '--model_path', str(tmp_path / 'w.pdparams')]
    for tool in ('infer', 'visualize'):
        extra = ['--out', str(tmp_path)] if tool == 'visualize' else []
        assert load_tool(tool).parse_args(common + extra + ['--use_gpu']).gpu is True
        assert capsys.readouterr().err == ('note: --use_gpu is now spelled --gpu; the old spelling still works in '
                                           'this release and will then be removed\n')
        assert load_tool(tool).parse_args(common + extra).gpu is False and capsys.readouterr().err == ''
    inverter = ['--model_path', str(tmp_path / 'w.pdparams'), '--data_path', str(tmp_path), '--out',
                str(tmp_path / 'out')]
    assert load_tool('train_inverter').parse_args(inverter + ['--epochs', '7']).epoch == 7
    assert 'note: --epochs is now spelled --epoch' in capsys.readouterr().err
    assert load_tool('train_inverter').parse_args(inverter).epoch == 3


def help_of(capsys, run):
    with pytest.raises(SystemExit):
        run(['--help'])
    return capsys.readouterr().out


def test_every_backbone_flag_offers_the_backbones_of_the_network_package(capsys):
    import importlib
    from network import BACKBONES
    choices = '--model {' + ','.join(BACKBONES) + '}'
    for script in SCRIPTS:
        assert choices in help_of(capsys, importlib.import_module(script[:-3]).parse_args), script
    for tool in ('infer', 'visualize', 'train_inverter'):
        assert choices in help_of(capsys, load_tool(tool).parse_args), tool
    for tool in ('export_model', 'convert_official_weights'):
        assert choices in help_of(capsys, load_tool(tool).main), tool
