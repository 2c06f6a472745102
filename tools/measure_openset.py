"""Measure open-set rejection, the support check and the classifier export on held-out classes.

    python tools/measure_openset.py --model_path results/cars/.../best_model.pdparams --data_path cars_fewshot \
        --out results/cars/openset.json --docs docs/deploy.md --name cars

Thresholds are calibrated on --cal_split (default val) and measured on --test_split (default test):
AUROC, false accepts and known accuracy for FRN's explained fraction, FRN's score and the maximum
softmax probability; support sets of the test classes with a planted image of another class; and the
exported classifier (paddle.inference) against dygraph on test episodes. Writes the numbers to --out
(JSON) and, with --docs, the tables between <!-- openset:NAME --> and <!-- /openset:NAME --> in that file
(deploy/open_measure.py).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runtime.command import cli_main, new_parser  # noqa: E402  (after the sys.path line)
from runtime.device import default_threads, set_threads  # noqa: E402
from deploy import openset  # noqa: E402
from utils import FRNError, atomic_write_json, atomic_write_text  # noqa: E402


@cli_main
def main(argv=None):
    from network import BACKBONES
    parser = new_parser(__doc__.split('\n')[0])
    parser.add_argument('--model_path', required=True, help='trained FRN weights (.pdparams)')
    parser.add_argument('--model', choices=list(BACKBONES), default=None, help='backbone (default: from the checkpoint)')
    parser.add_argument('--data_path', required=True, help='dataset folder with both splits')
    parser.add_argument('--cal_split', default='val', choices=['train', 'val', 'test'])
    parser.add_argument('--test_split', default='test', choices=['train', 'val', 'test'])
    parser.add_argument('--max_classes', type=int, default=None, help='use at most this many classes of each split')
    parser.add_argument('--plant_trials', type=int, default=100, help='support sets per planting case')
    parser.add_argument('--plant_shot', type=int, default=5, help='support images per class in the planting trials')
    parser.add_argument('--export_episodes', type=int, default=20,
                        help='test episodes for the classifier export check (0: skip it)')
    parser.add_argument('--threads', type=int, default=default_threads(), help='CPU math threads')
    parser.add_argument('--out', required=True, help='the JSON to write')
    parser.add_argument('--docs', default=None, help='a markdown file whose openset:NAME section gets the tables')
    parser.add_argument('--name', default=None,
                        help='the section name in --docs (default: NAME of an --out results/NAME/openset/measure.json)')
    openset.add_episode_flags(parser)
    parser.set_defaults(shots=[1, 5])
    args = parser.parse_args(argv)
    openset.check_episode_flags(args)
    if args.cal_split == args.test_split:
        raise FRNError(f'--cal_split and --test_split are both {args.cal_split!r}: calibrate on other classes than '
                       f'the ones you measure on')
    set_threads(args.threads)
    import numpy as np
    from tqdm import tqdm
    from data.preprocess import eval_transform_from
    from deploy import open_measure
    from deploy.export import DygraphFeatures
    features = DygraphFeatures(args.model_path, args.model)
    splits, embedded = {}, {}
    for name in (args.cal_split, args.test_split):
        splits[name] = openset.labelled_split(args.data_path, name)
        embedded[name] = openset.split_maps(features, splits[name], args.images_per_class, args.seed,
                                            progress=lambda it: tqdm(it, desc=f'embedding {name}', leave=False),
                                            max_classes=args.max_classes)
    maps, members = embedded[args.test_split]
    record = {'format': open_measure.FORMAT, 'model': {'source': args.model_path, **openset.model_identity(features)},
              'data': {'path': os.path.abspath(args.data_path), 'cal_split': args.cal_split,
                       'test_split': args.test_split,
                       'classes': {n: len(embedded[n][1]) for n in embedded},
                       'images': {n: int(len(embedded[n][0])) for n in embedded}},
              'setup': {k: getattr(args, k) for k in ('way', 'unknown_way', 'shots', 'queries', 'episodes',
                                                       'images_per_class', 'rate', 'seed')}}
    record['setup']['queries_per_class'] = record['setup'].pop('queries')
    record['rejection'] = open_measure.rejection(features, embedded[args.cal_split], embedded[args.test_split],
                                                 args.shots, args.way, args.unknown_way, args.queries, args.episodes,
                                                 args.rate, args.seed)
    record['support_check'] = {
        where: open_measure.planted_trials(features, maps, members, args.way, args.plant_shot, args.queries,
                                           args.plant_trials, args.seed + n, where)
        for n, where in enumerate(('inside', 'outside', 'none'))}
    if args.export_episodes:
        # the images of the embedded test maps, in the same order (split_maps draws them with the same seed)
        split = splits[args.test_split]
        transform = eval_transform_from(features.preprocess)
        order, _ = openset.chosen_images(split, args.images_per_class, args.seed, args.max_classes)
        record['export'] = open_measure.export_agreement(
            args.model_path, features, lambda idx: np.stack([transform(split.load_image(order[i])) for i in idx]),
            members, args.export_episodes, args.seed, args.threads)
    atomic_write_json(record, args.out)
    text = open_measure.table(record)
    print(text)
    print(f'wrote {args.out}')
    if args.docs:
        name = args.name or os.path.basename(os.path.dirname(os.path.dirname(os.path.abspath(args.out))))
        with open(args.docs, encoding='utf-8') as f:
            atomic_write_text(open_measure.replace_section(f.read(), name, text), args.docs)
        print(f'updated the openset:{name} section of {args.docs}')


if __name__ == '__main__':
    main()
