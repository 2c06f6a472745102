"""What the entry points share: the process set-up, the flags and their checks, and start-up.

Importing this module prepares the process before paddle does any work: it quiets two
warnings of paddle that are not the user's concern, and on AMD CPUs it tells MKL to use
its AVX2 kernels. So every entry point imports `cli` before the library. Each script
builds its parser from the groups below, so a flag has one name, one default and one
help text everywhere; values are checked before any work starts.
"""
import argparse
import datetime
import functools
import os
import signal
import sys
import threading
import warnings

from utils import FRNError, os_error_cause

# `import paddle` warns about a missing C++ compiler cache, which only matters for building
# custom operators, and BatchNorm warns on every training forward that it tracks running
# statistics, which is what we want.
warnings.filterwarnings('ignore', message='No ccache found', category=UserWarning)
warnings.filterwarnings('ignore', message='When training, we now always track global mean', category=UserWarning)


def amd_cpu_with_avx2():
    """True on Linux with an AMD CPU that has AVX2 and FMA (read from /proc/cpuinfo)."""
    try:
        with open('/proc/cpuinfo') as f:
            info = f.read(65536)
    except OSError:
        return False
    flags = next((line.split(':', 1)[1].split() for line in info.splitlines() if line.startswith('flags')), [])
    return 'AuthenticAMD' in info and 'avx2' in flags and 'fma' in flags


# The MKL inside Paddle's CPU wheel picks its slow generic kernels on AMD CPUs unless told that the
# CPU has AVX2 (the speed-up is in benchmarks/RESULTS.md). MKL reads this when it first runs, so it is
# set at import, before paddle does any math. Only the summation order changes. A value the user set
# wins; FRN_MKL_AVX2=0 turns this off.
MKL_AVX2_SET_HERE = ('MKL_DEBUG_CPU_TYPE' not in os.environ and os.environ.get('FRN_MKL_AVX2', '1') != '0'
                     and amd_cpu_with_avx2())
if MKL_AVX2_SET_HERE:
    os.environ['MKL_DEBUG_CPU_TYPE'] = '5'


def keep_freed_memory():
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it to the kernel.

    A training step allocates and frees the same large buffers (activations of hundreds of MB)
    every time; glibc serves each from a fresh mmap and unmaps it when freed, so every step
    faults its working set in again, page by page. Serving them from the heap and never
    trimming it makes later steps reuse the pages; the resident size stays at the peak of a
    step. Only the memory layout changes, never a number. glibc only (mallopt); FRN_MALLOC_KEEP=0
    turns it off. Returns whether it was applied.
    """
    if os.environ.get('FRN_MALLOC_KEEP', '1') == '0' or not sys.platform.startswith('linux'):
        return False
    import ctypes
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # present in glibc only
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # from glibc's malloc.h
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))


MALLOC_KEPT = keep_freed_memory()


def mkl_note():
    """How MKL is set up, for the log header."""
    note = ' | freed memory kept for reuse (FRN_MALLOC_KEEP=0 turns it off)' if MALLOC_KEPT else ''
    if MKL_AVX2_SET_HERE:
        return note + ' | MKL AVX2 kernels on this AMD CPU (MKL_DEBUG_CPU_TYPE=5; FRN_MKL_AVX2=0 turns it off)'
    if 'MKL_DEBUG_CPU_TYPE' in os.environ:
        return note + f' | MKL_DEBUG_CPU_TYPE={os.environ["MKL_DEBUG_CPU_TYPE"]} (set by you)'
    return note


class Terminated(BaseException):
    """SIGTERM (sent by timeout, Docker, Kubernetes, Slurm), raised in the main thread like KeyboardInterrupt."""


def _raise_terminated(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the clean-up short
    raise Terminated()


def catch_sigterm():
    """Turn SIGTERM into `Terminated`; called again after paddle is imported, which installs its own handler."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


# what an interrupted command tells the user to do next; training scripts set it once their run folder is known
interrupt_hint = ''


def cli_main(main):
    """Run `main()` as a command: a user error or a file system error becomes one line on stderr, exit code 2.

    Ctrl-C exits with 130 and SIGTERM with 143, after the atomic writes have removed their
    temp files; the message says how to go on.
    """
    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        catch_sigterm()
        try:
            return main(*args, **kwargs)
        except FRNError as err:
            print(f'error: {err}', file=sys.stderr)
            sys.exit(2)
        except OSError as err:  # permission denied, no space left, read-only file system, ...
            where = f'{err.filename!r}: ' if err.filename else ''
            print(f'error: {where}{os_error_cause(err)}', file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print('interrupted' + interrupt_hint, file=sys.stderr)
            sys.exit(130)
        except Terminated:
            print('terminated (SIGTERM)' + interrupt_hint, file=sys.stderr)
            sys.exit(143)
    return wrapper


def set_threads(n):
    """Set the CPU math threads. `import paddle` pins OMP_NUM_THREADS=1 when it is unset."""
    import paddle
    n = max(1, int(n))
    paddle.base.core.set_num_threads(n)
    return n


def default_threads():
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)


def select_device(gpu):
    """'gpu' when asked for and this PaddlePaddle build can use CUDA, else 'cpu' (with one warning)."""
    import paddle
    if gpu:
        if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
            return paddle.device.set_device('gpu')
        print('warning: --gpu was given, but this PaddlePaddle build has no CUDA device; running on the CPU. '
              'Install paddlepaddle-gpu (see README) to use a GPU.', file=sys.stderr)
    return paddle.device.set_device('cpu')


def gpu_usable():
    """What select_device(True) would choose: a CUDA build with a visible device."""
    import paddle
    return paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0


def resolve_num_workers(args):
    """Fill in --num_workers when it was not given, for the device this run will use; returns the reason.

    0 on the CPU (measured: on 2 cores, workers load no more images per second than the main
    process, see README "Data loading workers"); min(4, cores) on a GPU, where the main process
    alone cannot decode and augment batches fast enough.
    """
    if getattr(args, 'num_workers_note', None):
        return args.num_workers_note
    if args.num_workers is not None:
        note = 'set by --num_workers'
    elif args.gpu and gpu_usable():
        args.num_workers = min(4, default_threads())
        note = 'default on a GPU: min(4, cores), so loading keeps up with the device'
    else:
        args.num_workers = 0
        note = 'default on the CPU: workers loaded no faster than the main process here'
    args.num_workers_note = note
    return note


DATASETS = ('mini_imagenet', 'tiered_imagenet', 'cub', 'aircraft', 'cars', 'meta_inat', 'tiered_meta_inat', 'dogs',
            'omniglot', 'custom')
MODELS = ('ResNet12', 'Conv4')


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error that points at --help."""

    def error(self, message):
        self.exit(2, f'error: {message} (see {self.prog} --help)\n')


def new_parser(description):
    return Parser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def add_common(parser):
    g = parser.add_argument_group('data and model')
    g.add_argument('--dataset', default='mini_imagenet', choices=DATASETS,
                   help='dataset name; it names the checkpoint folder. mini-ImageNet-format folders (images/ plus '
                        'CSVs or JSON file lists) and class-per-folder folders (train/, val/, test/) are detected '
                        'from --data_path')
    g.add_argument('--data_path', required=True, help='dataset folder')
    g.add_argument('--omniglot_split', default='vinyals', choices=('vinyals', 'background'),
                   help="with --dataset omniglot: Vinyals' character split with rotations, or the "
                        "background/evaluation alphabet split")
    g.add_argument('--model', default='ResNet12', choices=MODELS, help='backbone')
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
    resolve_num_workers(args)
    if not os.path.isdir(args.data_path):
        raise FRNError(f'--data_path {args.data_path!r} does not exist; point it at the dataset folder')
    resolve_transforms(args)


def resolve_transforms(args):
    """Fill --train_transform_type and --eval_resize with the dataset's official choice where not given."""
    from data.transforms import official_transforms
    train_type, resize = official_transforms(args.dataset, args.data_path)
    if args.dataset == 'omniglot':
        if args.train_transform_type is not None or args.eval_resize is not None:
            raise FRNError('--train_transform_type and --eval_resize are for natural images; Omniglot has its own '
                           'transform (greyscale, inverted, resized to --image_size): drop them')
        return
    if args.train_transform_type is None:
        args.train_transform_type = train_type
    if args.eval_resize is None:
        args.eval_resize = resize
    if getattr(args, 'cache_dir', None) and (args.train_transform_type, args.eval_resize) != (0, 'shorter'):
        raise FRNError(f'--cache_dir stores images resized for --train_transform_type 0 and --eval_resize shorter, '
                       f'not {args.train_transform_type} / {args.eval_resize}; drop --cache_dir')


def transform_kwargs(args):
    """The resolved transform choice, as the data managers take it."""
    if args.dataset == 'omniglot':
        return {}
    return {'train_type': args.train_transform_type, 'eval_resize': args.eval_resize}


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
    if args.val_n_query is None:
        args.val_n_query = args.n_query
    elif args.val_n_query < 1:
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


def command_line():
    return ' '.join([os.path.basename(sys.executable)] + sys.argv)


def start(args, log_path):
    """Threads, device, seed and (under paddle.distributed.launch) the process group.

    The log opens with the command, every argument, Paddle and the device. Only rank 0
    writes the log file; other ranks print to their own console (the launcher's workerlog.N).
    The file is written from `log.persist()` on, which the script calls once its inputs are
    checked: until then the lines are kept in memory.
    """
    import paddle

    from engine import parallel
    from engine.log import Logger
    threads = set_threads(args.threads)
    select_device(args.gpu)
    catch_sigterm()
    rank, world = parallel.init()
    paddle.seed(args.seed)
    log = Logger(log_path if rank == 0 else None, deferred=True)
    log(f'==== {datetime.datetime.now().isoformat(timespec="seconds")} {command_line()}')
    log('args: ' + ', '.join(f'{k}={v}' for k, v in sorted(vars(args).items())))
    log(f'paddle {paddle.__version__} | device {paddle.device.get_device()} | threads {threads}'
        + f' | num_workers {args.num_workers} ({resolve_num_workers(args)})' + mkl_note()
        + (f' | rank {rank} of {world} processes' if world > 1 else ''))
    if getattr(args, 'eval_resize', None):
        crop = {0: 'RandomResizedCrop', 1: 'RandomCrop with padding'}[args.train_transform_type]
        log(f'transforms: train type {args.train_transform_type} ({crop}), eval resize {args.eval_resize} '
            f'(--train_transform_type / --eval_resize; the official choice for --dataset {args.dataset} is '
            f'{"/".join(map(str, _official(args)))})')
    return log


def _official(args):
    from data.transforms import official_transforms
    return official_transforms(args.dataset, args.data_path)


def read_splits(args, *splits):
    """The named splits; with --cache_dir, served from the image cache (built on first use)."""
    if args.dataset == 'omniglot':
        from data.omniglot import read_omniglot
        if args.cache_dir:
            print('note: Omniglot is decoded into memory already; --cache_dir is not used')
        return [read_omniglot(args.data_path, split, scheme=args.omniglot_split) for split in splits]
    from data.filelist import read_split
    lists = [read_split(args.data_path, split) for split in splits]
    if args.cache_dir:
        from data.image_cache import open_cache
        lists = [open_cache(split_list, args.cache_dir, split, args.image_size, num_workers=args.num_workers)
                 for split_list, split in zip(lists, splits)]
    return lists


def episode_loader(args, split, n_way, n_episode, aug=False, shared=False, flag=None, n_query=None,
                   episodes='random'):
    """Episodes of `n_way`-way args.n_shot-shot `n_query`-query (default args.n_query) from `split`.

    shared=True splits the episodes among the ranks of a distributed run (each rank gets its own).
    flag: the n-way flag, e.g. 'val_n_way'; it names the split, for the error when the split is too small.
    episodes: 'random' (n_episode episodes per epoch) or 'pass' (the official training sampler).
    """
    from data.datamgr import SetDataManager
    from engine import parallel
    if flag and n_way > split.n_classes:
        raise FRNError(f'--{flag} {n_way} asks for {n_way}-way episodes of the {flag.split("_")[0]} split, which has '
                       f'only {split.n_classes} classes ({split.source}); lower --{flag} to {split.n_classes} or less')
    rank, world = (parallel.rank(), parallel.world_size()) if shared else (0, 1)
    return SetDataManager(args.image_size, n_way, args.n_shot, args.n_query if n_query is None else n_query,
                          n_episode, num_workers=args.num_workers, seed=args.seed, dataset=args.dataset, rank=rank,
                          world_size=world, episodes=episodes, **transform_kwargs(args)).get_data_loader(split, aug=aug)


def claim_run_dir(args, folder):
    """Lock the run folder (rank 0 of a run), clear an interrupted run's temp files, refuse to mix runs.

    An --overwrite run deletes the earlier run's checkpoints later, in engine/trainer.train, once all
    its checks have passed. Returns the held RunLock; its `notes` go into the log. Use it as a context manager.
    """
    global interrupt_hint
    from engine import runlock
    lock = runlock.RunLock(folder, command_line())
    if int(os.environ.get('PADDLE_TRAINER_ID', '0')) != 0:  # the ranks of one run share rank 0's lock
        return lock
    lock.acquire()
    try:
        runlock.refuse_earlier_run(lock.folder, args.resume, args.overwrite)
    except BaseException:
        lock.release()
        raise
    interrupt_hint = (f'; {folder} keeps every finished epoch: continue with the same command and '
                      f'--resume auto')
    return lock


def run_dir(args, kind):
    """./checkpoints/<dataset>/<model>_<method>_pretrain or ..._<way>way_<shot>shot_metatrain."""
    name = (f'{args.model}_{args.method}_pretrain' if kind == 'pretrain' else
            f'{args.model}_{args.method}_{args.train_n_way}way_{args.n_shot}shot_metatrain')
    return os.path.join(args.checkpoint_dir, args.dataset, name)


# --- prediction on image folders (tools/infer.py, tools/visualize.py) ---

def add_prediction_flags(parser):
    """--support, --query and the model flags of tools/infer.py and tools/visualize.py."""
    parser.add_argument('--support', required=True, help='folder with one subfolder of example images per class')
    parser.add_argument('--query', required=True, help='an image, or a folder of images, to classify')
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument('--model_path', help='trained weights (.pdparams), run in dygraph')
    model.add_argument('--inference_dir', help='folder written by tools/export_model.py, run with paddle.inference')
    parser.add_argument('--model', choices=['ResNet12', 'Conv4'], default=None,
                        help='backbone (default: read from the checkpoint or the exported folder)')
    parser.add_argument('--image_size', type=int, default=None,
                        help='input side in pixels (default: the model\'s own, from the preprocess.json beside the '
                             'checkpoint or the exported frn_head.json; 84 for a model without that record). '
                             'The preprocessing (colour, resize, crop, normalisation) always comes from the model')
    parser.add_argument('--use_gpu', action='store_true', help='use the GPU when this PaddlePaddle build has one')
    parser.add_argument('--threads', type=int, default=default_threads(), help='CPU math threads')


def check_prediction_flags(args):
    if args.image_size is not None and args.image_size < 16:
        raise FRNError(f'--image_size must be at least 16 (four 2x2 poolings), not {args.image_size}')
    return args


def load_prediction_inputs(args):
    """(support, queries, feature extractor), the folders checked before the model is loaded."""
    set_threads(args.threads)
    from deploy.export import feature_extractor
    from deploy.predict import list_queries, read_support
    support, queries = read_support(args.support), list_queries(args.query)  # folder errors before any work
    features = feature_extractor(args.model_path, args.inference_dir, args.model, args.image_size, args.use_gpu,
                                 args.threads)
    return support, queries, features


def query_names(queries, query_path):
    """Paths as shown: relative to the query folder, or as given for a single file."""
    if os.path.isdir(query_path):
        return [os.path.relpath(q, query_path) for q in queries]
    return list(queries)
