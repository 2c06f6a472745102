"""Episodic training: FRN fine-tuning from a pretrained model (--method meta_frn), or the ProtoNet baseline (--method meta_proto).

    python meta_train.py --dataset mini_imagenet --data_path DATA --method meta_frn --lr 1e-3 --gamma 1e-1 \
        --epoch 150 --train_n_episode 1000 --val_n_episode 600 --milestones 70 120 --image_size 84 \
        --model ResNet12 --train_n_way 20 --val_n_way 5 --n_shot 5 --n_query 15 --gpu \
        --pretrain_path ./checkpoints/mini_imagenet/ResNet12_stl_frn_pretrain/best_model.pdparams

Each epoch has --train_n_episode random episodes of --train_n_way-way --n_shot-shot --n_query-query,
or, with --episodes pass, the official code's epoch: one pass over the training images without
replacement (data/dataset.PassEpisodeSampler). meta_frn: the loss is the NLL of the queries plus the auxiliary loss `auxrank` that pushes
the classes' supports apart; r = [alpha, beta] is trained. meta_proto: the official FRN
code's ProtoNet (methods/protonet.Proto), the NLL of the queries alone. Writes
./checkpoints/<dataset>/<model>_<method>_<way>way_<shot>shot_metatrain/.
"""
import os

import cli
from runtime.command import cli_main, command_line, new_parser
from utils import FRNError


def parse_args(argv=None):
    parser = new_parser(__doc__.split('\n\n')[0])
    cli.add_common(parser)
    cli.add_training(parser, lr=1e-3, epoch=150, milestones=[70, 120])
    g = parser.add_argument_group('meta-training')
    g.add_argument('--method', default='meta_frn', choices=['meta_frn', 'meta_proto'],
                   help="'meta_frn': FRN with the auxiliary loss; 'meta_proto': the official ProtoNet baseline "
                        "(same optimizer and schedule, no auxiliary loss)")
    g.add_argument('--train_n_way', type=int, default=20, help='classes per training episode')
    g.add_argument('--episodes', default='random', choices=['random', 'pass'],
                   help="'random': --train_n_episode independent random episodes per epoch; 'pass': the official "
                        "FRN sampler, an epoch is one pass over the training images without replacement (classes "
                        "drawn in proportion to the images they have left; the number of episodes follows from "
                        "the class sizes and is logged each epoch; --train_n_episode is not used)")
    g.add_argument('--train_n_episode', type=int, default=1000,
                   help='with --episodes random: training episodes per epoch; under paddle.distributed.launch the '
                        'total over all processes, each taking its share (one episode per process per step)')
    g.add_argument('--pretrain_path', default=None,
                   help='pretrained weights to start from (best_model.pdparams of pretrain.py, or a converted '
                        'official checkpoint); without it, training starts from a random initialisation')
    args = parser.parse_args(argv)
    cli.check_training(args)
    if args.train_n_way < 2 or args.train_n_episode < 1:
        raise FRNError('--train_n_way must be at least 2 and --train_n_episode at least 1')
    if args.pretrain_path:
        cli.check_file('--pretrain_path', args.pretrain_path, 'pretrain first (pretrain.py writes '
                       './checkpoints/<dataset>/<model>_stl_frn_pretrain/best_model.pdparams)')
    return args


@cli_main
def main(argv=None):
    config = cli.training_config(parse_args(argv))
    # after cli_main's process set-up: from here on paddle is imported (runtime/process.py says why)
    from data.loaders import episode_loader, read_splits
    from engine import parallel
    from engine.runlock import claim_run_dir
    from engine.trainer import train
    from methods.checkpoint import load_model
    from methods.FRN import FRN
    from methods.protonet import Proto
    from methods.steps import meta_frn_step, meta_proto_step
    data, batches, val, run_dir = config.data, config.batches, config.val, config.run_dir()
    way, shot, query = batches.train_n_way, data.n_shot, data.n_query
    with claim_run_dir(run_dir, config.run.resume, config.run.overwrite, command_line()) as lock:  # before any I/O
        train_split, val_split = read_splits(data, 'train', 'val') if val.val == 'meta' else \
            (*read_splits(data, 'train'), None)
        log = cli.start_run(config, os.path.join(run_dir, 'output.log'))
        for note in lock.notes:
            log(note)
        if config.compute.share_batches:
            images = way * (shot + query)
            parallel.start_sharing(images, 'episode', f'the {images} images of a {way}-way {shot}-shot {query}-query '
                                   f'episode cannot be split equally among {parallel.world_size()} processes; change '
                                   f'--train_n_way, --n_shot or --n_query, or the number of processes', log)
        rank, ranks = parallel.data_rank()
        if batches.episodes == 'random' and batches.train_n_episode % ranks:
            raise FRNError(f'--train_n_episode {batches.train_n_episode} must be divisible by the '
                           f'{ranks} processes, so that every process takes the same number of steps')
        train_loader = episode_loader(data, train_split, way, batches.train_n_episode, aug=True, rank=rank,
                                      world_size=ranks, flag='train_n_way', episodes=batches.episodes)
        val_loader = (episode_loader(data, val_split, val.val_n_way, val.val_n_episode, flag='val_n_way',
                                     n_query=val.val_n_query) if val.val == 'meta' else None)
        if config.model.method == 'meta_frn':
            model = FRN(way=way, shots=[shot, query], backbone=config.model.model, image_size=data.image_size)
            step = meta_frn_step(way, shot, query)
        else:
            model = Proto(way=way, shots=[shot, query], backbone=config.model.model, image_size=data.image_size)
            step = meta_proto_step(way, shot, query)
        pretrain_path = config.run.pretrain_path
        if pretrain_path:
            dropped, missing = load_model(model, pretrain_path)
            log(f'loaded {pretrain_path}' + (f'; dropped {", ".join(dropped)}' if dropped else '') +
                (f'; kept the initial {", ".join(missing)}' if missing else ''))
        else:
            log('warning: no --pretrain_path; meta-training starts from a random initialisation')
        per_epoch = (f'{batches.train_n_episode} episodes per epoch' if batches.episodes == 'random' else
                     'one pass over its images per epoch (--episodes pass)')
        about_val = (f'{val_split.n_classes} classes, {val.val_n_way}-way {shot}-shot {val.val_n_query}-query, '
                     f'every {val.val_freq} epoch(s)' if val_split else 'none (--val last)')
        log(f'train: {train_split.n_classes} classes, {per_epoch} | val: {about_val} | run folder {run_dir}')
        train(config, model, train_loader, step, val_loader, log)


if __name__ == '__main__':
    main()
