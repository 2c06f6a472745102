"""FRN pretraining (--method stl_frn): every base class at once, each with a learnable class matrix.

    python pretrain.py --dataset mini_imagenet --data_path DATA --method stl_frn --lr 1e-1 --gamma 1e-1 \
        --epoch 350 --milestones 200 300 --batch_size 512 --val_n_episode 600 --image_size 84 \
        --model ResNet12 --n_shot 1 --n_query 15 --gpu

Each image's feature map is reconstructed from every class matrix (FRN's head with the
class matrices as supports); the loss is the NLL over all classes, and r = [alpha, beta]
stays frozen. Writes ./checkpoints/<dataset>/<model>_stl_frn_pretrain/.
"""
import os

import cli
from runtime.command import cli_main, command_line, new_parser
from utils import FRNError


def parse_args(argv=None):
    parser = new_parser(__doc__.split('\n\n')[0])
    cli.add_common(parser)
    cli.add_training(parser, lr=0.05, epoch=150, milestones=[80, 120])
    g = parser.add_argument_group('pretraining')
    g.add_argument('--method', default='stl_frn', choices=['stl_frn'], help='training method')
    g.add_argument('--batch_size', type=int, default=128,
                   help='images per batch; under paddle.distributed.launch this is the global batch, split '
                        'evenly among the processes')
    g.add_argument('--num_classes', type=int, default=None,
                   help='base classes (default: the number of classes in the training data; a different number '
                        'given here is overridden by the data, with a warning)')
    g.add_argument('--train_n_way', type=int, default=20,
                   help='not used by pretraining; accepted so the meta-training command line can be reused')
    args = parser.parse_args(argv)
    cli.check_training(args)
    if args.batch_size < 2:
        raise FRNError(f'--batch_size must be at least 2 (BatchNorm needs a batch), not {args.batch_size}')
    return args


@cli_main
def main(argv=None):
    config = cli.training_config(parse_args(argv))
    # after cli_main's process set-up: from here on paddle is imported (runtime/process.py says why)
    from data.loaders import episode_loader, image_batch_loader, read_splits
    from engine import parallel
    from engine.runlock import claim_run_dir
    from engine.trainer import train
    from methods.FRN import FRN
    from methods.steps import pretrain_step
    data, run_dir = config.data, config.run_dir()
    with claim_run_dir(run_dir, config.run.resume, config.run.overwrite, command_line()) as lock:  # before any I/O
        train_split, val_split = read_splits(data, 'train', 'val') if config.val.val == 'meta' else \
            (*read_splits(data, 'train'), None)
        log = cli.start_run(config, os.path.join(run_dir, 'output.log'))
        for note in lock.notes:
            log(note)
        if train_split.n_classes < 2:
            raise FRNError(f'{train_split.source} has {train_split.n_classes} class; pretraining classifies '
                           f'among the training classes, so it needs at least 2 (with one, the loss is 0 and the '
                           f'accuracy 100% from the start)')
        if config.batches.num_classes is None:
            config = config.with_num_classes(train_split.n_classes)
        elif config.batches.num_classes != train_split.n_classes:
            log(f'warning: --num_classes {config.batches.num_classes} disagrees with the {train_split.n_classes} '
                f'classes of {train_split.source}; using {train_split.n_classes}')
            config = config.with_num_classes(train_split.n_classes)
        if config.compute.share_batches:
            size, ranks = config.batches.batch_size, parallel.world_size()
            parallel.start_sharing(size, 'batch', f'--batch_size {size} cannot be split equally among {ranks} '
                                   f'processes; choose a multiple of {ranks}', log)
        train_loader = image_batch_loader(data, train_split, config.batches.batch_size, *parallel.data_rank())
        val_loader = (episode_loader(data, val_split, config.val.val_n_way, config.val.val_n_episode,
                                     flag='val_n_way', n_query=config.val.val_n_query)
                      if config.val.val == 'meta' else None)
        model = FRN(backbone=config.model.model, is_pretraining=True, num_cat=config.batches.num_classes,
                    image_size=data.image_size)
        log(f'train: {len(train_split)} images of {train_split.n_classes} classes, {len(train_loader)} batches per epoch'
            f' | val: {f"{val_split.n_classes} classes" if val_split else "none (--val last)"} | run folder {run_dir}')
        train(config, model, train_loader, pretrain_step, val_loader, log)


if __name__ == '__main__':
    main()
