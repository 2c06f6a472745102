"""Benchmark the FRN head: forward plus backward, official d x d inverse vs our Cholesky solver.

    python benchmarks/bench_frn_head.py            # 15 queries per class, 5 timed runs per solver
    python benchmarks/bench_frn_head.py --small    # 4 queries per class, 2 timed runs: about a minute

ResNet-12 shapes: d = 640 channels, 25 positions per image, so kr = 25 * shot. Each
timed run is the training loss of one episode (distances -> mean over positions ->
log-softmax -> NLL) and its backward into the support, the queries, alpha and beta,
in float32. Runs of the two solvers alternate, and the median is reported; "cpu ratio"
compares process CPU time, which is steadier than wall time on a shared machine.
Accuracy: the largest relative error of each solver's float32 distances against the
exact distances (float64), and the largest relative difference between the two.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runtime.process import setup_process  # noqa: E402

setup_process()  # before paddle is imported and does math (runtime/process.py says why)

import numpy as np  # noqa: E402
import paddle  # noqa: E402
import paddle.nn.functional as F  # noqa: E402

from methods.ridge import recon_dist  # noqa: E402
from runtime.device import default_threads, set_threads  # noqa: E402

D, POSITIONS = 640, 25
SHAPES = ((5, 1), (5, 5), (20, 5))  # (way, shot)
SOLVERS = ('inverse', 'cholesky')  # the official computation first


def episode_features(way, shot, query, seed):
    """Non-negative correlated features, like pooled LeakyReLU maps divided by sqrt(640)."""
    rng = np.random.default_rng(seed)
    common = rng.standard_normal(D) * 0.5
    support = np.maximum(rng.standard_normal((way, shot * POSITIONS, D)) + common, 0) / np.sqrt(D)
    queries = np.maximum(rng.standard_normal((way * query * POSITIONS, D)) + common, 0) / np.sqrt(D)
    return support.astype(np.float32), queries.astype(np.float32)


def train_step(solver, support, query, way, query_shot):
    """One episode's FRN loss through `solver`, forward and backward; returns the distances."""
    s = paddle.to_tensor(support, stop_gradient=False)
    q = paddle.to_tensor(query, stop_gradient=False)
    r = paddle.to_tensor(np.float32([0.0, 0.0]), stop_gradient=False)
    dist = recon_dist(q, s, r[0], r[1], solver=solver)  # way*query_shot*25, way
    neg_l2 = -paddle.mean(paddle.reshape(dist, [way * query_shot, POSITIONS, way]), axis=1)
    target = paddle.to_tensor(np.arange(way * query_shot) // query_shot)
    F.nll_loss(F.log_softmax(neg_l2, axis=1), target).backward()
    return dist.numpy()


def max_rel(a, b):
    return float(np.max(np.abs(a.astype(np.float64) - b) / np.abs(b)))


def run(small=True, threads=None, seed=0, log=None):
    """Time both solvers on every shape; returns one dict per shape."""
    threads = set_threads(threads or min(2, default_threads()))
    query_shot, repeats = (4, 2) if small else (15, 5)
    rows = []
    for way, shot in SHAPES:
        support, query = episode_features(way, shot, query_shot, seed)
        with paddle.no_grad():
            exact = recon_dist(paddle.to_tensor(query.astype(np.float64)), paddle.to_tensor(support.astype(np.float64)),
                               paddle.to_tensor(0.0, dtype='float64'), paddle.to_tensor(0.0, dtype='float64')).numpy()
        times = {solver: [] for solver in SOLVERS}
        cpu = {solver: [] for solver in SOLVERS}
        dists = {}
        for i in range(repeats + 1):  # the first round warms up and is not timed
            for solver in SOLVERS:
                start, start_cpu = time.perf_counter(), time.process_time()
                dists[solver] = train_step(solver, support, query, way, query_shot)
                if i:
                    times[solver].append(time.perf_counter() - start)
                    cpu[solver].append(time.process_time() - start_cpu)
        official_ms, ours_ms = (1000 * float(np.median(times[s])) for s in SOLVERS)
        official_cpu, ours_cpu = (float(np.median(cpu[s])) for s in SOLVERS)
        row = {'shape': f'{way}-way {shot}-shot', 'way': way, 'shot': shot, 'kr': shot * POSITIONS, 'd': D,
               'query_rows': query.shape[0], 'threads': threads, 'repeats': repeats,
               'official_ms': official_ms, 'ours_ms': ours_ms, 'speedup': official_ms / ours_ms,
               'cpu_speedup': official_cpu / ours_cpu,
               'ours_max_rel_err': max_rel(dists['cholesky'], exact),
               'official_max_rel_err': max_rel(dists['inverse'], exact),
               'max_rel_diff': max_rel(dists['cholesky'], dists['inverse'].astype(np.float64))}
        rows.append(row)
        if log:
            log(format_row(row))
    return rows


HEADER = (f'{"shape":<16}{"kr":>5}{"rows":>7}{"official ms":>13}{"ours ms":>10}{"ratio":>8}{"cpu ratio":>11}'
          f'{"ours err":>11}{"official err":>14}{"ours vs official":>18}')


def format_row(row):
    return (f'{row["shape"]:<16}{row["kr"]:>5}{row["query_rows"]:>7}{row["official_ms"]:>13.0f}{row["ours_ms"]:>10.0f}'
            f'{row["speedup"]:>7.1f}x{row["cpu_speedup"]:>10.1f}x{row["ours_max_rel_err"]:>11.1e}'
            f'{row["official_max_rel_err"]:>14.1e}'
            f'{row["max_rel_diff"]:>18.1e}')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--small', action='store_true', help='fewer queries and runs (about a minute on 2 cores)')
    parser.add_argument('--threads', type=int, default=None, help='CPU threads (default: up to 2)')
    args = parser.parse_args()
    print(f'FRN head, forward + backward, float32, d = {D}, {POSITIONS} positions per image; '
          f'"err" is the largest relative error against float64')
    print(HEADER)
    rows = run(small=args.small, threads=args.threads, log=print)
    print(f'paddle {paddle.__version__}, {rows[0]["threads"]} thread(s), median of {rows[0]["repeats"]} runs')


if __name__ == '__main__':
    main()
