"""scripts/official/: every recipe runs what the official FRN code's train.sh runs, flag for flag.

The official experiments are transcribed below, as data, from Tsingularity/FRN at commit 64e43f3: the flags of each
experiments/<dataset>/<method>/<backbone>/train.sh, what its train.py trains (folder, loader, model, starting
weights), the defaults of trainers/trainer.py they rely on, and the pre-resize type of each dataset's val_pre/ and
test_pre/ (data/init_*.py). Our expected arguments are derived from them by the documented mapping; each recipe runs
with FRN_DRY_RUN=1, and every command it prints is parsed by the script's own parse_args and compared, value by
value, with a parse that holds only the expected flags.
"""
import os
import shlex
import subprocess

import pytest

from conftest import REPO

OFFICIAL_COMMIT = '64e43f3'  # Tsingularity/FRN

# trainers/trainer.py: the defaults of train_parser() that the train.sh files leave as they are
TRAINER_DEFAULTS = dict(gamma=0.1, val_epoch=20, nesterov=False, batch_size=None, decay_epoch=None, stage=None,
                        pre=False, no_val=False, resnet=False, train_way=None, test_way=5, train_query_shot=15,
                        test_query_shot=16, test_transform_type=None, val_trial=1000)
FINAL_TEST_EPISODES = 10000  # Train_Manager.evaluate: meta_test(..., trial=10000) for each --test_shot

# data/init_*.py: get_pre_folder(transform_type) of the datasets that use --pre (0: Resize(92), 1: Resize([92, 92]))
PRE_TYPE = {'CUB_fewshot_cropped': 1, 'CUB_fewshot_raw': 0, 'Aircraft_fewshot': 1, 'mini-ImageNet': 0,
            'tiered-ImageNet_DeepEMD': 0}

# every experiments/*/*/*/train.sh: its flags (--gpu 0 left out)
SGD = dict(opt='sgd', lr=1e-1, gamma=1e-1, epoch=400, val_epoch=20, weight_decay=5e-4, nesterov=True,
           train_transform_type=0, pre=True)
ADAM = dict(opt='adam', lr=1e-3, epoch=20, stage=5, val_epoch=2, weight_decay=5e-4, train_transform_type=1,
            test_transform_type=2, no_val=True)
OFFICIAL = {
    'Aircraft_fewshot/FRN/Conv-4': dict(SGD, stage=3, train_way=20, train_shot=5, test_shot=[1, 5]),
    'Aircraft_fewshot/FRN/ResNet-12': dict(SGD, stage=3, train_way=10, train_shot=5, test_shot=[1, 5], resnet=True),
    'Aircraft_fewshot/Proto/Conv-4_1-shot': dict(SGD, stage=3, train_way=30, train_shot=1, test_shot=[1]),
    'Aircraft_fewshot/Proto/Conv-4_5-shot': dict(SGD, stage=3, train_way=20, train_shot=5, test_shot=[5]),
    'Aircraft_fewshot/Proto/ResNet-12_1-shot': dict(SGD, stage=3, train_way=15, train_shot=1, test_shot=[1],
                                                    resnet=True),
    'Aircraft_fewshot/Proto/ResNet-12_5-shot': dict(SGD, stage=3, train_way=10, train_shot=5, test_shot=[5],
                                                    resnet=True),
    'CUB_fewshot_cropped/FRN/Conv-4': dict(SGD, stage=2, train_way=20, train_shot=5, test_shot=[1, 5]),
    'CUB_fewshot_cropped/FRN/ResNet-12': dict(SGD, stage=3, train_way=10, train_shot=5, test_shot=[1, 5],
                                              resnet=True),
    'CUB_fewshot_cropped/Proto/Conv-4_1-shot': dict(SGD, stage=2, train_way=30, train_shot=1, test_shot=[1]),
    'CUB_fewshot_cropped/Proto/Conv-4_5-shot': dict(SGD, stage=2, train_way=20, train_shot=5, test_shot=[5]),
    'CUB_fewshot_cropped/Proto/ResNet-12_1-shot': dict(SGD, stage=3, train_way=15, train_shot=1, test_shot=[1],
                                                       resnet=True),
    'CUB_fewshot_cropped/Proto/ResNet-12_5-shot': dict(SGD, stage=3, train_way=10, train_shot=5, test_shot=[5],
                                                       resnet=True),
    'CUB_fewshot_raw/FRN/ResNet-12': dict(SGD, stage=3, train_way=10, train_shot=5, test_shot=[1, 5], resnet=True),
    'CUB_fewshot_raw/Proto/ResNet-12_1-shot': dict(SGD, stage=3, train_way=15, train_shot=1, test_shot=[1],
                                                   resnet=True),
    'CUB_fewshot_raw/Proto/ResNet-12_5-shot': dict(SGD, stage=3, train_way=10, train_shot=5, test_shot=[5],
                                                   resnet=True),
    'meta-iNat/FRN/Conv-4': dict(ADAM, gamma=.5, train_way=20, train_shot=5, test_shot=[1, 5]),
    'meta-iNat/Proto/Conv-4_1-shot': dict(ADAM, gamma=.5, nesterov=True, train_way=30, train_shot=1, test_shot=[1]),
    'meta-iNat/Proto/Conv-4_5-shot': dict(ADAM, gamma=5e-1, nesterov=True, train_way=20, train_shot=5,
                                          test_shot=[5]),
    'tiered-meta-iNat/FRN/Conv-4': dict(ADAM, gamma=.5, train_way=20, train_shot=5, test_shot=[1, 5]),
    'tiered-meta-iNat/Proto/Conv-4_1-shot': dict(ADAM, gamma=.5, nesterov=True, train_way=30, train_shot=1,
                                                 test_shot=[1]),
    'tiered-meta-iNat/Proto/Conv-4_5-shot': dict(ADAM, gamma=5e-1, nesterov=True, train_way=20, train_shot=5,
                                                 test_shot=[5]),
    'mini-ImageNet/FRN/ResNet-12_pretrain': dict(
        opt='sgd', lr=1e-1, gamma=1e-1, epoch=350, decay_epoch=[200, 300], batch_size=128, val_epoch=25,
        weight_decay=5e-4, nesterov=True, train_transform_type=0, resnet=True, train_shot=1, test_shot=[1, 5],
        pre=True),
    'mini-ImageNet/FRN/ResNet-12_finetune': dict(
        opt='sgd', lr=1e-3, gamma=1e-1, epoch=150, decay_epoch=[70, 120], val_epoch=5, weight_decay=5e-4,
        nesterov=True, train_transform_type=0, resnet=True, train_shot=5, train_way=20, test_shot=[1, 5], pre=True),
    'tiered-ImageNet/FRN/ResNet-12_pretrain': dict(
        opt='sgd', lr=1e-1, gamma=1e-1, epoch=30, stage=3, batch_size=128, val_epoch=5, weight_decay=5e-4,
        nesterov=True, train_transform_type=1, test_transform_type=2, resnet=True, train_shot=1, test_shot=[1, 5]),
    'tiered-ImageNet/FRN/ResNet-12_finetune': dict(
        opt='sgd', lr=1e-3, gamma=1e-1, epoch=60, decay_epoch=[30, 50], val_epoch=5, weight_decay=5e-4,
        nesterov=True, train_transform_type=1, test_transform_type=2, resnet=True, train_shot=5, train_way=20,
        test_shot=[1, 5]),
    'tiered-ImageNet_DeepEMD/FRN/ResNet-12_pretrain': dict(
        opt='sgd', lr=1e-1, gamma=1e-1, epoch=30, stage=3, batch_size=128, val_epoch=5, weight_decay=5e-4,
        nesterov=True, train_transform_type=0, resnet=True, train_shot=1, test_shot=[1, 5], pre=True),
    'tiered-ImageNet_DeepEMD/FRN/ResNet-12_finetune': dict(
        opt='sgd', lr=1e-3, gamma=1e-1, epoch=70, decay_epoch=[40, 60], val_epoch=5, weight_decay=5e-4,
        nesterov=True, train_transform_type=0, resnet=True, train_shot=5, train_way=20, test_shot=[1, 5], pre=True),
}

# each train.py: the dataset folder it joins to data_path, and what it trains. Episodic ones build
# dataloaders.meta_train_dataloader (one pass over the images per epoch) and FRN or Proto; the *_pretrain ones
# build normal_train_dataloader and FRN(is_pretraining=True) with one class matrix per training class; the
# *_finetune ones start from the pretrained model (tiered-ImageNet's train.py points at the released pretrained
# weights, with its own pretraining's output in the comment beside it; the recipe uses its own pretraining, and
# FRN_STAGES="metatrain test" ... --pretrain_path W starts from converted released weights instead).
FOLDER = {'meta-iNat': 'meta_iNat', 'tiered-meta-iNat': 'tiered_meta_iNat'}  # others: the experiment folder's name
NUM_CLASSES = {'mini-ImageNet': 64, 'tiered-ImageNet': 351, 'tiered-ImageNet_DeepEMD': 351}  # training classes

# the mapping onto this code
OUR_DATASET = {'CUB_fewshot_cropped': 'cub', 'CUB_fewshot_raw': 'cub', 'Aircraft_fewshot': 'aircraft',
               'meta_iNat': 'meta_inat', 'tiered_meta_iNat': 'tiered_meta_inat', 'mini-ImageNet': 'mini_imagenet',
               'tiered-ImageNet': 'tiered_imagenet', 'tiered-ImageNet_DeepEMD': 'tiered_imagenet'}
RECIPE_FOLDER = {'CUB_fewshot_cropped': 'cub_cropped', 'CUB_fewshot_raw': 'cub_raw', 'Aircraft_fewshot': 'aircraft',
                 'meta-iNat': 'meta_inat', 'tiered-meta-iNat': 'tiered_meta_inat', 'mini-ImageNet': 'mini_imagenet',
                 'tiered-ImageNet': 'tiered_imagenet', 'tiered-ImageNet_DeepEMD': 'tiered_imagenet_deepemd'}
EVAL_RESIZE = {0: 'shorter', 1: 'square', 2: 'none'}  # transform_manager.get_transform's eval types


def official(key):
    return {**TRAINER_DEFAULTS, **OFFICIAL[key]}


def kind(key):
    """'pretrain', 'finetune' or 'scratch' (episodic training from a random initialisation)."""
    backbone = key.split('/')[2]
    return backbone.rsplit('_', 1)[1] if backbone.endswith(('_pretrain', '_finetune')) else 'scratch'


def recipe_of(key):
    """(recipe file, its training stage) that stands for this official experiment."""
    experiment, method, backbone = key.split('/')
    name = {'FRN': 'frn', 'Proto': 'proto'}[method] + '_' + backbone.split('_')[0].replace('-', '').lower()
    if '-shot' in backbone:
        name += '_' + backbone.split('_')[1].replace('-', '')
    stage = 'pretrain' if kind(key) == 'pretrain' else 'metatrain'
    return f'scripts/official/{RECIPE_FOLDER[experiment]}/{name}.sh', stage


def expected_training(key):
    """Our training flags for an official experiment, by the mapping of docs/reproducing.md, 'What the recipes run'."""
    o, folder = official(key), FOLDER.get(key.split('/')[0], key.split('/')[0])
    assert o['opt'] == 'adam' or o['nesterov']  # our SGD is always Nesterov; torch's Adam ignores --nesterov
    if o['decay_epoch']:  # MultiStepLR
        epoch, milestones = o['epoch'], o['decay_epoch']
    else:  # StepLR(step_size=epoch) for epoch * stage epochs
        epoch, milestones = o['epoch'] * o['stage'], [o['epoch'] * k for k in range(1, o['stage'])]
    resize = EVAL_RESIZE[PRE_TYPE[folder] if o['pre'] else o['test_transform_type']]
    out = dict(dataset=OUR_DATASET[folder], model='ResNet12' if o['resnet'] else 'Conv4', image_size=84,
               train_transform_type=o['train_transform_type'], eval_resize=resize, opt=o['opt'], lr=o['lr'],
               gamma=o['gamma'], wd=o['weight_decay'], epoch=epoch, milestones=milestones,
               val='last' if o['no_val'] else 'meta', val_n_way=o['test_way'], val_n_query=o['test_query_shot'],
               val_n_episode=o['val_trial'], n_shot=o['train_shot'])
    if not o['no_val']:
        out['val_freq'] = o['val_epoch']
    if kind(key) == 'pretrain':
        out.update(method='stl_frn', batch_size=o['batch_size'], num_classes=NUM_CLASSES[folder])
    else:
        out.update(method='meta_frn' if key.split('/')[1] == 'FRN' else 'meta_proto', episodes='pass',
                   train_n_way=o['train_way'], n_query=o['train_query_shot'])
    return out


def expected_tests(key):
    """test.py's flags for the official final test of an experiment: one command per --test_shot."""
    train = expected_training(key)
    return [dict(dataset=train['dataset'], model=train['model'], image_size=84, method=train['method'],
                 train_transform_type=train['train_transform_type'], eval_resize=train['eval_resize'],
                 test_n_way=official(key)['test_way'], n_shot=shot, n_query=official(key)['test_query_shot'],
                 test_task_nums=1, test_n_episode=FINAL_TEST_EPISODES) for shot in official(key)['test_shot']]


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """A dataset folder that passes check_common: train/, val/ and test/ with a class folder each."""
    root = tmp_path_factory.mktemp('official') / 'data'
    for split in ('train', 'val', 'test'):
        (root / split / 'c0').mkdir(parents=True)
    return root.resolve()


def dry_run(recipe, data, *extra, stages=None, **procs):
    env = dict(os.environ, FRN_DRY_RUN='1')
    env.pop('FRN_STAGES', None)
    env.pop('FRN_PROCS', None)
    if stages is not None:
        env['FRN_STAGES'] = stages
    env.update(procs)
    return subprocess.run(['bash', str(REPO / recipe), str(data), *extra], env=env, capture_output=True, text=True,
                          timeout=60)


def planned(recipe, data, *extra, stages=None):
    """The dry run's commands: [(the comment line before it, argv without 'python')], after its `cd` to the checkout."""
    result = dry_run(recipe, data, *extra, stages=stages)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert shlex.split(lines[0]) == ['cd', str(REPO)]
    commands = []
    for comment, command in zip(lines[1::2], lines[2::2]):
        assert comment.startswith('# ') and command.startswith('python '), (comment, command)
        commands.append((comment, shlex.split(command)[1:]))
    assert len(lines) == 1 + 2 * len(commands)
    return commands


def parse(words, placeholder):
    """The script's parse_args on a printed command, with each .pdparams path swapped for an existing file."""
    import importlib
    module = importlib.import_module(words[0][:-3])
    return module.parse_args([str(placeholder) if w.endswith('.pdparams') else w for w in words[1:]])


def flag(words, name):
    return words[words.index(name) + 1]


def reference(script, expected, data, placeholder):
    """What the script's parse_args makes of exactly the expected flags: every other value at its default."""
    words = [script, '--data_path', str(data)]
    for name, value in expected.items():
        words += [f'--{name}', *map(str, value if isinstance(value, list) else [value])]
    return vars(parse(words + (['--model_path', 'w.pdparams'] if script == 'test.py' else []), placeholder))


@pytest.fixture(scope='module')
def plans(data):
    """Each recipe's dry run, once."""
    recipes = sorted({recipe_of(key)[0] for key in OFFICIAL})
    return {recipe: planned(recipe, data) for recipe in recipes}


def test_every_official_experiment_has_a_recipe_and_every_recipe_an_experiment():
    assert len(OFFICIAL) == 27  # 22 runs from scratch, and pretrain + finetune for the 3 ImageNet variants
    on_disk = {str(p.relative_to(REPO)) for p in (REPO / 'scripts' / 'official').glob('*/*.sh')}
    assert on_disk == {recipe_of(key)[0] for key in OFFICIAL}


@pytest.mark.parametrize('key', sorted(OFFICIAL))
def test_recipe_trains_and_tests_as_the_official_experiment(key, plans, data, tmp_path):
    import cli
    placeholder = tmp_path / 'w.pdparams'
    placeholder.write_bytes(b'')
    recipe, stage = recipe_of(key)
    commands = plans[recipe]
    script = 'pretrain.py' if stage == 'pretrain' else 'meta_train.py'
    at = next(i for i, (_, words) in enumerate(commands) if words[0] == script)
    comment, words = commands[at]
    checkpoints = f'./checkpoints/official/{RECIPE_FOLDER[key.split("/")[0]]}'
    expected = dict(expected_training(key), checkpoint_dir=checkpoints)
    if kind(key) == 'finetune':
        expected['pretrain_path'] = 'w.pdparams'
    args = parse(words, placeholder)
    assert vars(args) == reference(script, expected, data, placeholder)
    # ours validates after epochs N, 2N, ... and the last; the official code after N, 2N, ...: the same epochs
    assert args.val == 'last' or args.epoch % args.val_freq == 0
    run_dir = cli.training_config(args).run_dir()
    assert comment == f'# {stage}: run folder {run_dir}'
    if kind(key) == 'finetune':  # from this recipe's own pretraining, which runs first
        assert commands[0][1][0] == 'pretrain.py'
        pretrain_dir = cli.training_config(parse(commands[0][1], placeholder)).run_dir()
        assert flag(words, '--pretrain_path') == f'{pretrain_dir}/best_model.pdparams'

    tests = commands[at + 1:at + 1 + len(official(key)['test_shot'])]
    assert [words[0] for _, words in tests] == ['test.py'] * len(official(key)['test_shot'])
    results = checkpoints.replace('checkpoints', 'results')
    for (comment, words), want in zip(tests, expected_tests(key)):
        args = parse(words, placeholder)
        assert vars(args) == reference('test.py', dict(want, results_dir=results), data, placeholder)
        assert flag(words, '--model_path') == f'{run_dir}/best_model.pdparams'  # the model just trained
        written = f'{results}/{args.test_n_way}w{args.n_shot}s/{args.dataset}_{args.model}_{args.method}.json'
        assert comment == f'# test: {written} (and .log)'  # where test.py writes it


def test_recipes_run_their_stages_in_order_and_nothing_else(plans):
    for key in OFFICIAL:
        recipe, _ = recipe_of(key)
        scripts = [words[0] for _, words in plans[recipe]]
        pretraining = [] if kind(key) == 'scratch' else ['pretrain.py', 'test.py', 'test.py']
        assert scripts == pretraining + ['meta_train.py'] + ['test.py'] * len(official(key)['test_shot']), recipe


def test_no_two_experiments_write_the_same_run_folder_or_result_file(plans):
    written = [line for commands in plans.values() for line, _ in commands]
    assert len(written) == len(set(written))  # e.g. CUB crops and raw photos are both --dataset cub


def test_extra_flags_reach_every_command_and_win(data, tmp_path):
    placeholder = tmp_path / 'w.pdparams'
    placeholder.write_bytes(b'')
    recipe = 'scripts/official/mini_imagenet/frn_resnet12.sh'
    commands = planned(recipe, data, '--threads', '1', '--image_size', '42')
    assert len(commands) == 6
    for _, words in commands:
        args = parse(words, placeholder)
        assert (args.threads, args.image_size) == (1, 42) and words[-4:] == ['--threads', '1', '--image_size', '42']
    (_, words), = planned(recipe, data, '--epoch', '2', stages='metatrain')  # a flag test.py does not take
    assert parse(words, placeholder).epoch == 2


def test_stages_can_run_alone(data):
    recipe = 'scripts/official/tiered_imagenet/frn_resnet12.sh'
    assert [w[0] for _, w in planned(recipe, data, stages='metatrain')] == ['meta_train.py']
    assert [w[0] for _, w in planned(recipe, data, stages='test pretrain')] == ['pretrain.py', 'test.py', 'test.py']
    assert [w[0] for _, w in planned(recipe, data, stages='pretrain_test')] == ['test.py', 'test.py']


def test_an_unknown_stage_or_no_data_is_a_one_line_error(data):
    result = dry_run('scripts/official/cub_cropped/frn_conv4.sh', data, stages='pretrain')
    assert result.returncode == 2 and result.stdout == ''
    assert result.stderr == ("error: FRN_STAGES names 'pretrain', but "
                             f"{REPO}/scripts/official/cub_cropped/frn_conv4.sh has the stages: metatrain test\n")
    result = subprocess.run(['bash', str(REPO / 'scripts/official/cub_cropped/frn_conv4.sh')], capture_output=True,
                            text=True)
    assert result.returncode == 2 and result.stderr.startswith('error: no DATA folder given; usage:')


def test_frn_procs_trains_with_processes_that_share_each_batch_and_tests_in_one(data, tmp_path):
    placeholder = tmp_path / 'w.pdparams'
    placeholder.write_bytes(b'')
    recipe = 'scripts/official/mini_imagenet/frn_resnet12.sh'
    result = dry_run(recipe, data, stages='pretrain metatrain test', FRN_PROCS='2')
    assert result.returncode == 0, result.stderr
    commands = [shlex.split(line) for line in result.stdout.splitlines()[1:] if not line.startswith('#')]
    launch = ['python', '-m', 'paddle.distributed.launch', '--nproc_per_node', '2', '--log_dir']
    assert [c[:6] for c in commands[:2]] == [launch, launch]
    for command, script in zip(commands[:2], ('pretrain.py', 'meta_train.py')):
        words = command[7:]
        assert words[0] == script and '/launch_logs/' in command[6]
        args = parse(words, placeholder)
        assert args.share_batches and args.threads == 1
    assert [c[:2] for c in commands[2:]] == [['python', 'test.py']] * 2
    result = dry_run(recipe, data, FRN_PROCS='two')
    assert result.returncode == 2 and result.stderr == "error: FRN_PROCS is 'two'; give a number of processes, 1 or more\n"
