"""Convert an official FRN or ProtoNet PyTorch checkpoint (.pth) to a Paddle .pdparams file, without PyTorch.

    python tools/convert_official_weights.py --src model_ResNet-12.pth --dst resnet12.pdparams

Handles fine-tuned checkpoints (scale, r, feature_extractor.*) and pretraining ones
(plus cat_mat), for ResNet-12 and Conv-4, and the official ProtoNet baseline (scale and
feature_extractor.*, no r; load it into methods.protonet.Proto). The model and the backbone
are read from the keys unless --model forces the backbone. Load the result with
methods.checkpoint.load_model(model, path).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runtime.command import add_old_spelling, cli_main, new_parser  # noqa: E402  (after the sys.path line)


@cli_main
def main(argv=None):
    from network import BACKBONES
    parser = new_parser(__doc__.split('\n')[0])
    parser.add_argument('--src', required=True, help='official checkpoint written by torch.save (.pth)')
    parser.add_argument('--dst', required=True, help='output .pdparams file')
    model = parser.add_argument('--model', choices=list(BACKBONES), default=None,
                                help='force the backbone instead of inferring it from the keys')
    add_old_spelling(parser, '--backbone', model)
    args = parser.parse_args(argv)
    from deploy.official_weights import convert_checkpoint
    info = convert_checkpoint(args.src, args.dst, backbone=args.model)
    kind = f'pretraining (cat_mat, {info["num_cat"]} classes)' if info['pretraining'] else 'fine-tuned'
    print(f'converted {args.src} -> {args.dst}: {info["model"]} {info["backbone"]}, {kind}, {info["num_tensors"]} tensors; '
          f'dropped {len(info["dropped"])} num_batches_tracked counter(s)')


if __name__ == '__main__':
    main()
