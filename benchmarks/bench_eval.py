"""Evaluation speed: episodes per second with cached feature maps vs the backbone on every image of every episode.

    python benchmarks/bench_eval.py            # small (default without a GPU): 84 px, a 100-image split, 3 rounds
    python benchmarks/bench_eval.py --full     # 84 px, 20 classes x 550 real photos, 2,000 cached episodes

Conv-4 and ResNet-12 (random weights and BatchNorm statistics, eval mode), 5-way 1-shot
and 5-shot, 15 queries, 84 px, real photos through the product's loader (JPEG decode
and eval transform included). Measured, in the same process and rounds:
- per episode (`--no_feature_cache`, the official protocol): seconds per episode, t_ep;
- cached (the default): seconds to embed one image, t_img (each image once), and to run
  one episode's head on the stored maps, t_head.
Medians over the timed episodes and rounds. Both paths' accuracies are compared.
The cost of E episodes then is t_ep * E per episode and t_img * D(E) + t_head * E
cached, where D(E) is the number of distinct images in E episodes. D is counted by
drawing the episodes exactly as test.py does from a split the size of mini-ImageNet's
test split (20 classes x 600 images): D(2,000) = D(10,000) = 12,000 while E grows, so
the gain grows with E. 10,000 is test.py's default (5 tasks x 2,000 sharing one cache).
"""
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runtime.process import setup_process  # noqa: E402

setup_process()  # before paddle is imported and does math (runtime/process.py says why)

import numpy as np  # noqa: E402

import paddle  # noqa: E402
from benchmarks.bench_data import median, photo_split, size_args  # noqa: E402
from data.datamgr import EpochLoader  # noqa: E402
from data.dataset import EpisodicBatchSampler, SetDataset  # noqa: E402
from runtime.device import default_threads, set_threads  # noqa: E402
from runtime.paddle_internals import batch_norm_internals  # noqa: E402
from data.transforms import eval_transform  # noqa: E402
from engine.evaluation import episode_scores  # noqa: E402
from methods.episode import query_targets  # noqa: E402
from methods.steps import accuracy  # noqa: E402
from engine.feature_cache import FeatureCache  # noqa: E402
from methods.FRN import FRN  # noqa: E402

WAY, QUERY, SIZE = 5, 15, 84
SHOTS = (1, 5)
PROJECT_AT = (100, 600, 2000, 10000)
MINI_TEST = (20, 600)  # classes, images per class


def distinct_images(shot, episodes, tasks=1):
    """Distinct images in `tasks` x `episodes` test.py episodes of a mini-ImageNet-sized test split."""
    classes, per_class = MINI_TEST
    sampler = EpisodicBatchSampler(classes, WAY, episodes, shot + QUERY, [per_class] * classes, seed=0)
    seen = set()
    for task in range(tasks):
        sampler.set_epoch(task)
        seen.update((c, p) for e in range(episodes) for c, positions, _ in sampler.episode(e) for p in positions)
    return len(seen)


def model_for(backbone, seed=0):
    paddle.seed(seed)
    model = FRN(backbone=backbone, image_size=SIZE)
    rng = np.random.default_rng(seed)
    for layer in model.sublayers():
        if isinstance(layer, paddle.nn.BatchNorm2D):
            variance = batch_norm_internals(layer).variance
            variance.set_value(rng.uniform(0.5, 1.5, variance.shape).astype('float32'))
    model.eval()
    return model


def timed(generator):
    """Run a generator of episode distances; (seconds of each item, the items as numpy)."""
    seconds, items = [], []
    start = time.perf_counter()
    for item in generator:
        items.append(item.numpy())
        seconds.append(time.perf_counter() - start)
        start = time.perf_counter()
    return seconds, items


def accuracies(dists):
    target = query_targets(WAY, QUERY)
    return [accuracy(paddle.to_tensor(d), target) for d in dists]


def measure(backbone, split, rounds, per_episode_episodes, cached_episodes, log):
    """Rows for one backbone: t_ep, t_img, t_head per shot, medians over rounds."""
    model = model_for(backbone)
    with paddle.no_grad():  # warm up the kernels
        model.get_feature_map(paddle.zeros([4, 3, SIZE, SIZE]))
    dataset = SetDataset(split, eval_transform(SIZE))  # one dataset: both shots share the cache
    loaders = {shot: EpochLoader(dataset, EpisodicBatchSampler(split.n_classes, WAY, max(per_episode_episodes,
                                                                                          cached_episodes),
                                                               shot + QUERY, dataset.class_sizes, seed=1), 0)
               for shot in SHOTS}
    t_ep, t_head, t_img, same = {s: [] for s in SHOTS}, {s: [] for s in SHOTS}, [], True
    for _ in range(rounds):
        cache = FeatureCache(model, dataset)
        cache.ensure(range(len(split)))  # every image once; loading and decoding included
        t_img.append(cache.embed_seconds / len(split))
        for shot in SHOTS:
            loader = loaders[shot]
            loader.batch_sampler.n_episodes = per_episode_episodes
            seconds, per_episode = timed(episode_scores(model, loader, WAY, shot, QUERY))
            t_ep[shot] += seconds
            loader.batch_sampler.n_episodes = cached_episodes
            seconds, cached = timed(episode_scores(model, loader, WAY, shot, QUERY, cache=cache))
            t_head[shot] += seconds
            same &= accuracies(per_episode) == accuracies(cached[:per_episode_episodes])
    rows = []
    for shot in SHOTS:
        row = {'backbone': backbone, 'shot': shot, 'split_images': len(split), 'rounds': rounds,
               't_ep': median(t_ep[shot]), 't_img': median(t_img), 't_head': median(t_head[shot]),
               'same_accuracies': same, 'timed_episodes': (len(t_ep[shot]), len(t_head[shot]))}
        project(row)
        rows.append(row)
        if log:
            log(format_row(row))
    return rows


def project(row):
    """Seconds of E episodes on a mini-ImageNet-sized test split, both ways, and their ratio."""
    row['projection'] = {}
    for episodes in PROJECT_AT:
        tasks = 5 if episodes == 10000 else 1
        n_images = distinct_images(row['shot'], episodes // tasks, tasks)
        per_episode = row['t_ep'] * episodes
        cached = row['t_img'] * n_images + row['t_head'] * episodes
        row['projection'][episodes] = {'images': n_images, 'per_episode_s': per_episode, 'cached_s': cached,
                                       'ratio': per_episode / cached}


def run(small=True, threads=None, log=None):
    set_threads(threads or min(2, default_threads()))
    # small: the smallest split a 5-shot 15-query episode fits (5 classes x 20), every image in each episode
    n_classes, per_class, rounds, per_episode, cached = (5, 20, 3, 1, 5) if small else (20, 550, 1, 20, 2000)
    # small: ResNet-12 costs ~10x Conv-4 per image, so it gets 2 rounds (each embeds 100 images and runs 180
    # through the per-episode path) to stay within ~2 minutes on 2 cores
    with tempfile.TemporaryDirectory(prefix='frn-bench-eval-') as tmp:
        split, what = photo_split(tmp, n_classes, per_class)
        if log:
            log(f'{what}: {len(split)} images; rounds of {per_episode} per-episode and {cached} cached '
                f'episode(s) per shot')
            log(HEADER)
        rows = []
        for backbone in ('Conv4', 'ResNet12'):
            backbone_rounds = min(rounds, 2) if small and backbone == 'ResNet12' else rounds
            rows += measure(backbone, split, backbone_rounds, per_episode, cached, log)
    return rows


HEADER = (f'{"backbone":<10}{"shot":>5}{"per-episode s":>15}{"embed ms/img":>14}{"head ms":>9}'
          + ''.join(f'{f"x at {e:,}":>11}' for e in PROJECT_AT) + f'{"same acc":>10}')


def format_row(row):
    return (f'{row["backbone"]:<10}{row["shot"]:>5}{row["t_ep"]:>15.2f}{1000 * row["t_img"]:>14.1f}'
            f'{1000 * row["t_head"]:>9.1f}' + ''.join(f'{row["projection"][e]["ratio"]:>10.1f}x' for e in PROJECT_AT)
            + f'{str(row["same_accuracies"]):>10}')


def duration(seconds):
    return f'{seconds / 3600:.1f} h' if seconds >= 3600 else f'{seconds / 60:.1f} min'


def markdown(rows):
    head = ('| backbone | 5-way | per episode: s/episode | cached: ms/image embedded | cached: ms/episode head | '
            + ' | '.join(f'gain at {e:,} episodes' for e in PROJECT_AT)
            + ' | 2,000 episodes: per episode vs cached (episodes/s) | 10,000 episodes: per episode vs cached | '
              'same accuracies |')
    lines = [head, '|' + '---|' * (8 + len(PROJECT_AT))]
    for r in rows:
        p2, p10 = r['projection'][2000], r['projection'][10000]
        lines.append(
            f'| {r["backbone"]} | {r["shot"]}-shot | {r["t_ep"]:.2f} | {1000 * r["t_img"]:.1f} | '
            f'{1000 * r["t_head"]:.1f} | ' + ' | '.join(f'{r["projection"][e]["ratio"]:.1f}x' for e in PROJECT_AT)
            + f' | {duration(p2["per_episode_s"])} vs {duration(p2["cached_s"])} '
              f'({2000 / p2["per_episode_s"]:.2f} vs {2000 / p2["cached_s"]:.1f}) | '
              f'{duration(p10["per_episode_s"])} vs {duration(p10["cached_s"])} | '
              f'{"yes" if r["same_accuracies"] else "**no**"} |')
    return '\n'.join(lines)


def main():
    args = size_args(__doc__.split('\n')[0]).parse_args()
    rows = run(small=not args.full, threads=args.threads, log=print)
    print(f'gain = per-episode time / cached time for E episodes of a {MINI_TEST[0]} x {MINI_TEST[1]}-image test split')
    print(markdown(rows))


if __name__ == '__main__':
    main()
