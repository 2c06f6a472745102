"""Few-shot prediction on your own images with a trained FRN.

    python tools/infer.py --support DIR --query PATH --model_path best_model.pdparams [--use_gpu] [--json]
    python tools/infer.py --support DIR --query PATH --inference_dir inference/ [--use_gpu] [--json]

DIR holds one subfolder per class with 1 to K example images (classes may have
different numbers). PATH is one image or a folder of images. For each query, prints the
predicted class and the per-class scores (softmax of FRN's scaled negative
reconstruction errors), as a table or as JSON. --model_path runs the dygraph checkpoint;
--inference_dir runs a model written by tools/export_model.py through paddle.inference.
--explain adds, per query and class, the squared reconstruction error of every feature-map
position (an h x w list; its mean is minus the class's score), see deploy/explain.py.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cli  # noqa: E402  (after the sys.path line; first, as it sets up the process)
from utils import FRNError  # noqa: E402


def add_model_arguments(parser):
    """--support, --query and the model flags, shared with tools/visualize.py."""
    parser.add_argument('--support', required=True, help='folder with one subfolder of example images per class')
    parser.add_argument('--query', required=True, help='an image, or a folder of images, to classify')
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument('--model_path', help='trained weights (.pdparams), run in dygraph')
    model.add_argument('--inference_dir', help='folder written by tools/export_model.py, run with paddle.inference')
    parser.add_argument('--model', choices=['ResNet12', 'Conv4'], default=None,
                        help='backbone (default: read from the checkpoint or the exported folder)')
    parser.add_argument('--image_size', type=int, default=None,
                        help='input side in pixels (default: the model\'s own, from the preprocess.json beside the '
                             'checkpoint or the exported frn_head.json; 84 for a model without that record). '
                             'The preprocessing (colour, resize, crop, normalisation) always comes from the model')
    parser.add_argument('--use_gpu', action='store_true', help='use the GPU when this PaddlePaddle build has one')
    parser.add_argument('--threads', type=int, default=cli.default_threads(), help='CPU math threads')


def check_arguments(args):
    if args.image_size is not None and args.image_size < 16:
        raise FRNError(f'--image_size must be at least 16 (four 2x2 poolings), not {args.image_size}')
    return args


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add_model_arguments(parser)
    parser.add_argument('--json', action='store_true', help='print JSON instead of a table')
    parser.add_argument('--explain', action='store_true',
                        help='add each class\'s per-position reconstruction errors to the JSON (implies --json)')
    return check_arguments(parser.parse_args(argv))


def load_inputs(args):
    """(support, queries, feature extractor), the folders checked before the model is loaded."""
    cli.set_threads(args.threads)
    from deploy.export import feature_extractor
    from deploy.predict import list_queries, read_support
    support, queries = read_support(args.support), list_queries(args.query)  # folder errors before any work
    features = feature_extractor(args.model_path, args.inference_dir, args.model, args.image_size, args.use_gpu,
                                 args.threads)
    return support, queries, features


def query_names(queries, query_path):
    """Paths as shown: relative to the query folder, or as given for a single file."""
    if os.path.isdir(query_path):
        return [os.path.relpath(q, query_path) for q in queries]
    return list(queries)


def as_json(result, names, features):
    classes = result['classes']
    return json.dumps({
        'model': features.source, 'backbone': features.backbone, 'image_size': features.image_size,
        'backend': features.backend, 'classes': classes, 'support': result['support'],
        'predictions': [{'query': name, 'prediction': pred,
                         'scores': {c: round(float(p), 6) for c, p in zip(classes, probs)},
                         **({'errors': {c: e.tolist() for c, e in zip(classes, result['errors'][i])}}
                            if 'errors' in result else {})}
                        for i, (name, pred, probs) in enumerate(zip(names, result['predictions'],
                                                                    result['probabilities']))],
    }, indent=2)


def as_table(result, names, features):
    classes = result['classes']
    support = ', '.join(f'{c} ({n})' for c, n in result['support'].items())
    header = ['query', 'prediction'] + classes
    rows = [[name, pred] + [f'{p:.3f}' for p in probs]
            for name, pred, probs in zip(names, result['predictions'], result['probabilities'])]
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda cells: '  '.join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return '\n'.join([f'model: {features.describe()}', f'support: {support}', '', line(header)] +
                     [line(r) for r in rows])


@cli.cli_main
def main(argv=None):
    args = parse_args(argv)
    support, queries, features = load_inputs(args)
    if args.explain:
        from deploy.explain import explain
        result = explain(features, support, queries)
    else:
        from deploy.predict import predict
        result = predict(features, support, queries)
    names = query_names(result['queries'], args.query)
    print((as_json if args.json or args.explain else as_table)(result, names, features))


if __name__ == '__main__':
    main()
