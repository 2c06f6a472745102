"""The README and docs/: short enough to read, their links lead somewhere, and the commands they quote are real."""
import importlib
import re
import shlex

import pytest

from conftest import REPO, quoted_commands

DOCS = ['README.md'] + sorted(p.relative_to(REPO).as_posix() for p in (REPO / 'docs').glob('*.md'))
SEED_SCRIPTS = {'pretrain.py': 'pretrain', 'meta_train.py': 'meta_train', 'test.py': 'test'}
INPUT_FILES = ('--model_path', '--pretrain_path', '--inverter')
LIBRARY = [REPO / 'cli.py'] + [p for folder in ('runtime', 'data', 'engine', 'deploy')
                               for p in sorted((REPO / folder).glob('*.py'))]


def slug(heading):
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(' ', '-')


def anchors(path):
    text = re.sub(r'```.*?```', '', path.read_text(encoding='utf-8'), flags=re.S)
    return {slug(h) for h in re.findall(r'^#{1,6} (.+)$', text, flags=re.M)}


def commands(script_names):
    """(doc, words) of every quoted `python <script> ...` command of the docs, placeholders (`...`) excluded."""
    for doc, line in quoted_commands(*DOCS):
        words = shlex.split(line, comments=True)
        if len(words) > 1 and words[0] == 'python' and words[1] in script_names and '...' not in words:
            yield doc, words


def test_readme_is_short_and_has_no_long_lines():
    lines = (REPO / 'README.md').read_text(encoding='utf-8').splitlines()
    assert len(lines) <= 220, f'README.md has {len(lines)} lines; move detail into docs/'
    long = [(n, len(line)) for n, line in enumerate(lines, 1) if len(line) > 300]
    assert not long, f'README.md lines over 300 characters (line, length): {long}'


def test_every_relative_link_of_the_readme_and_docs_points_at_an_existing_file_and_heading():
    broken = []
    for doc in DOCS:
        path = REPO / doc
        text = re.sub(r'```.*?```', '', path.read_text(encoding='utf-8'), flags=re.S)
        for target in re.findall(r'\]\(([^)\s]+)\)', text):
            if re.match(r'[a-z]+:', target):
                continue
            file, _, anchor = target.partition('#')
            dest = (path.parent / file).resolve() if file else path
            if not dest.exists():
                broken.append(f'{doc}: {target} (no such file)')
            elif anchor and dest.suffix == '.md' and anchor not in anchors(dest):
                broken.append(f'{doc}: {target} (no such heading)')
    assert not broken, broken


def test_every_script_a_quoted_command_runs_exists():
    missing = []
    for doc, line in quoted_commands(*DOCS):
        words = shlex.split(line, comments=True)
        named = [w for w in words if re.fullmatch(r'(tools|scripts|benchmarks|test_tipc)/[\w/.-]+\.(py|sh|txt)', w)]
        if len(words) > 1 and words[0] == 'python' and words[1].endswith('.py'):
            named.append(words[1])
        missing += [f'{doc}: {w}' for w in named if not (REPO / w).is_file()]
    assert not missing, missing


def test_every_flag_of_a_quoted_tool_command_is_defined_by_the_tool():
    """A flag quoted for tools/X.py is one that tools/X.py, or the shared flag code it uses, defines."""
    library = ''.join(p.read_text(encoding='utf-8') for p in LIBRARY)
    unknown = []
    tools = {f'tools/{p.name}' for p in (REPO / 'tools').glob('*.py')}
    for doc, words in commands(tools):
        source = (REPO / words[1]).read_text(encoding='utf-8') + library
        for flag in (w.split('=')[0] for w in words[2:] if w.startswith('--')):
            if f"'{flag}'" not in source:
                unknown.append(f'{doc}: {words[1]} {flag}')
    assert not unknown, unknown


def test_every_quoted_training_and_test_command_parses_with_its_script(tiny_mini, tmp_path):
    """Each `python pretrain.py|meta_train.py|test.py ...` line of the docs, with its data folder and missing
    input checkpoints replaced by real ones, is accepted by the script's own parser."""
    placeholder = tmp_path / 'best_model.pdparams'
    placeholder.write_bytes(b'')
    quoted = list(commands(SEED_SCRIPTS))
    assert {words[1] for _, words in quoted} == set(SEED_SCRIPTS), 'the README quotes the three seed commands'
    for doc, words in quoted:
        argv = words[2:]
        for i, word in enumerate(argv[:-1]):
            if word == '--data_path':
                argv[i + 1] = str(tiny_mini)
            elif word in INPUT_FILES:
                argv[i + 1] = str(REPO / argv[i + 1]) if (REPO / argv[i + 1]).is_file() else str(placeholder)
        module = importlib.import_module(SEED_SCRIPTS[words[1]])
        try:
            module.parse_args(argv)
        except SystemExit as stop:  # argparse's error
            pytest.fail(f'{doc}: {" ".join(words)} does not parse (exit {stop.code})')


def test_the_readme_quotes_the_seed_commands_with_their_published_values(tiny_mini, tmp_path):
    """The three commands users paste from the project page, flag for flag."""
    placeholder = tmp_path / 'best_model.pdparams'
    placeholder.write_bytes(b'')
    seed = {}
    for doc, words in commands(SEED_SCRIPTS):
        if doc == 'README.md' and words[1] not in seed:
            seed[words[1]] = words[2:]
    data = seed['pretrain.py'].index('--data_path') + 1
    assert seed['pretrain.py'][data] == 'DATA'
    for argv in seed.values():
        argv[argv.index('--data_path') + 1] = str(tiny_mini)
    meta, model = seed['meta_train.py'], seed['test.py']
    assert meta[meta.index('--pretrain_path') + 1] == \
        './checkpoints/mini_imagenet/ResNet12_stl_frn_pretrain/best_model.pdparams'
    assert model[model.index('--model_path') + 1] == \
        './checkpoints/mini_imagenet/ResNet12_meta_frn_20way_5shot_metatrain/best_model.pdparams'
    meta[meta.index('--pretrain_path') + 1] = model[model.index('--model_path') + 1] = str(placeholder)
    import meta_train
    import pretrain
    import test as test_script
    args = pretrain.parse_args(seed['pretrain.py'])
    assert (args.method, args.lr, args.gamma, args.epoch, args.milestones, args.batch_size, args.val_n_episode,
            args.image_size, args.model, args.n_shot, args.n_query, args.gpu) == (
        'stl_frn', 0.1, 0.1, 350, [200, 300], 512, 600, 84, 'ResNet12', 1, 15, True)
    args = meta_train.parse_args(meta)
    assert (args.method, args.lr, args.gamma, args.epoch, args.train_n_episode, args.val_n_episode, args.milestones,
            args.train_n_way, args.val_n_way, args.n_shot, args.n_query, args.gpu) == (
        'meta_frn', 1e-3, 0.1, 150, 1000, 600, [70, 120], 20, 5, 5, 15, True)
    args = test_script.parse_args(model)
    assert (args.method, args.image_size, args.n_shot, args.test_n_way, args.n_query, args.test_task_nums,
            args.test_n_episode, args.gpu) == ('meta_frn', 84, 1, 5, 15, 1, 600, True)
