"""The flags of prediction on your own image folders (tools/infer.py, tools/visualize.py), and what they load."""
import os

from runtime.command import add_old_spelling
from runtime.device import default_threads, set_threads
from utils import FRNError


def add_prediction_flags(parser):
    """--support, --query, the model (a checkpoint or an exported folder) and how it runs."""
    from network import BACKBONES
    parser.add_argument('--support', required=True, help='folder with one subfolder of example images per class')
    parser.add_argument('--query', required=True, help='an image, or a folder of images, to classify')
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
    """(support, queries, feature extractor), the folders checked before the model is loaded."""
    set_threads(args.threads)
    from deploy.export import feature_extractor
    from deploy.predict import list_queries, read_support
    support, queries = read_support(args.support), list_queries(args.query)  # folder errors before any work
    features = feature_extractor(args.model_path, args.inference_dir, args.model, args.image_size, args.gpu,
                                 args.threads)
    return support, queries, features


def query_names(queries, query_path):
    """Paths as shown: relative to the query folder, or as given for a single file."""
    if os.path.isdir(query_path):
        return [os.path.relpath(q, query_path) for q in queries]
    return list(queries)
