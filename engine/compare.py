"""Two models tested on the same episodes, compared episode by episode (tools/compare_results.py).

test.py draws its episodes from --seed, so two models tested with the same settings on the same
split meet exactly the same episodes. The difference of their accuracies is then measured on
each episode, and its interval is the paired one: 1.96 * std / sqrt(n) of the per-episode
differences (utils.mean_confidence_interval), which is far narrower than the two models' own
intervals suggest, as the hard and easy episodes are hard and easy for both.
"""
import json

import numpy as np

from utils import FRNError, mean_confidence_interval

# what makes two result files hold the same episodes: (JSON field, how to name it)
SAME_EPISODES = (('dataset', '--dataset'), ('split_sha256', 'test split (images and labels)'),
                 ('n_way', '--test_n_way'), ('n_shot', '--n_shot'), ('n_query', '--n_query'), ('seed', '--seed'),
                 ('test_task_nums', '--test_task_nums'), ('test_n_episode', '--test_n_episode'),
                 ('episodes_sha256', 'drawn episodes'))


def read_result(path):
    """A result JSON of test.py that holds its per-episode accuracies."""
    try:
        with open(path, encoding='utf-8') as f:
            result = json.load(f)
    except OSError as err:
        raise FRNError(f'cannot read {path!r} ({err.strerror}); give a result JSON written by test.py') from None
    except ValueError as err:
        raise FRNError(f'{path!r} is not valid JSON ({err}); give a result JSON written by test.py') from None
    keys = [key for key, _ in SAME_EPISODES] + ['episode_accs']
    missing = [key for key in keys if not isinstance(result, dict) or key not in result]
    if missing:
        raise FRNError(f'{path} has no per-episode accuracies and episode fingerprints ({", ".join(missing)}): '
                       f'an older test.py wrote it, or it is no test.py result; test the model again to compare it')
    expected = result['test_task_nums'] * result['test_n_episode']
    if len(result['episode_accs']) != expected:
        raise FRNError(f'{path} holds {len(result["episode_accs"])} episode accuracies, not the {expected} of its '
                       f'{result["test_task_nums"]} task(s) x {result["test_n_episode"]} episodes; test the model '
                       f'again')
    return result


def episodes_differ(a, b):
    """None when results `a` and `b` were measured on the same episodes, else what differs (one phrase)."""
    differ = [(key, name) for key, name in SAME_EPISODES if a[key] != b[key]]
    if len(differ) > 1:  # the episodes' fingerprint follows from the rest; name the causes
        differ = [(key, name) for key, name in differ if key != 'episodes_sha256']
    return '; '.join(f'{name}: {a[key]} vs {b[key]}' if 'sha256' not in key else f'{name} differ'
                     for key, name in differ) or None


def model_of(result):
    """What names the tested model in a result."""
    return {key: result.get(key) for key in ('checkpoint', 'model', 'method', 'classifier')}


def paired_comparison(a, b):
    """Model A against model B on their common episodes: each one's mean and interval, the mean difference A - B
    with its paired 95% interval, and the shares of episodes where A is better, equal, worse."""
    reason = episodes_differ(a, b)
    if reason:
        raise FRNError(f'the two results were not measured on the same episodes ({reason}); test both models with '
                       f'the same data, --dataset, --test_n_way, --n_shot, --n_query, --seed, --test_task_nums and '
                       f'--test_n_episode')
    acc_a, acc_b = np.asarray(a['episode_accs'], np.float64), np.asarray(b['episode_accs'], np.float64)
    diff = acc_a - acc_b
    (mean_a, ci_a), (mean_b, ci_b), (mean, ci) = map(mean_confidence_interval, (acc_a, acc_b, diff))
    return {'episodes': len(diff), **{key: a[key] for key, _ in SAME_EPISODES},
            'a': {'acc': mean_a, 'ci95': ci_a, **model_of(a)}, 'b': {'acc': mean_b, 'ci95': ci_b, **model_of(b)},
            'difference': mean, 'difference_ci95': ci,
            'a_better': float(np.mean(diff > 0)), 'equal': float(np.mean(diff == 0)),
            'a_worse': float(np.mean(diff < 0))}
