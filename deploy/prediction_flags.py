"""The flags of prediction on your own image folders (tools/infer.py, tools/visualize.py), and what they load."""
import os

from runtime.command import add_old_spelling
from runtime.device import default_threads, set_threads
from utils import FRNError


def add_prediction_flags(parser):
    """--support, --query, the model (a checkpoint or an exported folder) and how it runs."""
    from network import BACKBONES
    parser.add_argument('--support', required=True, help='folder with one subfolder of example images per class')
    parser.add_argument('--query', required=True,
                        help='an image, or a folder of images, to classify; or a folder of class subfolders named as '
                             'the support\'s (query/<class>/img.jpg), whose true classes give an accuracy')
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument('--model_path', help='trained weights (.pdparams), run in dygraph')
    model.add_argument('--inference_dir', help='folder written by tools/export_model.py, run with paddle.inference')
    parser.add_argument('--model', choices=list(BACKBONES), default=None,
                        help='backbone (default: read from the checkpoint or the exported folder)')
    parser.add_argument('--image_size', type=int, default=None,
                        help='input side in pixels (default: the model\'s own, from the preprocess.json beside the '
                             'checkpoint or the exported frn_head.json; 84 for a model without that record). '
                             'The preprocessing (colour, resize, crop, normalisation) always comes from the model')
    gpu = parser.add_argument('--gpu', action='store_true',
                              help='use the GPU when this PaddlePaddle build has CUDA; otherwise warn and use the CPU')
    add_old_spelling(parser, '--use_gpu', gpu)
    parser.add_argument('--threads', type=int, default=default_threads(), help='CPU math threads')


def check_prediction_flags(args):
    if args.image_size is not None and args.image_size < 16:
        raise FRNError(f'--image_size must be at least 16 (four 2x2 poolings), not {args.image_size}')
    if args.threads < 1:
        raise FRNError(f'--threads must be at least 1, not {args.threads}')
    return args


def load_prediction_inputs(args):
    """(support, queries, their true classes or None, feature extractor), the folders checked before the model is
    loaded. Warns once on stderr when most images look unlike the model's training data (deploy/domain.py)."""
    set_threads(args.threads)
    from deploy.domain import mismatch
    from deploy.export import feature_extractor, warn
    from deploy.predict import read_queries, read_support
    support = read_support(args.support)  # folder errors before any work
    queries, truths = read_queries(args.query, [name for name, _ in support])
    features = feature_extractor(args.model_path, args.inference_dir, args.model, args.image_size, args.gpu,
                                 args.threads)
    images = [p for _, paths in support for p in paths] + queries
    record = features.preprocess or {}
    outside = mismatch(record.get('family'), images, record.get('dataset'))
    if outside:
        warn(outside)
    return support, queries, truths, features


def query_names(queries, query_path):
    """Paths as shown: relative to the query folder, or as given for a single file."""
    if os.path.isdir(query_path):
        return [os.path.relpath(q, query_path) for q in queries]
    return list(queries)
