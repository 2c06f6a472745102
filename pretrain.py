"""FRN pretraining (--method stl_frn): every base class at once, each with a learnable class matrix.

    python pretrain.py --dataset mini_imagenet --data_path DATA --method stl_frn --lr 1e-1 --gamma 1e-1 \
        --epoch 350 --milestones 200 300 --batch_size 512 --val_n_episode 600 --image_size 84 \
        --model ResNet12 --n_shot 1 --n_query 15 --gpu

Each image's feature map is reconstructed from every class matrix (FRN's head with the
class matrices as supports); the loss is the NLL over all classes, and r = [alpha, beta]
stays frozen. Writes ./checkpoints/<dataset>/<model>_stl_frn_pretrain/.
"""
import os

import cli  # first: it sets up the process (warnings, MKL) before paddle is imported
from cli import cli_main
from data.datamgr import SimpleDataManager
from engine import parallel
from engine.trainer import train
from methods.FRN import FRN
from methods.steps import pretrain_step
from utils import FRNError


def parse_args(argv=None):
    parser = cli.new_parser(__doc__.split('\n\n')[0])
    cli.add_common(parser)
    cli.add_training(parser, lr=0.05, epoch=150, milestones=[80, 120])
    g = parser.add_argument_group('pretraining')
    g.add_argument('--method', default='stl_frn', choices=['stl_frn'], help='training method')
    g.add_argument('--batch_size', type=int, default=128,
                   help='images per batch; under paddle.distributed.launch this is the global batch, split '
                        'evenly among the processes')
    g.add_argument('--num_classes', type=int, default=64,
                   help='base classes; when the data has another number, the data wins (with a warning)')
    g.add_argument('--train_n_way', type=int, default=20,
                   help='not used by pretraining; accepted so the meta-training command line can be reused')
    args = parser.parse_args(argv)
    cli.check_training(args)
    if args.batch_size < 2:
        raise FRNError(f'--batch_size must be at least 2 (BatchNorm needs a batch), not {args.batch_size}')
    return args


@cli_main
def main(argv=None):
    args = parse_args(argv)
    run_dir = cli.run_dir(args, 'pretrain')
    with cli.claim_run_dir(args, run_dir) as lock:  # before anything is read or written
        train_split, val_split = cli.read_splits(args, 'train', 'val') if args.val == 'meta' else \
            (*cli.read_splits(args, 'train'), None)
        log = cli.start(args, os.path.join(run_dir, 'output.log'))
        for note in lock.notes:
            log(note)
        if train_split.n_classes < 2:
            raise FRNError(f'{train_split.source} has {train_split.n_classes} class; pretraining classifies '
                           f'among the training classes, so it needs at least 2 (with one, the loss is 0 and the '
                           f'accuracy 100% from the start)')
        if args.num_classes != train_split.n_classes:
            log(f'warning: --num_classes {args.num_classes} disagrees with the {train_split.n_classes} classes of '
                f'{train_split.source}; using {train_split.n_classes}')
            args.num_classes = train_split.n_classes
        train_loader = SimpleDataManager(args.image_size, args.batch_size, num_workers=args.num_workers, seed=args.seed,
                                         dataset=args.dataset, rank=parallel.rank(), world_size=parallel.world_size(),
                                         **cli.transform_kwargs(args)).get_data_loader(train_split, aug=True)
        val_loader = (cli.episode_loader(args, val_split, args.val_n_way, args.val_n_episode, flag='val_n_way',
                                         n_query=args.val_n_query) if args.val == 'meta' else None)
        model = FRN(backbone=args.model, is_pretraining=True, num_cat=args.num_classes, image_size=args.image_size)
        log(f'train: {len(train_split)} images of {train_split.n_classes} classes, {len(train_loader)} batches per epoch'
            f' | val: {f"{val_split.n_classes} classes" if val_split else "none (--val last)"} | run folder {run_dir}')
        train(args, model, train_loader, pretrain_step, val_loader, (args.val_n_way, args.n_shot, args.val_n_query),
              run_dir, log)


if __name__ == '__main__':
    main()
