"""The run's settings (engine/config.py): built from the flags once, frozen, and saved under the flags' names, so
that checkpoints written before the settings existed (which saved the flags' namespace) still resume."""
import dataclasses

import pytest

import cli
from utils import FRNError


def meta_args(data, *extra):
    import meta_train
    return meta_train.parse_args(['--data_path', str(data), '--model', 'Conv4', '--n_shot', '5', *extra])


def test_the_settings_resolve_the_defaults_the_flags_leave_open(tiny_mini):
    args = meta_args(tiny_mini, '--n_query', '7')
    assert (args.val_n_query, args.train_transform_type, args.eval_resize, args.num_workers) == (None,) * 4
    config = cli.training_config(args)
    assert config.val.val_n_query == 7  # --val_n_query defaults to --n_query
    assert (config.data.train_transform_type, config.data.eval_resize) == (0, 'shorter')  # mini_imagenet's official
    assert config.data.num_workers == 0 and config.data.num_workers_note.startswith('default on the CPU')
    assert config.run_dir().endswith('mini_imagenet/Conv4_meta_frn_20way_5shot_metatrain')
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.optim.lr = 1.0


def test_the_saved_settings_have_every_key_of_the_flags_and_no_other_value(tiny_mini):
    import pretrain
    for args in (pretrain.parse_args(['--data_path', str(tiny_mini)]), meta_args(tiny_mini)):
        flags = cli.training_config(args).as_flags()
        given = vars(args)
        assert set(given) <= set(flags) and 'num_workers_note' not in flags
        assert all(flags[k] is None for k in set(flags) - set(given))  # the other script's flags
        assert flags['milestones'] == given['milestones'] and isinstance(flags['milestones'], list)


# the 'args' of a meta-training checkpoint written before engine/config.py: vars() of the flags' namespace, as in
# the header of results/tinyimagenet32_84/Conv4_meta_frn_20way_5shot_metatrain/output.log
OLD_ARGS = dict(cache_dir=None, checkpoint_dir='CHECKPOINT_DIR', data_path='DATA', dataset='mini_imagenet', epoch=8,
                gamma=0.1, gpu=False, image_size=84, lr=0.1, max_cache_mb=2048, method='meta_frn', milestones=[4],
                model='Conv4', n_query=15, n_shot=5, no_feature_cache=False, num_workers=0, omniglot_split='vinyals',
                overwrite=False, pretrain_path=None, print_freq=5, resume=None, save_freq=50, seed=0, threads=1,
                train_n_episode=25, train_n_way=20, val='last', val_n_episode=600, val_n_way=5, visualdl=False,
                wd=0.0005)


def old_state(model):
    return {'model': model.state_dict(), 'optimizer': {}, 'scheduler': {}, 'epoch': 3, 'best_acc': 40.0,
            'best_epoch': 3, 'args': OLD_ARGS, 'rng': {}}


def test_a_checkpoint_that_saved_the_flags_namespace_resumes_and_is_checked_key_by_key(tiny_mini):
    from engine.trainer import read_resume_state
    from methods.FRN import FRN
    model = FRN(way=20, shots=[5, 15], backbone='Conv4', image_size=84)
    same = cli.training_config(meta_args(tiny_mini, '--epoch', '10', '--lr', '0.1', '--milestones', '4'))
    assert read_resume_state('last_model.pdopt', same.as_flags(), model, old_state(model))['epoch'] == 3
    other = cli.training_config(meta_args(tiny_mini, '--image_size', '32', '--opt', 'adam'))
    with pytest.raises(FRNError, match=r'--image_size is 84 there, 32 here; --opt is sgd there, adam here'):
        read_resume_state('last_model.pdopt', other.as_flags(), model, old_state(model))
