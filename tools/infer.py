"""Few-shot prediction on your own images with a trained FRN.

    python tools/infer.py --support DIR --query PATH --model_path best_model.pdparams [--gpu] [--json]
    python tools/infer.py --support DIR --query PATH --inference_dir inference/ [--gpu] [--json]

DIR holds one subfolder per class with 1 to K example images (classes may have
different numbers). PATH is one image or a folder of images. For each query, prints the
predicted class and the per-class scores (softmax of FRN's scaled negative
reconstruction errors), as a table or as JSON. --model_path runs the dygraph checkpoint;
--inference_dir runs a model written by tools/export_model.py through paddle.inference.
--explain adds, per query and class, the squared reconstruction error of every feature-map
position (an h x w list; its mean is minus the class's score), see deploy/explain.py.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from deploy.prediction_flags import (add_prediction_flags, check_prediction_flags,  # noqa: E402
                                     load_prediction_inputs, query_names)
from runtime.command import cli_main, new_parser  # noqa: E402


def parse_args(argv=None):
    parser = new_parser(__doc__.split('\n')[0])
    add_prediction_flags(parser)
    parser.add_argument('--json', action='store_true', help='print JSON instead of a table')
    parser.add_argument('--explain', action='store_true',
                        help='add each class\'s per-position reconstruction errors to the JSON (implies --json)')
    return check_prediction_flags(parser.parse_args(argv))


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


@cli_main
def main(argv=None):
    args = parse_args(argv)
    support, queries, features = load_prediction_inputs(args)
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
