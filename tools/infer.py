"""Few-shot prediction on your own images with a trained FRN.

    python tools/infer.py --support DIR --query PATH --model_path best_model.pdparams [--gpu] [--json]
    python tools/infer.py --support DIR --query PATH --inference_dir inference/ [--gpu] [--json]

DIR holds one subfolder per class with 1 to K example images (classes may have
different numbers). PATH is one image or a folder of images; or a folder of class subfolders
named as DIR's (PATH/<class>/img.jpg), and then the accuracy is printed too, overall and per
class (deploy/report.py). For each query, prints the predicted class and the per-class scores
(softmax of FRN's scaled negative reconstruction errors) as a table, one line per query when the
table would be wider than 120 characters, or as JSON. A warning says when most images look
unlike what the model was trained on (deploy/domain.py). --model_path runs the dygraph checkpoint;
--inference_dir runs a model written by tools/export_model.py through paddle.inference.
--explain adds, per query and class, the squared reconstruction error of every feature-map
position (an h x w list; its mean is minus the class's score), see deploy/explain.py.
--reject answers "(unknown)" (JSON: null) when the best class explains less of the query than the
calibrated threshold (deploy/openset.py); --check_support reports suspicious support images first
(deploy/support_check.py). See docs/deploy.md.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from deploy.prediction_flags import (add_prediction_flags, check_prediction_flags,  # noqa: E402
                                     load_prediction_inputs, query_names)
from deploy.report import UNKNOWN, accuracy, accuracy_lines, prediction_lines, wrapped  # noqa: E402,F401
from runtime.command import cli_main, new_parser  # noqa: E402


def parse_args(argv=None):
    parser = new_parser(__doc__.split('\n')[0])
    add_prediction_flags(parser)
    parser.add_argument('--json', action='store_true', help='print JSON instead of a table')
    parser.add_argument('--explain', action='store_true',
                        help='add each class\'s per-position reconstruction errors to the JSON (implies --json)')
    parser.add_argument('--reject', action='store_true',
                        help='answer "unknown" for a query that no class explains well enough, with the calibration '
                             'beside the model (openset.json, from tools/calibrate_openset.py)')
    parser.add_argument('--calibration', default=None, help='the open-set calibration file to reject with '
                                                            '(implies --reject)')
    parser.add_argument('--check_support', action='store_true',
                        help='first report, per support image, how well the rest of its class rebuilds it and how '
                             'much it helps its class\'s queries, and flag the suspicious ones')
    return check_prediction_flags(parser.parse_args(argv))


def as_json(result, names, features):
    classes = result['classes']
    extra = {'accuracy': result['accuracy']} if 'accuracy' in result else {}
    if 'open_set' in result:
        from deploy.openset import json_fields
        extra.update(json_fields(result))
    if 'support_check' in result:
        from deploy.support_check import as_json as check_json
        extra['support_check'] = check_json(result['support_check'])
    return json.dumps({
        'model': features.source, 'backbone': features.backbone, 'image_size': features.image_size,
        'backend': features.backend, 'classes': classes, 'support': result['support'],
        'predictions': [{'query': name, 'prediction': pred,
                         **({'truth': result['truths'][i]} if result.get('truths') else {}),
                         'scores': {c: round(float(p), 6) for c, p in zip(classes, probs)},
                         **({'errors': {c: e.tolist() for c, e in zip(classes, result['errors'][i])}}
                            if 'errors' in result else {})}
                        for i, (name, pred, probs) in enumerate(zip(names, result['predictions'],
                                                                    result['probabilities']))],
        **extra}, indent=2)


def as_table(result, names, features):
    support = ', '.join(f'{c} ({n})' for c, n in result['support'].items())
    before = [f'open set: {result["open_set"]["describe"]}'] if 'open_set' in result else []
    if 'support_check' in result:
        from deploy.support_check import as_text
        before += ['', as_text(result['support_check'])]
    after = ['', *accuracy_lines(result['accuracy'])] if 'accuracy' in result else []
    return '\n'.join(wrapped(f'model: {features.describe()}') + wrapped(f'support: {support}') + before + [''] +
                      prediction_lines(result['classes'], names, result['predictions'], result['probabilities'],
                                       result.get('truths')) + after)


@cli_main
def main(argv=None):
    args = parse_args(argv)
    support, queries, truths, features = load_prediction_inputs(args)
    calibration = None
    if args.reject or args.calibration:
        from deploy import openset
        calibration = openset.read_calibration(args.calibration or openset.default_path(features), features)
    if args.explain:
        from deploy.explain import explain
        result = explain(features, support, queries)
    else:
        from deploy.predict import predict
        result = predict(features, support, queries)
    names = query_names(result['queries'], args.query)
    if calibration:
        openset.apply(result, calibration)
    if truths:
        result.update(truths=truths, accuracy=accuracy(result['predictions'], truths, result['classes']))
    if args.check_support:
        from deploy.support_check import check_support
        result['support_check'] = check_support(features, support, queries,
                                                maps=(result['support_maps'], result['query_maps']))
        for item in result['support_check']['images']:
            item['path'] = os.path.relpath(item['path'], args.support)
    print((as_json if args.json or args.explain else as_table)(result, names, features))


if __name__ == '__main__':
    main()
