"""Few-shot test: accuracy with a 95% confidence interval on episodes of the test split.

    python test.py --dataset mini_imagenet --data_path DATA --model ResNet12 --method meta_frn --image_size 84 \
        --gpu --n_shot 1 --test_task_nums 1 --test_n_episode 600 \
        --model_path ./checkpoints/mini_imagenet/ResNet12_meta_frn_20way_5shot_metatrain/best_model.pdparams

Runs --test_task_nums tasks of --test_n_episode episodes (--test_n_way-way, --n_shot-shot,
--n_query queries per class, eval transform). Episodes are fixed by --seed, so two runs
print the same numbers. Prints '<episodes> Test Acc = <mean>% +- <1.96 std / sqrt(episodes)>%'
per task, then the mean and interval over all episodes, and writes results/<way>w<shot>s/<dataset>_<model>_<method>.json
and .log. The JSON also holds every episode's accuracy and fingerprints of the test split and of the episodes,
so that tools/compare_results.py can compare two models tested on the same episodes, episode by episode.
"""
import os
import time

import cli
from runtime.command import cli_main, new_parser
from utils import FRNError, atomic_write_json, mean_confidence_interval


def parse_args(argv=None):
    parser = new_parser(__doc__.split('\n\n')[0])
    cli.add_common(parser)
    g = parser.add_argument_group('test')
    g.add_argument('--method', default='meta_frn', choices=['meta_frn', 'stl_frn', 'meta_proto'],
                   help="how the checkpoint was trained (names the result files): FRN's 'meta_frn' or 'stl_frn', "
                        "or 'meta_proto' for the ProtoNet baseline of meta_train.py --method meta_proto")
    g.add_argument('--model_path', required=True,
                   help='weights to test: a .pdparams written by this code or a converted official checkpoint')
    g.add_argument('--test_n_way', type=int, default=5, help='classes per test episode')
    g.add_argument('--test_task_nums', type=int, default=5, help='number of tasks (independent sets of episodes)')
    g.add_argument('--test_n_episode', type=int, default=2000, help='episodes per task')
    g.add_argument('--results_dir', default='./results', help='where the <way>w<shot>s/ result folders go')
    g.add_argument('--preprocess', default='model', choices=['model', 'data'],
                   help="'model': feed the images as the model was trained (the preprocess.json beside "
                        "--model_path; its colour handling, size, crop and normalisation), which is what testing "
                        "on another dataset (cross-domain) needs; 'data': the test dataset's own eval transform at "
                        "--image_size. A checkpoint without preprocess.json always gets 'data'")
    g.add_argument('--classifier', default='frn', choices=['frn', 'proto'],
                   help="with an FRN checkpoint: 'frn', its reconstruction head; 'proto', a head swap: nearest "
                        "class mean of the position-averaged feature maps on the same FRN-trained backbone (not "
                        "the official ProtoNet; train that with meta_train.py --method meta_proto)")
    args = parser.parse_args(argv)
    cli.check_common(args)
    if args.classifier == 'proto' and args.method == 'meta_proto':
        raise FRNError('--classifier proto swaps the head of an FRN checkpoint; a meta_proto model is a ProtoNet '
                       'already: drop --classifier')
    for name in ('test_task_nums', 'test_n_episode'):
        if getattr(args, name) < 1:
            raise FRNError(f'--{name} must be at least 1, not {getattr(args, name)}')
    cli.check_n_way('--test_n_way', args.test_n_way)
    cli.check_file('--model_path', args.model_path, 'give best_model.pdparams of a training run, or convert an '
                   'official checkpoint with tools/convert_official_weights.py')
    return args


def same_transform(a, b):
    """Two records that build the same transform (the dataset names may differ)."""
    return {k: v for k, v in a.items() if k != 'dataset'} == {k: v for k, v in b.items() if k != 'dataset'}


def input_preprocessing(config):
    """(the model's preprocessing record when it differs from the test data's own transform, else None; the log
    line saying which is used). Decided before any image is read: --cache_dir holds the data's own transform."""
    from data import preprocess
    data = config.data
    own = preprocess.record_for(data.dataset, data.image_size, data.eval_resize)
    record = preprocess.read_sidecar(config.test.model_path)
    if config.test.preprocess == 'data' or record is None:
        return None, (f'preprocessing: {preprocess.describe(own)} (the test data\'s own'
                      + ('; --preprocess data)' if record is not None else
                         f'; no {preprocess.SIDECAR} beside the checkpoint)'))
    if same_transform(record, own):
        return None, (f'preprocessing: {preprocess.describe(record)} (the model\'s {preprocess.SIDECAR}, the same '
                      f'as the data\'s)')
    if data.cache_dir:
        raise FRNError(f'--cache_dir holds images prepared for the test data\'s own transform, but the model '
                       f'wants {preprocess.describe(record)}; drop --cache_dir, or pass --preprocess data')
    size = (f'; it sets the input size, not --image_size {data.image_size}'
            if record['image_size'] != data.image_size else '')
    return record, (f'preprocessing: {preprocess.describe(record)} (the model\'s {preprocess.SIDECAR}, trained on '
                    f'{record["dataset"]}{size}; the test data\'s own would be {preprocess.describe(own)}; '
                    f'--preprocess data uses that)')


def gather_episodes(accs, sampler):
    """(accuracies, episodes) of the whole task in its order: under paddle.distributed.launch each rank
    evaluates its share of the episodes, and these are put back together."""
    import numpy as np

    from engine import parallel
    shares = parallel.gather_objects([(sampler.global_index(i), acc, sampler.episode(i))
                                      for i, acc in enumerate(accs)])
    ordered = sorted((item for share in shares for item in share), key=lambda item: item[0])
    return np.array([acc for _, acc, _ in ordered]), [episode for _, _, episode in ordered]


@cli_main
def main(argv=None):
    config = cli.testing_config(parse_args(argv))
    # after cli_main's process set-up: from here on paddle is imported (runtime/process.py says why)
    import paddle

    from data import preprocess
    from data.dataset import episodes_fingerprint
    from data.loaders import episode_loader, read_splits
    from engine import parallel
    from engine.evaluation import evaluate
    from engine.feature_cache import feature_cache_for
    from methods.checkpoint import load_model
    from methods.FRN import FRN
    from methods.protonet import Proto, PrototypeClassifier
    data, test, compute, method = config.data, config.test, config.compute, config.model.method
    way, shot, query = test.test_n_way, data.n_shot, data.n_query
    record, about_preprocessing = input_preprocessing(config)  # before --cache_dir builds anything
    (test_split,) = read_splits(data, 'test')
    out_dir = os.path.join(test.results_dir, f'{way}w{shot}s')
    stem = os.path.join(out_dir, f'{data.dataset}_{config.model.model}_{method}'
                        + ('_proto' if test.classifier == 'proto' else ''))
    log = cli.start_run(config, stem + '.log')
    if method == 'meta_proto':
        model = Proto(backbone=config.model.model, image_size=data.image_size)
    else:
        model = FRN(backbone=config.model.model, image_size=data.image_size)
    dropped, missing = load_model(model, test.model_path)
    if 'r' in dropped or 'r' in missing:  # FRN's [alpha, beta]: every FRN checkpoint has it, ProtoNet's never
        kind = 'an FRN' if 'r' in dropped else 'a ProtoNet (meta_proto)'
        raise FRNError(f'--model_path {test.model_path!r} is {kind} checkpoint, but --method is {method}; '
                       f'pass --method ' + ('meta_frn (or stl_frn)' if 'r' in dropped else 'meta_proto'))
    log(f'loaded {test.model_path}' + (f' (not needed for testing: {", ".join(dropped)})' if dropped else ''))
    log(f'test: {test_split.n_classes} classes, {len(test_split)} images from {test_split.source}')
    if test.classifier == 'proto':
        model = PrototypeClassifier(model)
        log('classifier: head swap, nearest prototype on the FRN-trained backbone (not the FRN head, and not '
            'the official ProtoNet)')
    loader = episode_loader(data, test_split, way, test.test_n_episode, rank=parallel.rank(),
                            world_size=parallel.world_size(), flag='test_n_way')
    log(about_preprocessing)
    if record is not None:  # the model's own preprocessing, not the test data's
        loader.dataset.transform = preprocess.eval_transform_from(record)
    log.persist()  # the inputs are checked: from here on the results .log is written
    # one cache for all tasks: the model does not change, so each image is embedded once in all
    cache = None if compute.no_feature_cache else feature_cache_for(model, loader, compute.max_cache_mb,
                                                                   spill_dir=data.cache_dir)
    log('evaluation: ' + ('per episode, the backbone on every image of every episode (--no_feature_cache)'
                          if cache is None else 'each image embedded once, heads run on the cached feature maps'))

    start, tasks, all_accs, drawn = time.time(), [], [], []
    for task in range(test.test_task_nums):
        loader.set_epoch(task)  # task t has its own fixed episodes
        accs, _ = evaluate(model, loader, way, shot, query, desc=f'task {task}', cache=cache)
        accs, episodes = gather_episodes(accs, loader.batch_sampler)
        acc, ci = mean_confidence_interval(accs)
        tasks.append({'acc': acc, 'ci95': ci, 'episodes': len(accs)})
        all_accs.extend(accs.tolist())
        drawn.append(episodes)
        log(f'{len(accs)} Test Acc = {acc:.2f}% +- {ci:.2f}%')
    if cache is not None:
        log(cache.describe())
    acc, ci = mean_confidence_interval(all_accs)
    log(f'Mean of {len(tasks)} task(s), {len(all_accs)} episodes: Test Acc = {acc:.2f}% +- {ci:.2f}% '
        f'({way}-way {shot}-shot, {query} queries, {time.time() - start:.1f} s)')
    if not parallel.is_main():
        return
    atomic_write_json({'acc': acc, 'ci95': ci, 'tasks': tasks, 'checkpoint': os.path.abspath(test.model_path),
                       'dataset': data.dataset, 'data_path': os.path.abspath(data.data_path),
                       'model': config.model.model, 'method': method, 'n_way': way, 'n_shot': shot,
                       'n_query': query, 'test_task_nums': test.test_task_nums,
                       'test_n_episode': test.test_n_episode, 'eval_resize': data.eval_resize,
                       # the size the images were fed at: the model's record, when it is used, sets it
                       'image_size': record['image_size'] if record else data.image_size,
                       'train_transform_type': data.train_transform_type, 'seed': data.seed,
                       'feature_cache': cache is not None, 'classifier': test.classifier,
                       'preprocess': record or preprocess.record_for(data.dataset, data.image_size, data.eval_resize),
                       'paddle': paddle.__version__, 'seconds': round(time.time() - start, 1),
                       # what tools/compare_results.py needs to compare two models episode by episode
                       'split_sha256': test_split.fingerprint(data.data_path),
                       'episodes_sha256': episodes_fingerprint(drawn, shot), 'episode_accs': all_accs},
                      stem + '.json')
    log(f'results written to {stem}.json')


if __name__ == '__main__':
    main()
