"""Export a trained FRN's feature extractor as a Paddle inference model (+ frn_head.json with scale, r, resolution).

    python tools/export_model.py --model ResNet12 --model_path best_model.pdparams --save_dir inference/ [--image_size 84]

Writes <save_dir>/model.json (Paddle 2.x: model.pdmodel) + model.pdiparams (paddle.jit.to_static with
InputSpec([None, 3, S, S]) and paddle.jit.save) computing FRN.get_feature_map:
images [N, 3, S, S] -> feature maps [N, resolution, d]. Then it loads the export back
through paddle.inference and checks that it gives the dygraph model's feature maps. --classifier adds
classifier.*, the whole few-shot classifier with FRN's ridge head (deploy/classifier_export.py), checked
against the dygraph scores; an openset.json beside the checkpoint (tools/calibrate_openset.py) is copied in. The export
is built and checked in a hidden folder beside --save_dir and only then put in its place, so an
earlier export there stays whole until the new one is complete (deploy/export.py).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runtime.command import cli_main, new_parser  # noqa: E402  (after the sys.path line)
from runtime.device import default_threads, set_threads  # noqa: E402
from utils import FRNError  # noqa: E402

CHECK_TOLERANCE = 1e-4  # max |exported - dygraph| / max |dygraph| over the check images


def check_export(model_path, backbone, save_dir, image_size, threads, n_images=4):
    """Max abs difference between the exported and the dygraph feature maps, and the backend used."""
    import numpy as np
    from deploy.export import DygraphFeatures, InferenceFeatures
    images = np.random.RandomState(0).randn(n_images, 3, image_size, image_size).astype(np.float32)
    reference = DygraphFeatures(model_path, backbone, image_size)(images)
    exported = InferenceFeatures(save_dir, threads=threads)
    diff = float(np.abs(exported(images) - reference).max())
    return diff, diff / float(np.abs(reference).max()), exported.backend


@cli_main
def main(argv=None):
    from network import BACKBONES
    parser = new_parser(__doc__.split('\n')[0])
    parser.add_argument('--model', required=True, choices=list(BACKBONES), help='backbone of the checkpoint')
    parser.add_argument('--model_path', required=True, help='trained weights (.pdparams)')
    parser.add_argument('--save_dir', required=True, help='output folder (model.json, model.pdiparams, frn_head.json)')
    parser.add_argument('--image_size', type=int, default=None,
                        help='input side in pixels (default: the size in the preprocess.json beside the checkpoint, '
                             'which also goes into frn_head.json; 84 for a checkpoint without one)')
    parser.add_argument('--threads', type=int, default=default_threads(), help='CPU math threads')
    parser.add_argument('--no_check', action='store_true',
                        help='skip loading the export back and comparing it with the dygraph model')
    parser.add_argument('--classifier', action='store_true',
                        help='also export the whole few-shot classifier, ridge head included (classifier.*: query '
                             'images and stored support maps in, class scores out; docs/deploy.md)')
    parser.add_argument('--max_shot', type=int, default=None,
                        help='support images per class the classifier takes at most (default 10)')
    args = parser.parse_args(argv)
    if args.max_shot is not None and not args.classifier:
        raise FRNError('--max_shot sets the size of the exported classifier; add --classifier')
    if args.image_size is not None and args.image_size < 16:
        raise FRNError(f'--image_size must be at least 16 (four 2x2 poolings), not {args.image_size}')
    if args.threads < 1:
        raise FRNError(f'--threads must be at least 1, not {args.threads}')
    set_threads(args.threads)
    from deploy.export import export_model, read_head

    from deploy import classifier_export

    def check(folder):  # on the new export before it replaces anything in --save_dir
        diff, relative, backend = check_export(args.model_path, args.model, folder, read_head(folder)['image_size'],
                                               args.threads)
        if not relative <= CHECK_TOLERANCE:
            raise FRNError(f'the exported model differs from the dygraph model by {relative:.3g} (relative), more '
                           f'than {CHECK_TOLERANCE:g}; this Paddle build may mis-run the program, report it. '
                           f'Nothing was changed in {args.save_dir}')
        if args.classifier:
            relative_scores = classifier_export.check_export(args.model_path, args.model, folder, args.threads)
            if not relative_scores <= CHECK_TOLERANCE:
                raise FRNError(f'the exported classifier\'s scores differ from the dygraph scores by '
                               f'{relative_scores:.3g} (relative), more than {CHECK_TOLERANCE:g}; report it. Nothing '
                               f'was changed in {args.save_dir}')
            backend += f'; classifier scores within {relative_scores:.3g} of dygraph (relative)'
        return diff, relative, backend
    head, checked = export_model(args.model_path, args.model, args.save_dir, args.image_size,
                                 check=None if args.no_check else check,
                                 extra=classifier_export.extras(args.model_path, args.classifier, args.max_shot))
    args.image_size = head['image_size']
    print(f'exported {args.model} ({args.model_path}) to {args.save_dir}: input [N, 3, {args.image_size}, '
          f'{args.image_size}] -> feature map [N, {head["resolution"]}, {head["d"]}]; scale {head["scale"]:.6g}, '
          f'r [{head["r"][0]:.6g}, {head["r"][1]:.6g}]; preprocessing: {head["input"].split("after: ", 1)[1]}')
    if checked:
        diff, relative, backend = checked
        print(f'checked with {backend}: max abs difference from dygraph {diff:.3g} '
              f'({relative:.3g} of the largest value; tolerance {CHECK_TOLERANCE:g})')

if __name__ == '__main__':
    main()
