"""Calibrate open-set rejection ("none of these classes") for a trained FRN on a labelled split.

    python tools/calibrate_openset.py --model_path best_model.pdparams --data_path DATA [--split val] [--rate 0.05]
    python tools/calibrate_openset.py --inference_dir inference/ --data_path MY_LABELLED_FOLDER --class_folders

Draws open-set episodes from the labelled images: `--way` known classes with 1..5 support images each
(`--shots`), whose queries are images of the known classes and of `--unknown_way` classes left out of
the support. For each number of support images it sets the threshold on the best class's confidence
(default: the fraction of the query it explains) so that a fraction `--rate` of the unknown queries is
accepted, and writes the thresholds, how they were chosen and what they do on these episodes to
openset.json beside the model (the checkpoint's folder, or the exported folder), where
`tools/infer.py --reject` finds them. Calibrate on classes the model was not trained on (the
validation split), never on the classes you will test on. See docs/deploy.md.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runtime.command import cli_main, new_parser  # noqa: E402  (after the sys.path line)
from runtime.device import default_threads, set_threads  # noqa: E402
from deploy import openset  # noqa: E402


def add_model_flags(parser):
    from network import BACKBONES
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument('--model_path', help='trained weights (.pdparams), run in dygraph')
    model.add_argument('--inference_dir', help='folder written by tools/export_model.py, run with paddle.inference')
    parser.add_argument('--model', choices=list(BACKBONES), default=None,
                        help='backbone (default: read from the checkpoint or the exported folder)')
    parser.add_argument('--threads', type=int, default=default_threads(), help='CPU math threads')


@cli_main
def main(argv=None):
    parser = new_parser(__doc__.split('\n')[0])
    add_model_flags(parser)
    parser.add_argument('--data_path', required=True, help='the labelled images: a dataset folder (with --split), or '
                                                           'a folder of class folders (with --class_folders)')
    parser.add_argument('--split', choices=['train', 'val', 'test'], default='val',
                        help='split of the dataset folder to calibrate on (default val)')
    parser.add_argument('--class_folders', action='store_true',
                        help='--data_path itself holds one folder of images per class')
    openset.add_episode_flags(parser)
    parser.add_argument('--out', default=None, help='where to write the calibration (default: openset.json beside the '
                                                    'model, where tools/infer.py --reject reads it)')
    args = parser.parse_args(argv)
    openset.check_episode_flags(args)
    set_threads(args.threads)
    from deploy.export import feature_extractor
    from tqdm import tqdm
    split = openset.labelled_split(args.data_path, None if args.class_folders else args.split)
    features = feature_extractor(args.model_path, args.inference_dir, args.model, threads=args.threads)
    maps, members = openset.split_maps(features, split, args.images_per_class, args.seed,
                                       progress=lambda it: tqdm(it, desc='embedding', leave=False))
    source = f'{os.path.abspath(args.data_path)}' + ('' if args.class_folders else f' ({args.split})')
    record = openset.calibrate(features, maps, members, args.shots, args.way, args.unknown_way, args.queries,
                               args.episodes, args.rate, args.score, args.seed, source)
    path = openset.write_calibration(record, args.out or openset.default_path(features))
    print(f'calibrated {features.describe()} on {len(members)} classes of {source}: {args.way}-way episodes, '
          f'{args.unknown_way} unknown classes, {args.episodes} episodes per size, target false-accept rate '
          f'{args.rate:g}, confidence "{args.score}"')
    for shot, threshold in record['thresholds'].items():
        m = record['measured'][shot]
        print(f'  {shot} image(s) per class: threshold {threshold:.6g}; on these episodes: false accepts '
              f'{m["false_accept"]:.1%}, known accepted {m["known_accept"]:.1%}, known accepted and right '
              f'{m["known_correct_accept"]:.1%} (closed-set accuracy {m["closed_accuracy"]:.1%}), '
              f'AUROC {m["auroc"]:.3f}')
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
