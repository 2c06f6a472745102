"""The benchmark tables: medians, official / ours ratios, failed steps said in the table, the rows --quick runs,
and the convolution benchmark's worker and committed table."""
import argparse
import pathlib

from benchmarks import bench_official
from benchmarks.workers import median, ratio, summary

REPO = pathlib.Path(__file__).resolve().parent.parent


def test_median_of_even_and_odd_counts():
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5


def test_ratio_is_official_over_ours_and_none_when_a_side_failed():
    official, ours = summary([6.0, 5.0, 7.0]), summary([2.0, 3.0, 4.0])
    assert ratio(official, ours) == 2.0
    assert ratio(summary([], error='exit code 1: oneMKL ERROR'), ours) is None


def row(official, ours):
    return {'task': 'ResNet-12 FRN 20-way 5-shot 15-query', 'threads': 2, 'images': 400, 'official': official,
            'ours': ours, 'ratio': ratio(official, ours)}


def test_step_table_gives_median_spread_images_per_second_memory_and_ratio():
    official, ours = summary([8.0, 9.0, 10.0], rss_mb=2048.0), summary([4.0, 5.0, 4.0], rss_mb=1024.0)
    line = bench_official.markdown([row(official, ours)]).splitlines()[-1]
    assert '9.00 s (8.00-10.00), 44 img/s' in line
    assert '4.00 s (4.00-5.00), 100 img/s' in line
    assert '**2.25x**' in line and '2,048 / 1,024' in line


def test_a_crashed_official_step_is_said_in_the_table():
    crashed = summary([], error='exit code 1: RuntimeError: oneMKL ERROR: Parameter 6 was incorrect')
    line = bench_official.markdown([row(crashed, summary([4.0]))]).splitlines()[-1]
    assert 'failed (exit code 1: RuntimeError: oneMKL ERROR: Parameter 6 was incorrect)' in line
    assert '| - |' in line  # no ratio


def test_quick_runs_every_row_shrunk_at_the_given_threads():
    options = argparse.Namespace(quick=True, only=None, threads=1)
    rows = bench_official.tasks(options)
    assert all(threads == 1 for *_, threads in rows)
    assert all(shape in ((5, 1, 1), (8, 64)) for _, _, shape, _ in rows)
    assert {(backbone, kind) for backbone, kind, _, _ in rows} == {(b, k) for b, k, _, _ in bench_official.TASKS}
    assert len(rows) == len(set(rows))


def test_conv_worker_times_paddles_convolution_and_the_table_divides_torch_by_paddle():
    import sys
    from benchmarks import bench_conv
    from benchmarks.workers import Worker
    command = [sys.executable, bench_conv.__file__, '--worker', 'paddle', '2', '10', '1', '1']
    times = Worker(command, cwd=str(REPO)).ready
    assert times['forward'] > 0 and times['forward_backward'] > times['forward'] * 0.5, times
    row = {'images': 2, 'side': 10, 'threads': 1, 'torch': {'forward': 0.3, 'forward_backward': 0.9},
           'paddle': {'forward': 0.6, 'forward_backward': 0.6}, 'ratio_forward': 0.5, 'ratio_forward_backward': 1.5}
    assert bench_conv.markdown([row]).splitlines()[-1] == '| 2 x 64 x 10 x 10 | 1 | 0.300 / 0.600 | 0.50 | 0.900 / 0.600 | 1.50 |'


def test_the_committed_convolution_table_is_its_json_and_ratios_are_torch_over_paddle():
    import json
    text = (REPO / 'benchmarks' / 'CONV.md').read_text(encoding='utf-8')
    rows = json.loads(text.split('```json\n', 1)[1].split('```', 1)[0])
    from benchmarks import bench_conv
    assert bench_conv.markdown(rows) in text
    assert {(r['images'], r['side']) for r in rows} == set(bench_conv.SHAPES)
    for r in rows:
        for part in ('forward', 'forward_backward'):
            assert abs(r[f'ratio_{part}'] - r['torch'][part] / r['paddle'][part]) < 1e-12
