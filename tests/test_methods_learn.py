"""FRN and the official ProtoNet both learn: 40 episodes of meta-training on real Omniglot characters lift
5-way 1-shot accuracy on unseen characters far above the same model untrained (at scale: docs/results.md)."""
import json
import subprocess
import sys

import paddle
import pytest

from conftest import REPO, shared_path
from methods.FRN import FRN
from methods.protonet import Proto

COMMON = ['--dataset', 'omniglot', '--omniglot_split', 'background', '--model', 'Conv4', '--image_size', '42',
          '--threads', '2', '--n_shot', '1', '--n_query', '5']
TRAIN = ['--train_n_way', '20', '--train_n_episode', '40', '--epoch', '1', '--milestones', '5', '--lr', '0.1',
         '--val', 'last', '--print_freq', '20']
MODELS = {'meta_frn': FRN, 'meta_proto': Proto}


def run(script, *args, cwd):
    done = subprocess.run([sys.executable, str(REPO / script), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def accuracy(method, model_path, data, results):
    """5-way 1-shot accuracy (%) on 100 seeded episodes of the 20 evaluation alphabets."""
    run('test.py', *COMMON, '--data_path', data, '--method', method, '--model_path', str(model_path),
        '--test_task_nums', '1', '--test_n_episode', '100', '--results_dir', str(results), cwd=results.parent)
    return json.loads((results / '5w1s' / f'omniglot_Conv4_{method}.json').read_text())['acc']


@pytest.mark.slow
@pytest.mark.parametrize('method', ['meta_frn', 'meta_proto'])
def test_forty_training_episodes_lift_unseen_class_accuracy_far_above_the_untrained_model(method, tmp_path):
    data = str(shared_path('data', 'omniglot'))
    paddle.seed(0)  # meta_train.py's initialisation: --seed 0
    paddle.save(MODELS[method](backbone='Conv4', image_size=42).state_dict(), str(tmp_path / 'untrained.pdparams'))
    run('meta_train.py', *COMMON, *TRAIN, '--data_path', data, '--method', method, '--checkpoint_dir',
        str(tmp_path / 'ck'), cwd=tmp_path)
    trained_path = tmp_path / 'ck' / 'omniglot' / f'Conv4_{method}_20way_1shot_metatrain' / 'best_model.pdparams'
    untrained = accuracy(method, tmp_path / 'untrained.pdparams', data, tmp_path / 'untrained')
    trained = accuracy(method, trained_path, data, tmp_path / 'trained')
    assert untrained < 70.0 and trained > 75.0 and trained - untrained > 12.0, (untrained, trained)
