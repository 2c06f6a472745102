"""The flags of pretrain.py, meta_train.py and test.py, their checks, the run's settings built from them, and the
start of a run (threads, device, seed, the log header).

Each script builds its parser from the groups below, so a flag has one name, one default and one
help text everywhere. Values are checked before any work starts, then turned into the frozen
settings of engine/config.py, which is all the engine and the scripts' bodies read. The process
set-up and the one-line errors belong to runtime/command.cli_main; the prediction tools' flags
are deploy/prediction_flags.py's.
"""
import datetime
import os

from data.config import DataConfig
from engine.config import (BatchConfig, ComputeConfig, ModelConfig, OptimConfig, RunConfig, TestConfig,
                           TestEpisodesConfig, TrainConfig, ValConfig)
from runtime.command import command_line
from runtime.device import default_threads, gpu_usable
from utils import FRNError

DATASETS = ('mini_imagenet', 'tiered_imagenet', 'cub', 'aircraft', 'cars', 'meta_inat', 'tiered_meta_inat', 'dogs',
            'omniglot', 'custom')


def add_common(parser):
    from network import BACKBONES
    g = parser.add_argument_group('data and model')
    g.add_argument('--dataset', default='mini_imagenet', choices=DATASETS,
                   help='dataset name; it names the checkpoint folder. mini-ImageNet-format folders (images/ plus '
                        'CSVs or JSON file lists) and class-per-folder folders (train/, val/, test/) are detected '
                        'from --data_path')
    g.add_argument('--data_path', required=True, help='dataset folder')
    g.add_argument('--omniglot_split', default='vinyals', choices=('vinyals', 'background'),
                   help="with --dataset omniglot: Vinyals' character split with rotations, or the "
                        "background/evaluation alphabet split")
    g.add_argument('--model', default='ResNet12', choices=list(BACKBONES), help='backbone')
    g.add_argument('--image_size', type=int, default=84, help='input side in pixels')
    g.add_argument('--n_shot', type=int, default=1, help='support images per class in an episode')
    g.add_argument('--n_query', type=int, default=15, help='query images per class in an episode')
    g.add_argument('--train_transform_type', type=int, choices=(0, 1), default=None,
                   help='training crop: 0 RandomResizedCrop(S), 1 RandomCrop(S) with 8 px padding (at 84); default: '
                        'what the official experiments use for --dataset (1 for tiered_imagenet, meta_inat and '
                        'tiered_meta_inat, else 0)')
    g.add_argument('--eval_resize', choices=('shorter', 'square', 'none'), default=None,
                   help="evaluation resize before the centre crop to S: 'shorter' side to S*92/84, 'square' "
                        "S*92/84 x S*92/84, 'none' (images already S x S); default: the official choice for "
                        "--dataset (square for cub crops, aircraft and cars, none for tiered_imagenet and "
                        "(tiered_)meta_inat, shorter for the rest and for a cub folder whose name says raw)")
    g = parser.add_argument_group('run')
    g.add_argument('--seed', type=int, default=0, help='seed for the model, the episodes and the augmentation')
    g.add_argument('--num_workers', type=int, default=None,
                   help='DataLoader worker processes (0 loads in the main process). Default: 0 on a CPU-only run '
                        '(on 2 cores, workers loaded no faster than the main process, as they compete with the '
                        'math threads); min(4, cores) when --gpu finds a CUDA device, so that decoding and '
                        'augmenting a batch does not starve the GPU. The log header says what was chosen and why')
    g.add_argument('--gpu', action='store_true',
                   help='use the GPU when this PaddlePaddle build has CUDA; otherwise warn and use the CPU')
    g.add_argument('--threads', type=int, default=default_threads(), help='CPU math threads')
    g = parser.add_argument_group('speed')
    g.add_argument('--cache_dir', default=None,
                   help='read images from pre-resized uint8 copies in this folder (built on first use, or with '
                        'tools/build_image_cache.py) instead of decoding the files: val/test bit-identical, train '
                        'resized to a shorter side of 128 px (at --image_size 84)')
    g.add_argument('--no_feature_cache', action='store_true',
                   help='evaluate episode by episode, running the backbone on every image of every episode, '
                        'instead of embedding each image once and reusing its feature map')
    g.add_argument('--max_cache_mb', type=float, default=2048,
                   help='memory (MB) for the feature maps of evaluation; beyond it they go to a temporary '
                        'memory-mapped file (test.py: in --cache_dir if given; else the temp folder)')
    return parser


def add_training(parser, lr, epoch, milestones):
    g = parser.add_argument_group('optimisation (the rate decays by --gamma at each of --milestones, stepped per epoch)')
    g.add_argument('--opt', default='sgd', choices=('sgd', 'adam'),
                   help="'sgd': momentum 0.9 with Nesterov; 'adam': Adam (betas 0.9, 0.999, eps 1e-8). Both apply "
                        "--wd as torch.optim does: an L2 term added to the gradient, not decoupled")
    g.add_argument('--lr', type=float, default=lr, help='initial learning rate')
    g.add_argument('--wd', type=float, default=5e-4, help='weight decay')
    g.add_argument('--gamma', type=float, default=0.1, help='learning-rate decay factor at each milestone')
    g.add_argument('--milestones', type=int, nargs='+', default=milestones, help='epochs where the rate decays')
    g.add_argument('--epoch', type=int, default=epoch, help='number of epochs')
    g = parser.add_argument_group('validation and checkpoints')
    g.add_argument('--val', default='meta', choices=('meta', 'last'),
                   help="'meta': validate on val-split episodes and keep the best model; "
                        "'last': no validation, best_model.pdparams is the last epoch's model")
    g.add_argument('--val_n_way', type=int, default=5, help='classes per validation episode')
    g.add_argument('--val_n_episode', type=int, default=600, help='episodes of each validation')
    g.add_argument('--val_n_query', type=int, default=None,
                   help='query images per class in a validation episode (default: --n_query; the official '
                        'fine-grained recipes validate with 16 while training with 15)')
    g.add_argument('--val_freq', type=int, default=1,
                   help='validate after every this many epochs (epochs N, 2N, ... counted from 1, and always after '
                        'the last); best_model.pdparams is the best of those validations')
    g.add_argument('--save_freq', type=int, default=50, help='also keep <epoch>.pdparams every this many epochs')
    g.add_argument('--resume', default=None,
                   help="continue a run: a <epoch>.pdparams or last_model.pdparams of its folder (the .pdopt "
                        "beside it holds the optimizer, schedule, epoch, best accuracy and RNG state), "
                        "or 'auto' for the newest in this run's folder")
    g.add_argument('--overwrite', action='store_true',
                   help="start a new run in a run folder that holds an earlier run's checkpoints: they are "
                        "deleted once the new run has passed all its checks (data, model, --pretrain_path), "
                        "and its output.log is kept as output.<time>.log; without it such a run refuses")
    g.add_argument('--checkpoint_dir', default='./checkpoints', help='root of the run folders')
    g.add_argument('--print_freq', type=int, default=50, help='log the loss every this many batches')
    g.add_argument('--share_batches', action='store_true',
                   help='under paddle.distributed.launch: every process embeds its share of each batch or episode '
                        'and BatchNorm uses the whole batch, so the ranks train as one process would (within float '
                        'rounding); on a CPU, N processes of 1 thread take a step sooner than 1 process of N '
                        'threads. Without it each process trains on batches of its own (docs/performance.md)')
    g.add_argument('--visualdl', action='store_true',
                   help='also log scalars with VisualDL into <run folder>/visualdl (pip install visualdl)')
    return parser


def check_common(args):
    """Clear errors for values argparse cannot judge."""
    for name in ('image_size', 'n_shot', 'n_query', 'threads'):
        if getattr(args, name) < 1:
            raise FRNError(f'--{name} must be at least 1, not {getattr(args, name)}')
    if args.num_workers is not None and args.num_workers < 0:
        raise FRNError(f'--num_workers must be 0 or more, not {args.num_workers}')
    if os.path.isfile(args.data_path):
        raise FRNError(f'--data_path {args.data_path!r} is a file, not a folder; give the dataset folder (the one '
                       f'holding images/ and the CSVs or file lists, or train/, val/ and test/)')
    if not os.path.isdir(args.data_path):
        raise FRNError(f'--data_path {args.data_path!r} does not exist; point it at the dataset folder')
    resolved_transforms(args)


def resolved_transforms(args):
    """(--train_transform_type, --eval_resize), each the dataset's official choice where not given."""
    from data.transforms import official_transforms
    train_type, resize = official_transforms(args.dataset, args.data_path)
    if args.dataset == 'omniglot':
        if args.train_transform_type is not None or args.eval_resize is not None:
            raise FRNError('--train_transform_type and --eval_resize are for natural images; Omniglot has its own '
                           'transform (greyscale, inverted, resized to --image_size): drop them')
        return None, None
    train_type = train_type if args.train_transform_type is None else args.train_transform_type
    resize = resize if args.eval_resize is None else args.eval_resize
    if args.cache_dir and (train_type, resize) != (0, 'shorter'):
        raise FRNError(f'--cache_dir stores images resized for --train_transform_type 0 and --eval_resize shorter, '
                       f'not {train_type} / {resize}; drop --cache_dir')
    return train_type, resize


def check_file(flag, path, fix):
    """A path flag that must name a file: a clear error for a folder or a missing path."""
    if os.path.isdir(path):
        raise FRNError(f'{flag} {path!r} is a folder, not a file; give a .pdparams file inside it, '
                       f'such as {os.path.join(path, "best_model.pdparams")}')
    if not os.path.isfile(path):
        raise FRNError(f'{flag} {path!r} does not exist; {fix}')


def check_n_way(flag, n_way):
    """Episodes need two classes at least: with one, every query is right and the accuracy is 100%."""
    if n_way < 2:
        raise FRNError(f'{flag} must be at least 2, not {n_way}: a {n_way}-way episode has no other class to '
                       f'confuse, so it measures nothing (every query would be right)')


def check_training(args):
    check_common(args)
    for name in ('lr', 'epoch', 'val_n_way', 'val_n_episode', 'val_freq', 'save_freq', 'print_freq'):
        if getattr(args, name) <= 0:
            raise FRNError(f'--{name} must be positive, not {getattr(args, name)}')
    check_n_way('--val_n_way', args.val_n_way)
    if args.val_n_query is not None and args.val_n_query < 1:
        raise FRNError(f'--val_n_query must be at least 1, not {args.val_n_query}')
    if not 0 < args.gamma <= 1:
        raise FRNError(f'--gamma must be in (0, 1], not {args.gamma}')
    if args.wd < 0:
        raise FRNError(f'--wd must be 0 or more, not {args.wd}')
    if sorted(set(args.milestones)) != args.milestones or args.milestones[0] < 1:
        raise FRNError(f'--milestones must be increasing positive epochs, not {" ".join(map(str, args.milestones))}')
    if args.resume not in (None, 'auto'):
        check_file('--resume', args.resume, 'give a <epoch>.pdparams or last_model.pdparams from the run folder, '
                                            'or --resume auto')
    if args.resume is not None and args.overwrite:
        raise FRNError('--resume and --overwrite contradict each other: --resume continues the run in the folder, '
                       '--overwrite deletes its checkpoints and starts again; give one of them')


# --- the checked flags as the run's settings (engine/config.py) ---

def resolve_num_workers(num_workers, gpu):
    """(--num_workers, why): the flag's value when given, else the default for the device this run will use.

    0 on the CPU (measured: on 2 cores, workers load no more images per second than the main
    process, see docs/performance.md, "Data loading workers"); min(4, cores) on a GPU, where the main process
    alone cannot decode and augment batches fast enough.
    """
    if num_workers is not None:
        return num_workers, 'set by --num_workers'
    if gpu and gpu_usable():
        return min(4, default_threads()), 'default on a GPU: min(4, cores), so loading keeps up with the device'
    return 0, 'default on the CPU: workers loaded no faster than the main process here'


def data_config(args):
    train_type, resize = resolved_transforms(args)
    num_workers, why = resolve_num_workers(args.num_workers, args.gpu)
    return DataConfig(dataset=args.dataset, data_path=args.data_path, omniglot_split=args.omniglot_split,
                      image_size=args.image_size, n_shot=args.n_shot, n_query=args.n_query,
                      train_transform_type=train_type, eval_resize=resize, cache_dir=args.cache_dir,
                      num_workers=num_workers, seed=args.seed, num_workers_note=why)


def compute_config(args):
    return ComputeConfig(threads=args.threads, gpu=args.gpu, no_feature_cache=args.no_feature_cache,
                         max_cache_mb=args.max_cache_mb, share_batches=getattr(args, 'share_batches', False))


def training_config(args):
    """The settings of pretrain.py (--method stl_frn) or meta_train.py, from their checked flags."""
    if args.method == 'stl_frn':
        batches = BatchConfig(train_n_way=args.train_n_way, batch_size=args.batch_size, num_classes=args.num_classes)
        pretrain_path = None
    else:
        batches = BatchConfig(train_n_way=args.train_n_way, episodes=args.episodes,
                              train_n_episode=args.train_n_episode)
        pretrain_path = args.pretrain_path
    return TrainConfig(
        data=data_config(args), model=ModelConfig(model=args.model, method=args.method), batches=batches,
        optim=OptimConfig(opt=args.opt, lr=args.lr, wd=args.wd, gamma=args.gamma, milestones=tuple(args.milestones),
                          epoch=args.epoch),
        val=ValConfig(val=args.val, val_n_way=args.val_n_way, val_n_episode=args.val_n_episode,
                      val_n_query=args.n_query if args.val_n_query is None else args.val_n_query,
                      val_freq=args.val_freq),
        run=RunConfig(checkpoint_dir=args.checkpoint_dir, resume=args.resume, overwrite=args.overwrite,
                      save_freq=args.save_freq, print_freq=args.print_freq, visualdl=args.visualdl,
                      pretrain_path=pretrain_path),
        compute=compute_config(args))


def testing_config(args):
    """The settings of test.py, from its checked flags."""
    return TestConfig(
        data=data_config(args), model=ModelConfig(model=args.model, method=args.method),
        test=TestEpisodesConfig(model_path=args.model_path, test_n_way=args.test_n_way,
                                test_task_nums=args.test_task_nums, test_n_episode=args.test_n_episode,
                                results_dir=args.results_dir, preprocess=args.preprocess, classifier=args.classifier),
        compute=compute_config(args))


# --- the start of a run ---

def start(log_path, flags, threads, gpu, seed, notes=()):
    """Threads, device, seed and (under paddle.distributed.launch) the process group; returns the run's log.

    The log opens with the command, `flags` (every setting by its flag's name), Paddle, the device,
    the threads and `notes`. Only rank 0 writes the log file; other ranks print to their own console
    (the launcher's workerlog.N). The file is written from `log.persist()` on, which the script calls
    once its inputs are checked: until then the lines are kept in memory.
    """
    import paddle

    from engine import parallel
    from engine.log import Logger
    from runtime.device import select_device, set_threads
    from runtime.process import catch_sigterm, mkl_note
    threads = set_threads(threads)
    select_device(gpu)
    catch_sigterm()  # again: importing paddle installed its own handler
    rank, world = parallel.init()
    paddle.seed(seed)
    log = Logger(log_path if rank == 0 else None, deferred=True)
    log(f'==== {datetime.datetime.now().isoformat(timespec="seconds")} {command_line()}')
    log('args: ' + ', '.join(f'{k}={v}' for k, v in sorted(flags.items())))
    log(f'paddle {paddle.__version__} | device {paddle.device.get_device()} | threads {threads}'
        + ''.join(f' | {note}' for note in notes) + mkl_note()
        + (f' | rank {rank} of {world} processes' if world > 1 else ''))
    return log


def start_run(config, log_path):
    """`start` for the settings of a training or test run (engine/config.py), with its loading and transforms."""
    from data.transforms import official_transforms
    data = config.data
    log = start(log_path, config.as_flags(), config.compute.threads, config.compute.gpu, data.seed,
                [f'num_workers {data.num_workers} ({data.num_workers_note})'])
    if data.eval_resize:
        crop = {0: 'RandomResizedCrop', 1: 'RandomCrop with padding'}[data.train_transform_type]
        log(f'transforms: train type {data.train_transform_type} ({crop}), eval resize {data.eval_resize} '
            f'(--train_transform_type / --eval_resize; the official choice for --dataset {data.dataset} is '
            f'{"/".join(map(str, official_transforms(data.dataset, data.data_path)))})')
    return log
