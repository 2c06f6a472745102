"""Compare two models tested on the same episodes: the mean difference with its paired 95% interval.

    python tools/compare_results.py results/5w1s/cub_ResNet12_meta_frn.json \
        results/5w1s/cub_ResNet12_meta_proto.json [--json OUT]

Both files are test.py results measured with the same data, --dataset, --test_n_way, --n_shot,
--n_query, --seed, --test_task_nums and --test_n_episode, so the two models met the same
episodes; the tool checks this (the test split's and the episodes' fingerprints included) and
refuses anything else, naming what differs. Prints each model's mean and interval, the mean
difference A - B with the paired interval (1.96 * std / sqrt(n) of the per-episode differences,
as test.py's intervals), and the shares of episodes where A is better, equal and worse.
--json writes the same numbers.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runtime.command import cli_main, new_parser  # noqa: E402  (after the sys.path line)
from engine.compare import paired_comparison, read_result  # noqa: E402
from utils import atomic_write_json  # noqa: E402


def parse_args(argv=None):
    parser = new_parser(__doc__.split('\n\n')[0])
    parser.add_argument('a', help="model A's result JSON (test.py's results/<way>w<shot>s/<name>.json)")
    parser.add_argument('b', help="model B's result JSON, tested on the same episodes")
    parser.add_argument('--json', default=None, help='also write the numbers to this JSON file')
    return parser.parse_args(argv)


def describe(side, comparison, path):
    model = comparison[side]
    head = f'{model["method"]} {model["model"]}' + (' (proto head)' if model['classifier'] == 'proto' else '')
    return f'{side.upper()}  {model["acc"]:6.2f} +- {model["ci95"]:.2f}%  {head}: {path}'


@cli_main
def main(argv=None):
    args = parse_args(argv)
    comparison = paired_comparison(read_result(args.a), read_result(args.b))
    comparison['a']['path'], comparison['b']['path'] = os.path.abspath(args.a), os.path.abspath(args.b)
    c = comparison
    print(f'same episodes: {c["dataset"]} test split {c["split_sha256"][:12]}, {c["n_way"]}-way {c["n_shot"]}-shot '
          f'{c["n_query"]} queries, seed {c["seed"]}, {c["test_task_nums"]} task(s) x {c["test_n_episode"]} episodes '
          f'(episodes {c["episodes_sha256"][:12]})')
    print(describe('a', c, args.a))
    print(describe('b', c, args.b))
    print(f'A - B  {c["difference"]:+.2f} +- {c["difference_ci95"]:.2f}% (paired 95% interval over {c["episodes"]} '
          f'episodes)')
    print(f'A is better on {100 * c["a_better"]:.1f}% of the episodes, equal on {100 * c["equal"]:.1f}%, '
          f'worse on {100 * c["a_worse"]:.1f}%')
    if args.json:
        atomic_write_json(comparison, args.json)
        print(f'written to {args.json}')


if __name__ == '__main__':
    main()
