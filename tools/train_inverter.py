"""Train a decoder from a frozen FRN's feature maps back to images (feature inversion, as in the paper's figures).

    python tools/train_inverter.py --model_path results/.../best_model.pdparams --data_path DATA \
        --out results/tinyimagenet32_84/inverter [--epoch 3] [--images_per_epoch 6400] [--batch_size 32] \
        [--lr 2e-3] [--val_images 256] [--threads 2] [--seed 0] [--resume]

The backbone of --model_path runs in eval mode and is never updated; the decoder of
deploy/inverter.py learns map -> image with Adam on an L1 loss in the model's normalised image
space, the learning rate falling along a cosine over all steps (paddle.optimizer.lr). The
images are the --split's (default train), fed with the model's own eval preprocessing
(preprocess.json beside the checkpoint). Each epoch draws --images_per_epoch images from a
permutation seeded by (--seed, epoch) and ends with the L1 on the first --val_images images of
the val split, beside the L1 of the best constant image (each image's mean colour) for scale.

The --out folder gets:
  inverter.pdparams   the decoder and its record (what tools/visualize.py --inverter checks), after every epoch
  inverter.pdopt      decoder, optimizer, schedule and epoch: --resume continues after the last finished epoch
  output.log          the command, the settings and the losses
  run.lock            while it runs: one run per --out (engine/runlock.py); a second one stops at once
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import cli  # noqa: E402  (after the sys.path line)
from runtime.command import add_old_spelling, cli_main, command_line, new_parser  # noqa: E402
from runtime.device import default_threads  # noqa: E402
from utils import FRNError  # noqa: E402

CHECKPOINT, STATE, LOG = 'inverter.pdparams', 'inverter.pdopt', 'output.log'


def parse_args(argv=None):
    from network import BACKBONES
    parser = new_parser(__doc__.split('\n')[0])
    parser.add_argument('--model_path', required=True, help='the FRN checkpoint (.pdparams) whose maps are inverted')
    parser.add_argument('--model', choices=list(BACKBONES), default=None,
                        help='backbone (default: read from the checkpoint)')
    parser.add_argument('--data_path', required=True,
                        help='dataset folder (mini-ImageNet format or class folders, as for meta_train.py)')
    parser.add_argument('--split', default='train', choices=('train', 'val'), help='split to train the decoder on')
    parser.add_argument('--image_size', type=int, default=None,
                        help="input side in pixels (default: the model's, from the preprocess.json beside it)")
    parser.add_argument('--out', required=True, help='folder for inverter.pdparams, inverter.pdopt and output.log')
    epoch = parser.add_argument('--epoch', type=int, default=3, help='number of epochs')
    add_old_spelling(parser, '--epochs', epoch)
    parser.add_argument('--images_per_epoch', type=int, default=6400,
                        help='training images drawn per epoch (0: the whole split)')
    parser.add_argument('--batch_size', type=int, default=32, help='images per step')
    parser.add_argument('--lr', type=float, default=2e-3, help='initial Adam learning rate (cosine decay to 0)')
    parser.add_argument('--val_images', type=int, default=256,
                        help='val-split images for the end-of-epoch L1 (0: none)')
    parser.add_argument('--print_freq', type=int, default=20, help='log the loss every this many steps')
    parser.add_argument('--resume', action='store_true', help=f'continue the run in --out from its {STATE}')
    parser.add_argument('--overwrite', action='store_true', help=f'start afresh in an --out that holds a {CHECKPOINT}')
    parser.add_argument('--seed', type=int, default=0, help='seed for the decoder and the image order')
    parser.add_argument('--num_workers', type=int, default=0, help='DataLoader worker processes (0: main process)')
    parser.add_argument('--threads', type=int, default=min(2, default_threads()), help='CPU math threads')
    parser.add_argument('--gpu', action='store_true', help='use the GPU when this PaddlePaddle build has CUDA')
    args = parser.parse_args(argv)
    for name in ('epoch', 'batch_size', 'threads', 'print_freq'):
        if getattr(args, name) < 1:
            raise FRNError(f'--{name} must be at least 1, not {getattr(args, name)}')
    for name in ('images_per_epoch', 'val_images', 'num_workers'):
        if getattr(args, name) < 0:
            raise FRNError(f'--{name} must be 0 or more, not {getattr(args, name)}')
    if args.batch_size < 2:
        raise FRNError(f'--batch_size must be at least 2 (the decoder\'s BatchNorm needs a batch), '
                       f'not {args.batch_size}')
    if args.lr <= 0:
        raise FRNError(f'--lr must be positive, not {args.lr}')
    if args.resume and args.overwrite:
        raise FRNError('--resume and --overwrite contradict each other; give one of them')
    cli.check_file('--model_path', args.model_path, 'give the .pdparams of a trained FRN (e.g. best_model.pdparams)')
    if not os.path.isdir(args.data_path):
        raise FRNError(f'--data_path {args.data_path!r} is not a folder; point it at the dataset folder')
    if os.path.isfile(args.out):
        raise FRNError(f'--out {args.out!r} is a file; give a folder')
    return args


def check_out(args):
    """What --out holds against --resume / --overwrite; called under the folder's lock, so no other run changes it."""
    has_run = os.path.isfile(os.path.join(args.out, CHECKPOINT))
    if args.resume and not os.path.isfile(os.path.join(args.out, STATE)):
        raise FRNError(f'--resume: {os.path.join(args.out, STATE)!r} does not exist; drop --resume to start afresh')
    if has_run and not (args.resume or args.overwrite):
        raise FRNError(f'--out {args.out!r} already holds {CHECKPOINT}: add --resume to continue it or '
                       f'--overwrite to start again (which deletes it once the new run has passed its checks)')


class EpochBatches:
    """Per epoch, `per_epoch` positions of a permutation seeded by (seed, epoch), in batches (the last dropped)."""

    def __init__(self, n_items, batch_size, per_epoch, seed):
        self.n_items, self.batch_size, self.seed, self.epoch = n_items, batch_size, seed, 0
        self.per_epoch = min(per_epoch or n_items, n_items)
        if self.per_epoch < batch_size:
            raise FRNError(f'--batch_size {batch_size} is more than the {self.per_epoch} images per epoch; lower it')

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return self.per_epoch // self.batch_size

    def __iter__(self):
        import numpy as np
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n_items)
        for b in range(len(self)):
            yield [int(i) for i in order[b * self.batch_size:(b + 1) * self.batch_size]]


def validation_l1(features, model, loader):
    """(decoder L1, L1 of each image's mean colour) over the loader's images, in the normalised space."""
    import paddle
    from deploy.inverter import loss_fn
    model.eval()
    total = flat = count = 0.0
    with paddle.no_grad():
        for images, _ in loader:
            maps = features.model.get_feature_map(images)
            n = images.shape[0]
            total += loss_fn(model(maps), images).item() * n
            flat += loss_fn(paddle.mean(images, axis=[2, 3], keepdim=True).expand_as(images), images).item() * n
            count += n
    model.train()
    return total / count, flat / count


def read_resume_state(path, record, steps):
    """inverter.pdopt, checked against this run: one line for a truncated, foreign or other run's file."""
    from engine.trainer import read_state_file
    state = read_state_file(path, fix='start again with --overwrite')
    if not isinstance(state, dict) or not all(k in state for k in ('model', 'optimizer', 'scheduler', 'epoch',
                                                                   'steps', 'record')):
        raise FRNError(f'--resume: {path!r} is not a state written by tools/train_inverter.py; start again with '
                       f'--overwrite')
    if state['record'].get('probe') != record['probe'] or state['steps'] != steps:
        raise FRNError(f'--resume: {path!r} was trained on another model or with another --epoch / '
                       f'--images_per_epoch / --batch_size; give the same flags, or --overwrite')
    return state


@cli_main
def main(argv=None):
    args = parse_args(argv)
    from engine.runlock import RunLock
    # one run per --out (engine/runlock.py, as for the training scripts): a second one stops at once
    with RunLock(args.out, command_line(), flag='--out').acquire() as lock:
        check_out(args)
        train_decoder(args, lock)


def train_decoder(args, lock):
    log = cli.start(os.path.join(args.out, LOG), vars(args), args.threads, args.gpu, args.seed,
                    [f'num_workers {args.num_workers} (--num_workers)'])
    for note in lock.notes:
        log(note)
    import numpy as np
    import paddle
    from data.dataset import SimpleDataset
    from data.datamgr import EpochLoader
    from data.filelist import read_split
    from data.preprocess import describe, eval_transform_from
    from deploy import inverter
    from deploy.export import DygraphFeatures
    from engine.log import progress
    from engine.runlock import clear_earlier_run
    from engine.trainer import load_optimizer_state, optimizer_state
    from utils import atomic_save

    features = DygraphFeatures(args.model_path, args.model, args.image_size, args.gpu, log)
    features.model.eval()  # frozen: BatchNorm uses its running statistics and nothing is updated
    for p in features.model.parameters():
        p.stop_gradient = True
    transform = eval_transform_from(features.preprocess)
    split = read_split(args.data_path, args.split)
    batches = EpochBatches(len(split), args.batch_size, args.images_per_epoch, args.seed)
    loader = EpochLoader(SimpleDataset(split, transform), batches, args.num_workers)
    val_loader = None
    if args.val_images:
        val = read_split(args.data_path, 'val')
        n_val = min(args.val_images, len(val))
        val_batches = [list(range(s, min(s + args.batch_size, n_val))) for s in range(0, n_val, args.batch_size)]
        val_loader = EpochLoader(SimpleDataset(val, transform), val_batches, args.num_workers)

    record = inverter.record_for(features, inverter.CHANNELS, args.model_path)
    model = inverter.build(record)
    steps = args.epoch * len(batches)
    scheduler = paddle.optimizer.lr.CosineAnnealingDecay(learning_rate=args.lr, T_max=steps)
    optimizer = paddle.optimizer.Adam(learning_rate=scheduler, parameters=model.parameters())
    start_epoch = 0
    state_path = os.path.join(args.out, STATE)
    if args.resume:
        state = read_resume_state(state_path, record, steps)
        model.set_state_dict(state['model'])
        load_optimizer_state(optimizer, model, state['optimizer'])
        scheduler.set_state_dict(state['scheduler'])
        start_epoch = state['epoch'] + 1
    if args.overwrite:  # the checks have passed: only now is the earlier decoder deleted
        for note in clear_earlier_run(args.out, [CHECKPOINT, STATE]):
            log(note)
    log.persist()
    d, side, _ = record['map_shape']
    log(f'model {args.model_path} ({features.backbone}, {features.image_size} px: {d} x {side} x {side} maps), '
        f'frozen in eval mode | preprocessing: {describe(features.preprocess)}')
    log(f'{args.split}: {len(split)} images, {batches.per_epoch} per epoch in {len(batches)} steps of '
        f'{args.batch_size} | decoder channels {list(inverter.CHANNELS)}, '
        f'{sum(int(np.prod(p.shape)) for p in model.parameters())} parameters | out {args.out}'
        + (f' | resumed after epoch {start_epoch - 1}' if args.resume else ''))
    lock.resume_hint = f'; {args.out} keeps every finished epoch: continue with the same command and --resume'
    model.train()
    for epoch in range(start_epoch, args.epoch):
        loader.set_epoch(epoch)
        total, count = 0.0, 0
        for b, (images, _) in enumerate(progress(loader, desc=f'epoch {epoch}', total=len(loader))):
            with paddle.no_grad():
                maps = features.model.get_feature_map(images)  # N, r, d
            loss = inverter.loss_fn(model(maps), images)
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()
            scheduler.step()
            total, count = total + loss.item(), count + 1
            if b % args.print_freq == 0:
                log(f'Epoch {epoch} | Batch {b}/{len(loader)} | L1 {loss.item():.4f}')
        line = f'Epoch {epoch} | train L1 {total / count:.4f} | lr {scheduler.get_lr():.2e}'
        if val_loader is not None:
            val_l1, flat_l1 = validation_l1(features, model, val_loader)
            line += f' | val L1 {val_l1:.4f} (mean-colour image {flat_l1:.4f})'
        log(line)
        record['trained'] = {'epochs': epoch + 1, 'images': (epoch + 1) * len(batches) * args.batch_size,
                             'split': args.split, 'train_l1': total / count}
        # the checkpoint first: killed between the two, a resume redoes this epoch from the state before it
        inverter.save(os.path.join(args.out, CHECKPOINT), model, record)
        atomic_save({'model': model.state_dict(), 'optimizer': optimizer_state(optimizer, model),
                     'scheduler': scheduler.state_dict(), 'epoch': epoch, 'steps': steps, 'record': record},
                    state_path)
    log(f'wrote {os.path.join(args.out, CHECKPOINT)}')


if __name__ == '__main__':
    main()
