"""A gallery of your classes for the exported classifier: add or remove classes without exporting again,
classify queries against the stored classes (deploy/gallery.py; docs/deploy.md).

    python tools/gallery.py --gallery my_classes.npz --inference_dir inference/ add --support my_images/support
    python tools/gallery.py --gallery my_classes.npz --inference_dir inference/ add --name zebra --images z1.jpg z2.jpg
    python tools/gallery.py --gallery my_classes.npz --inference_dir inference/ remove zebra
    python tools/gallery.py --gallery my_classes.npz --inference_dir inference/ list
    python tools/gallery.py --gallery my_classes.npz --inference_dir inference/ classify --query PATH [--reject] [--json]

--inference_dir is a folder written by `tools/export_model.py --classifier`: its feature program embeds the
support images once (add), its classifier program scores queries against every stored class (classify),
both through paddle.inference.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from deploy.prediction_flags import query_names  # noqa: E402
from runtime.command import cli_main, new_parser  # noqa: E402  (after the sys.path line)
from runtime.device import default_threads, set_threads  # noqa: E402
from utils import FRNError  # noqa: E402


def parse_args(argv):
    parser = new_parser(__doc__.split('\n')[0])
    parser.add_argument('--gallery', required=True, help='the gallery file (.npz), created by the first add')
    parser.add_argument('--inference_dir', required=True, help='folder written by tools/export_model.py --classifier')
    parser.add_argument('--threads', type=int, default=default_threads(), help='CPU math threads')
    commands = parser.add_subparsers(dest='command', required=True)
    add = commands.add_parser('add', help='embed classes and store them (a class of the same name is replaced)')
    add.add_argument('--support', help='a folder with one subfolder of images per class: add them all')
    add.add_argument('--name', help='the name of one class to add (with --images)')
    add.add_argument('--images', nargs='+', help='its image files')
    remove = commands.add_parser('remove', help='remove classes')
    remove.add_argument('names', nargs='+')
    commands.add_parser('list', help='the stored classes and their number of images')
    classify = commands.add_parser('classify', help='classify images against the stored classes')
    classify.add_argument('--query', required=True,
                          help='an image, or a folder of images; or a folder of subfolders named after stored classes '
                               '(query/<class>/img.jpg), whose true classes give an accuracy')
    classify.add_argument('--reject', action='store_true',
                          help='answer "(unknown)" below the calibrated threshold (openset.json in --inference_dir)')
    classify.add_argument('--calibration', default=None, help='the calibration file to reject with (implies --reject)')
    classify.add_argument('--json', action='store_true', help='print JSON instead of lines')
    args = parser.parse_args(argv)
    if args.command == 'add' and (args.support is None) == (args.name is None or args.images is None):
        raise FRNError('add takes either --support DIR, or --name NAME with --images FILE...')
    return args


@cli_main
def main(argv=None):
    args = parse_args(argv)
    set_threads(args.threads)
    from deploy.export import InferenceFeatures, read_head
    from deploy.gallery import Gallery
    from deploy.predict import read_queries, read_support
    features = InferenceFeatures(args.inference_dir, threads=args.threads)
    gallery = Gallery.open(args.gallery, features, create=args.command == 'add')
    if args.command == 'add':
        classes = read_support(args.support) if args.support else [(args.name, args.images)]
        for name, paths in classes:
            gallery.add(name, paths, features)
        gallery.save()
        print(f'{args.gallery}: added {", ".join(f"{n} ({len(p)})" for n, p in classes)}; '
              f'{len(gallery.classes)} classes')
    elif args.command == 'remove':
        for name in args.names:
            gallery.remove(name)
        gallery.save()
        print(f'{args.gallery}: removed {", ".join(args.names)}; {len(gallery.classes)} classes left')
    elif args.command == 'list':
        for name in gallery.classes:
            print(f'{name}\t{len(gallery.maps[name])}')
    else:
        from deploy.classifier_export import ExportedClassifier
        calibration = None
        if args.reject or args.calibration:
            from deploy import openset
            calibration = openset.read_calibration(args.calibration or openset.default_path(features), features)
        classifier = ExportedClassifier(args.inference_dir, read_head(args.inference_dir), args.threads)
        queries, truths = read_queries(args.query, gallery.classes)
        result = gallery.classify(queries, features, classifier, calibration)
        names = query_names(queries, args.query)
        rows = [{'query': n, 'prediction': p,
                 'scores': {c: round(float(v), 6) for c, v in zip(result['classes'], probs)}}
                for n, p, probs in zip(names, result['predictions'], result['probabilities'])]
        if calibration:
            for row, best, conf, ok in zip(rows, result['open_set']['best'], result['open_set']['confidence'],
                                           result['open_set']['accepted']):
                row.update(best=result['classes'][best], confidence=round(float(conf), 6), accepted=bool(ok))
        score = {}
        if truths:
            from deploy.report import accuracy, accuracy_lines
            score = {'accuracy': accuracy(result['predictions'], truths, result['classes'])}
            for row, truth in zip(rows, truths):
                row['truth'] = truth
        if args.json:
            print(json.dumps({'gallery': args.gallery, 'backend': classifier.backend, 'classes': result['classes'],
                              'predictions': rows, **score}, indent=2))
        else:
            for row in rows:
                shown = row['prediction'] if row['prediction'] is not None else f'(unknown; nearest {row["best"]})'
                print(f'{row["query"]}\t{shown}\t{max(row["scores"].values()):.3f}'
                      + (f'\t{"right" if row["prediction"] == row["truth"] else "wrong"}' if truths else ''))
            if truths:
                print('\n'.join(['', *accuracy_lines(score['accuracy'])]))


if __name__ == '__main__':
    main()
