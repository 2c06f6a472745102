"""Faults a user meets, replayed: every one ends in one line and exit code 2 (or 143 for SIGTERM), never a hang,
a traceback or a run folder that mixes two runs; a run killed at random points resumes to the same weights.

Subprocesses are tiny (Conv-4 at 32 px, 5 classes of 8 real Tiny-ImageNet photos per split) and all have a
timeout, so a hang fails the test instead of stalling CI.
"""
import errno
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import paddle
import pytest
from PIL import Image

from conftest import REPO, extract_tiny_subset, jpeg_claiming
from utils import FRNError

TIMEOUT = 120
SMALL = ['--model', 'Conv4', '--image_size', '32', '--n_query', '3', '--threads', '1']
TRAIN = ['--dataset', 'mini_imagenet', '--method', 'stl_frn', '--batch_size', '8', '--val_n_episode', '2',
         '--milestones', '3', '--print_freq', '100', *SMALL]
BAD_KINDS = ('truncated', 'random_bytes', 'zero_bytes', 'deleted', 'bomb')


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return extract_tiny_subset(tmp_path_factory.mktemp('faults') / 'data', (5, 5, 5), 8)


def run(script, *args, cwd, timeout=TIMEOUT, env=None):
    return subprocess.run([sys.executable, str(REPO / script), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def one_line_error(result, *fragments, code=2):
    assert result.returncode == code, result.stdout[-2000:] + result.stderr
    assert 'Traceback' not in result.stderr and 'FatalError' not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def first_image(folder, split):
    """(path, name) of the first image of a split's CSV."""
    name = (folder / f'{split}.csv').read_text().splitlines()[1].split(',')[0]
    return folder / 'images' / name


def spoil(path, kind):
    """Make one image unreadable the way users meet it."""
    if kind == 'truncated':
        path.write_bytes(path.read_bytes()[:300])
    elif kind == 'random_bytes':
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    elif kind == 'zero_bytes':
        path.write_bytes(b'')
    elif kind == 'deleted':
        path.unlink()
    elif kind == 'bomb':  # a header claiming 3.6 billion pixels, past Pillow's decompression-bomb limit
        path.write_bytes(jpeg_claiming(60000, 60000))


@pytest.fixture
def bad_copy(data, tmp_path):
    """A copy of the data in which one image of the given split is spoilt; returns (folder, bad image)."""
    def make(split, kind):
        folder = tmp_path / f'data-{split}-{kind}'
        shutil.copytree(data, folder)
        bad = first_image(folder, split)
        spoil(bad, kind)
        return folder, bad
    return make


def run_dir(root, name='Conv4_stl_frn_pretrain'):
    return root / 'checkpoints' / 'mini_imagenet' / name


def weights(path):
    return {k: v.numpy() for k, v in paddle.load(str(path)).items()}


def temp_files(folder):
    return [f for f in os.listdir(folder) if f.endswith('.tmp')] if folder.exists() else []


def hold_lock(folder):
    """Another process holding the run folder's lock (POSIX locks never conflict within one process)."""
    holder = subprocess.Popen([sys.executable, '-c', 'import time; from engine.runlock import RunLock; '
                               f'RunLock({str(folder)!r}).acquire(); print("held", flush=True); time.sleep(600)'],
                              cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == 'held'
    return holder


# ---- 1. a loader failure is an error, never a hang: every loop, every kind of bad file, 0 and 2 workers ----

LOOPS = textwrap.dedent('''
    import faulthandler, json, sys
    faulthandler.dump_traceback_later(100, exit=True)  # before the 120 s timeout: a hang shows every thread's stack
    from runtime.device import set_threads
    set_threads(1)
    from data.datamgr import SetDataManager, SimpleDataManager
    from data.filelist import read_split
    from data.image_cache import open_cache
    from engine.evaluation import evaluate
    from engine.feature_cache import feature_cache_for
    from methods.FRN import FRN
    from utils import FRNError
    import os
    data, cache_dir, delete = sys.argv[1], sys.argv[2], sys.argv[3:]
    train, val = read_split(data, 'train'), read_split(data, 'val')
    for path in delete:  # deleted after the file lists were read
        os.remove(path)
    out = {}
    def attempt(name, fn):
        print(name, file=sys.stderr, flush=True)
        try:
            fn()
            out[name] = None
        except FRNError as err:
            out[name] = str(err)
    model = FRN(backbone='Conv4', image_size=32)
    for workers in (0, 2):
        batches = SimpleDataManager(32, 8, num_workers=workers).get_data_loader(train, aug=True)
        attempt(f'batches/{workers}', lambda: list(batches))
        episodes = SetDataManager(32, 5, 2, 6, 2, num_workers=workers).get_data_loader(train, aug=True)
        attempt(f'episodes/{workers}', lambda: list(episodes))
        val_episodes = SetDataManager(32, 5, 2, 6, 2, num_workers=workers).get_data_loader(val, aug=False)
        attempt(f'validation/{workers}', lambda: evaluate(model, val_episodes, 5, 2, 6))
        attempt(f'feature_cache/{workers}', lambda: evaluate(model, val_episodes, 5, 2, 6,
                                                            cache=feature_cache_for(model, val_episodes)))
        attempt(f'image_cache/{workers}', lambda: open_cache(train, f'{cache_dir}/{workers}', 'train', 32,
                                                             num_workers=workers, log=lambda m: None))
    print(json.dumps(out))
''')


@pytest.mark.slow
@pytest.mark.parametrize('kind', BAD_KINDS)
def test_every_loop_stops_with_the_files_name_for_every_kind_of_bad_image(kind, data, tmp_path):
    """Episodes of 5 classes x 8 images read every image, and so do the batches (40 = 5 x 8), in each loop."""
    folder = tmp_path / 'data'
    shutil.copytree(data, folder)
    bad = [first_image(folder, split) for split in ('train', 'val')]
    for path in bad if kind != 'deleted' else []:
        spoil(path, kind)
    result = subprocess.run([sys.executable, '-c', LOOPS, str(folder), str(tmp_path / 'cache')]
                            + ([str(p) for p in bad] if kind == 'deleted' else []), cwd=REPO,
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    errors = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(errors) == 10
    for loop, message in errors.items():
        split = 'val' if loop.startswith(('validation', 'feature_cache')) else 'train'
        assert message is not None, f'{loop}: no error for a {kind} image'
        assert str(first_image(folder, split)) in message, (loop, message)
        expected = {'deleted': 'does not exist', 'bomb': "claims more pixels than Pillow's decompression-bomb"}
        assert expected.get(kind, 'cannot read image') in message, (loop, message)
    for loop in ('batches', 'episodes', 'validation', 'feature_cache', 'image_cache'):
        assert errors[f'{loop}/0'] == errors[f'{loop}/2'], loop  # the same message with or without workers
    assert not any(f.endswith('.tmp') for _, _, files in os.walk(tmp_path / 'cache') for f in files)


@pytest.mark.slow
@pytest.mark.parametrize('script, split, workers', [('pretrain.py', 'train', '0'), ('pretrain.py', 'train', '2'),
                                                    ('pretrain.py', 'val', '0'), ('meta_train.py', 'train', '0'),
                                                    ('test.py', 'test', '0')])
def test_clis_stop_on_a_truncated_image_with_one_line_and_exit_2(script, split, workers, bad_copy, tmp_path):
    folder, bad = bad_copy(split, 'truncated')
    args = ['--data_path', str(folder), '--num_workers', workers, *SMALL]
    if script == 'test.py':
        model = tmp_path / 'w.pdparams'
        from methods.FRN import FRN
        paddle.save(FRN(backbone='Conv4', image_size=32).state_dict(), str(model))
        args += ['--model_path', str(model), '--test_task_nums', '1', '--test_n_episode', '2',
                 '--results_dir', str(tmp_path / 'results')]
    else:
        args += ['--val_n_episode', '2', '--epoch', '1', '--print_freq', '100']
        args += ['--train_n_way', '5', '--train_n_episode', '2'] if script == 'meta_train.py' else ['--batch_size', '8']
    one_line_error(run(script, *args, cwd=tmp_path), str(bad), 'cannot read image')


@pytest.mark.slow
def test_building_the_image_cache_from_the_cli_stops_on_a_bad_image(bad_copy, tmp_path):
    folder, bad = bad_copy('train', 'zero_bytes')
    result = run('pretrain.py', '--data_path', str(folder), *TRAIN, '--epoch', '1', '--cache_dir',
                 str(tmp_path / 'cache'), cwd=tmp_path)
    one_line_error(result, str(bad))
    assert not [f for f in os.listdir(tmp_path / 'cache') if f.endswith(('.tmp', '.json'))]


# ---- 2. a run folder belongs to one run at a time ----

@pytest.mark.slow
def test_a_second_run_stops_at_once_naming_the_folder_and_the_running_process(data, tmp_path):
    from engine.runlock import RunLock
    folder = run_dir(tmp_path)
    with RunLock(folder, 'the first run').acquire():
        start = time.time()
        line = one_line_error(run('pretrain.py', '--data_path', str(data), *TRAIN, '--epoch', '1', cwd=tmp_path),
                              str(folder), 'in use', f'pid {os.getpid()}', socket.gethostname(), '--checkpoint_dir')
        assert time.time() - start < 30, line
        assert os.listdir(folder) == ['run.lock']  # the second run wrote nothing
    assert not folder.exists()  # released: the lock file and the folder it made are gone


def test_a_stale_lock_of_a_killed_run_is_taken_over(tmp_path):
    from engine.runlock import RunLock
    holder = hold_lock(tmp_path)
    with pytest.raises(FRNError, match=f'in use by another run \\(pid {holder.pid} '):
        RunLock(tmp_path).acquire()
    holder.kill()
    holder.wait(timeout=TIMEOUT)
    with RunLock(tmp_path).acquire() as lock:
        assert any(f'no longer running (pid {holder.pid} ' in note for note in lock.notes), lock.notes
        assert json.loads((tmp_path / 'run.lock').read_text())['pid'] == os.getpid()


def test_ranks_of_a_distributed_run_share_rank_0s_lock(tmp_path, monkeypatch):
    from engine.runlock import claim_run_dir
    holder = hold_lock(tmp_path)  # rank 0 of the run
    try:
        monkeypatch.setenv('PADDLE_TRAINER_ID', '1')
        with claim_run_dir(str(tmp_path), None, False, 'python pretrain.py') as lock:
            assert lock.fd is None
        monkeypatch.setenv('PADDLE_TRAINER_ID', '0')  # rank 0 of another run
        with pytest.raises(FRNError, match='in use'):
            claim_run_dir(str(tmp_path), None, False, 'python pretrain.py')
    finally:
        holder.kill()
        holder.wait(timeout=TIMEOUT)


# ---- a reference run, then the faults that touch a finished run folder ----

@pytest.fixture(scope='module')
def reference(data, tmp_path_factory):
    """An uninterrupted 8-epoch pretraining run, and how long it took."""
    work = tmp_path_factory.mktemp('reference')
    start = time.time()
    result = run('pretrain.py', '--data_path', str(data), *TRAIN, '--epoch', '8', cwd=work)
    assert result.returncode == 0, result.stderr
    return {'work': work, 'dir': run_dir(work), 'seconds': time.time() - start}


@pytest.mark.slow
def test_a_fresh_run_refuses_a_folder_with_another_runs_checkpoints_and_overwrite_clears_it(data, reference,
                                                                                            tmp_path):
    shutil.copytree(reference['work'] / 'checkpoints', tmp_path / 'checkpoints')
    folder = run_dir(tmp_path)
    before = {f: (folder / f).stat().st_mtime_ns for f in os.listdir(folder)}
    one_line_error(run('pretrain.py', '--data_path', str(data), *TRAIN, '--epoch', '1', '--seed', '1', cwd=tmp_path),
                   str(folder), 'already holds the checkpoints', '--resume auto', '--overwrite')
    assert {f: (folder / f).stat().st_mtime_ns for f in os.listdir(folder)} == before
    one_line_error(run('pretrain.py', '--data_path', str(data), *TRAIN, '--resume', 'auto', '--overwrite',
                       cwd=tmp_path), '--resume and --overwrite')
    result = run('pretrain.py', '--data_path', str(data), *TRAIN, '--epoch', '1', '--seed', '1', '--overwrite',
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    files = set(os.listdir(folder))
    assert '7.pdparams' not in files and {'0.pdparams', 'last_model.pdopt', 'output.log'} <= files
    kept = [f for f in files if f.startswith('output.') and f != 'output.log']
    assert len(kept) == 1 and 'Epoch 7 | lr' in (folder / kept[0]).read_text()
    log = (folder / 'output.log').read_text()
    assert '--overwrite: deleted the' in log and 'Epoch 7' not in log


@pytest.mark.parametrize('script, flags, error', [
    ('pretrain.py', [*TRAIN, '--n_query', '30'], 'n_shot + n_query = 31'),
    ('meta_train.py', [*SMALL, '--train_n_way', '5', '--train_n_episode', '2', '--val_n_episode', '2',
                       '--pretrain_path', 'damaged.pdparams'], 'cannot read checkpoint'),
])
@pytest.mark.slow
def test_overwrite_keeps_the_earlier_run_when_a_check_of_the_new_one_fails(script, flags, error, data, reference,
                                                                          tmp_path):
    """--overwrite deletes the earlier checkpoints only once the new run has passed its checks."""
    name = 'Conv4_stl_frn_pretrain' if script == 'pretrain.py' else 'Conv4_meta_frn_5way_1shot_metatrain'
    folder = run_dir(tmp_path, name)
    shutil.copytree(reference['dir'], folder)
    (tmp_path / 'damaged.pdparams').write_bytes((reference['dir'] / 'best_model.pdparams').read_bytes()[:500])
    before = {f: (folder / f).read_bytes() for f in os.listdir(folder)}
    one_line_error(run(script, '--data_path', str(data), '--epoch', '1', '--overwrite', *flags, cwd=tmp_path), error)
    assert {f: (folder / f).read_bytes() for f in os.listdir(folder)} == before


# ---- 3. --resume is checked before work starts ----

@pytest.mark.slow
def test_resume_from_a_truncated_pdopt_is_one_line(data, reference, tmp_path):
    shutil.copytree(reference['work'] / 'checkpoints', tmp_path / 'checkpoints')
    pdopt = run_dir(tmp_path) / 'last_model.pdopt'
    pdopt.write_bytes(pdopt.read_bytes()[:1000])
    one_line_error(run('pretrain.py', '--data_path', str(data), *TRAIN, '--epoch', '9', '--resume', 'auto',
                       cwd=tmp_path), 'cannot read the resume state', 'last_model.pdopt', 'truncated')


@pytest.mark.slow
@pytest.mark.parametrize('script, flags, expected', [
    ('meta_train.py', [*SMALL, '--train_n_way', '5', '--train_n_episode', '2', '--val_n_episode', '2'],
     'it is pretraining (pretrain.py), this run is meta-training'),
    ('pretrain.py', [*TRAIN, '--model', 'ResNet12'], '--model is Conv4 there, ResNet12 here'),
    ('pretrain.py', [*TRAIN, '--image_size', '24'], '--image_size is 32 there, 24 here'),
    ('pretrain.py', [*TRAIN, '--eval_resize', 'square'], '--eval_resize is shorter there, square here'),
    ('pretrain.py', [*TRAIN, '--train_transform_type', '1'], '--train_transform_type is 0 there, 1 here'),
])
def test_resume_of_another_stage_backbone_image_size_or_transform_says_what_differs(script, flags, expected, data,
                                                                                    reference, tmp_path):
    """Nothing is written either: the resumed run's preprocess.json would record another transform."""
    shutil.copytree(reference['work'] / 'checkpoints', tmp_path / 'checkpoints')
    folder = run_dir(tmp_path)
    before = {f: (folder / f).read_bytes() for f in os.listdir(folder)}
    result = run(script, '--data_path', str(data), '--epoch', '9', *flags, '--resume',
                 str(folder / 'last_model.pdparams'), cwd=tmp_path)
    one_line_error(result, 'belongs to another run', expected)
    assert 'resumed from' not in result.stdout
    assert {f: (folder / f).read_bytes() for f in os.listdir(folder)} == before


@pytest.mark.slow
def test_resume_with_another_class_count_says_so(reference):
    from engine.trainer import read_resume_state
    from methods.FRN import FRN
    run_args = dict(method='stl_frn', model='Conv4', dataset='mini_imagenet', image_size=32, num_classes=6)
    model = FRN(backbone='Conv4', is_pretraining=True, num_cat=6, image_size=32)
    with pytest.raises(FRNError, match='--num_classes is 5 there, 6 here'):
        read_resume_state(str(reference['dir'] / 'last_model.pdopt'), run_args, model)


@pytest.mark.slow
def test_resume_auto_with_weights_but_no_pdopt_refuses_and_keeps_them(data, reference, tmp_path):
    shutil.copytree(reference['work'] / 'checkpoints', tmp_path / 'checkpoints')
    folder = run_dir(tmp_path)
    for pdopt in folder.glob('*.pdopt'):
        pdopt.unlink()
    before = {f: (folder / f).stat().st_mtime_ns for f in os.listdir(folder)}
    one_line_error(run('pretrain.py', '--data_path', str(data), *TRAIN, '--epoch', '9', '--resume', 'auto',
                       cwd=tmp_path), 'no .pdopt file', '--overwrite')
    assert {f: (folder / f).stat().st_mtime_ns for f in os.listdir(folder)} == before


# ---- 4. file system errors: one line naming the path and the cause, nothing partial ----

FAULT = textwrap.dedent('''
    import builtins, errno, os, runpy, sys
    code, suffix, script = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    real_replace, real_open = os.replace, builtins.open
    def replace(src, dst, *a, **k):
        if str(dst).endswith(suffix):
            raise OSError(code, os.strerror(code))  # as a full disk gives it: no file name
        return real_replace(src, dst, *a, **k)
    def open_(file, mode='r', *a, **k):
        if str(file).endswith(suffix) and 'a' in mode:
            raise OSError(code, os.strerror(code), str(file))
        return real_open(file, mode, *a, **k)
    os.replace, builtins.open = replace, open_
    sys.argv = [script] + sys.argv[4:]
    sys.path.insert(0, os.path.dirname(script))
    runpy.run_path(script, run_name='__main__')
''')


@pytest.mark.slow
@pytest.mark.parametrize('code, suffix, cause', [(errno.ENOSPC, 'best_model.pdparams', 'No space left on device'),
                                                 (errno.EROFS, 'output.log', 'Read-only file system'),
                                                 (errno.EACCES, 'last_model.pdopt', 'Permission denied')])
def test_file_system_errors_while_training_are_one_line_naming_the_path(code, suffix, cause, data, tmp_path):
    result = subprocess.run([sys.executable, '-c', FAULT, str(code), suffix, str(REPO / 'pretrain.py'),
                             '--data_path', str(data), *TRAIN, '--epoch', '1'], cwd=tmp_path, capture_output=True,
                            text=True, timeout=TIMEOUT)
    one_line_error(result, suffix, cause)
    assert not temp_files(run_dir(tmp_path)) and not (run_dir(tmp_path) / suffix).exists()


@pytest.mark.slow
def test_a_write_error_of_test_results_is_one_line(data, reference, tmp_path):
    result = subprocess.run([sys.executable, '-c', FAULT, str(errno.ENOSPC), '.json', str(REPO / 'test.py'),
                             '--data_path', str(data), *SMALL, '--model_path',
                             str(reference['dir'] / 'best_model.pdparams'), '--test_task_nums', '1',
                             '--test_n_episode', '2', '--results_dir', str(tmp_path / 'r')],
                            cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT)
    one_line_error(result, 'mini_imagenet_Conv4_meta_frn.json', 'No space left on device')
    assert not [f for f in os.listdir(tmp_path / 'r' / '5w1s') if f.endswith(('.tmp', '.json'))]


def test_cli_main_turns_an_os_error_into_one_line_and_exit_2(capsys):
    from runtime.command import cli_main

    @cli_main
    def main():
        raise PermissionError(errno.EACCES, 'Permission denied', '/results/x.json')
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    assert capsys.readouterr().err == "error: '/results/x.json': Permission denied (check its permissions or " \
                                      "write somewhere else)\n"


# ---- 5. SIGTERM like Ctrl-C; leftovers of a killed run are removed ----


def our_stderr_lines(err):
    """stderr without the glog line Paddle 3's C++ backward prints when a SIGTERM lands inside a PyLayer's backward."""
    return [line for line in err.strip().splitlines() if not re.match(r'W\d{4} ', line)]


@pytest.mark.slow
def test_sigterm_exits_143_saying_how_to_resume_and_leaves_no_temp_file(data, tmp_path):
    proc = subprocess.Popen([sys.executable, str(REPO / 'pretrain.py'), '--data_path', str(data), *TRAIN,
                             '--epoch', '200'], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    log = run_dir(tmp_path) / 'output.log'
    deadline = time.time() + TIMEOUT
    while proc.poll() is None and time.time() < deadline and 'Epoch 2 | lr' not in (
            log.read_text() if log.exists() else ''):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 143, err
    lines = our_stderr_lines(err)
    assert len(lines) == 1 and 'terminated (SIGTERM)' in lines[0] and '--resume auto' in lines[0], err
    assert not temp_files(run_dir(tmp_path)) and 'run.lock' not in os.listdir(run_dir(tmp_path))


SIGTERM_IN_BACKWARD = textwrap.dedent('''
    import os, signal, sys
    sys.path.insert(0, sys.argv[1])
    from engine.runlock import RunLock
    from runtime.command import cli_main

    @cli_main
    def main():
        import paddle
        from runtime.process import catch_sigterm
        catch_sigterm()  # again after paddle's import, as the commands do

        class Hook(paddle.autograd.PyLayer):  # as network/pooled_block.py's _MaxOfProducts
            @staticmethod
            def forward(ctx, x):
                return x * 2

            @staticmethod
            def backward(ctx, grad):
                os.kill(os.getpid(), signal.SIGTERM)
                sum(range(100000))  # the handler runs here, inside paddle's backward
                return grad * 2

        with RunLock(sys.argv[2], 'a test run', flag='--checkpoint_dir').acquire() as lock:
            lock.resume_hint = '; continue with --resume auto'
            x = paddle.ones([2])
            x.stop_gradient = False
            Hook.apply(x).sum().backward()

    main()
''')


@pytest.mark.slow
def test_sigterm_inside_paddles_backward_still_exits_143_saying_how_to_resume(tmp_path):
    """A PyLayer's backward runs Python inside paddle's C++ code: the SIGTERM raised there comes back wrapped in
    paddle's own error, and must still end as a SIGTERM, not as an error with paddle's stack."""
    result = subprocess.run([sys.executable, '-c', SIGTERM_IN_BACKWARD, str(REPO), str(tmp_path / 'run')],
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 143, result.stderr
    lines = our_stderr_lines(result.stderr)
    assert lines == ['terminated (SIGTERM); continue with --resume auto'], result.stderr


@pytest.mark.slow
def test_a_run_removes_the_temp_files_an_earlier_killed_run_left_and_says_so(data, reference, tmp_path):
    shutil.copytree(reference['work'] / 'checkpoints', tmp_path / 'checkpoints')
    folder = run_dir(tmp_path)
    leftover = folder / '.last_model.pdopt.k3j_9xQa.tmp'
    leftover.write_bytes(b'half a checkpoint')
    keep = folder / 'notes.tmp'  # not an atomic_write temp file: kept
    keep.write_text('mine')
    result = run('pretrain.py', '--data_path', str(data), *TRAIN, '--epoch', '9', '--resume', 'auto', cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not leftover.exists() and keep.exists()
    assert f'removed 1 temp file(s) that an interrupted run left in {folder}: {leftover.name}' in \
        (folder / 'output.log').read_text()


# ---- 6. images of any depth, with transparency or an EXIF orientation ----

def grey_rgb(value, size=(6, 4)):
    return np.full((size[1], size[0], 3), value, dtype=np.uint8)


@pytest.mark.parametrize('mode, values, expected', [
    ('I;16', [0, 257 * 81, 257 * 187, 65535], [0, 81, 187, 255]),
    ('I;16B', [0, 257 * 81, 257 * 187, 65535], [0, 81, 187, 255]),
    ('I', [0, 257 * 81, 257 * 187, 65535], [0, 81, 187, 255]),      # how Pillow 9 opens a 16-bit PNG
    ('I', [-1000, 0, 1000, 3000], [0, 64, 128, 255]),              # other ranges: minimum to maximum
    ('F', [0.0, 81 / 255, 187 / 255, 1.0], [0, 81, 187, 255]),
    ('F', [-2.0, 0.0, 2.0, 6.0], [0, 64, 128, 255]),
])
def test_high_depth_images_are_scaled_to_8_bits(mode, values, expected, tmp_path):
    from data.images import load_image, to_rgb
    dtype = {'I;16': '<u2', 'I;16B': '>u2', 'I': '<i4', 'F': '<f4'}[mode]
    img = Image.frombytes(mode, (4, 1), np.array(values, dtype=dtype).tobytes())
    np.testing.assert_array_equal(np.asarray(to_rgb(img))[0], np.repeat(np.array(expected)[:, None], 3, axis=1))
    if mode in ('I;16', 'I', 'F'):  # the same through a file: a 16-bit PNG, a 32-bit or float TIFF
        path = tmp_path / ('x.png' if mode == 'I;16' else 'x.tif')
        img.save(path)
        np.testing.assert_array_equal(np.asarray(load_image(path))[0],
                                      np.repeat(np.array(expected)[:, None], 3, axis=1))


def test_a_16_bit_greyscale_png_keeps_its_brightness(tmp_path):
    from data.images import load_image
    for mean in (81, 187):
        path = tmp_path / f'{mean}.png'
        Image.fromarray(np.full((8, 8), mean * 257, dtype=np.uint16)).save(path)
        assert Image.open(path).mode == 'I;16'
        assert np.asarray(load_image(path)).mean() == mean  # Pillow's own convert('RGB') gives 255


def test_transparent_pixels_become_white(tmp_path):
    from data.images import load_image
    rgba = np.zeros((4, 6, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:, :3, 3] = 255      # left half opaque red-ish, right half fully transparent
    rgba[:, 3:, 3] = 0
    Image.fromarray(rgba, 'RGBA').save(tmp_path / 'rgba.png')
    out = np.asarray(load_image(tmp_path / 'rgba.png'))
    np.testing.assert_array_equal(out[:, :3], np.broadcast_to([200, 0, 0], (4, 3, 3)))
    np.testing.assert_array_equal(out[:, 3:], np.full((4, 3, 3), 255))
    palette = Image.fromarray(np.array([[0, 1, 1]], dtype=np.uint8), 'P')
    palette.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    palette.save(tmp_path / 'p.png', transparency=0)  # entry 0 (black) is transparent
    np.testing.assert_array_equal(np.asarray(load_image(tmp_path / 'p.png'))[0],
                                  [[255, 255, 255], [10, 20, 30], [10, 20, 30]])


def test_exif_rotated_photos_are_turned_upright_everywhere(tmp_path):
    from data.images import load_image
    from data.transforms import eval_transform
    from deploy.predict import load_images
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = 255                       # stored: 40 wide, white left half
    exif = Image.Exif()
    exif[0x0112] = 6                           # orientation 6: show rotated 90 degrees clockwise
    Image.fromarray(pixels).save(tmp_path / 'rotated.png', exif=exif)
    upright = np.asarray(load_image(tmp_path / 'rotated.png'))
    assert upright.shape == (40, 20, 3)        # shown 20 wide and 40 high
    assert upright[:20].mean() > 250 and upright[20:].mean() < 5  # the white half is now on top
    np.testing.assert_array_equal(load_images([str(tmp_path / 'rotated.png')], 16)[0],
                                  eval_transform(16)(load_image(tmp_path / 'rotated.png')))


# ---- 7. smaller messages, and nothing written before the checks pass ----

@pytest.mark.slow
def test_a_folder_as_model_path_and_a_file_as_data_path_say_so(data, tmp_path):
    import test as test_script
    with pytest.raises(FRNError, match='--model_path .* is a folder, not a file; give a .pdparams file inside it'):
        test_script.parse_args(['--data_path', str(data), '--model_path', str(tmp_path)])
    with pytest.raises(FRNError, match='--data_path .* is a file, not a folder'):
        test_script.parse_args(['--data_path', str(data / 'train.csv'), '--model_path', str(tmp_path)])


@pytest.mark.slow
def test_a_too_large_n_way_names_the_split_and_the_flag_and_writes_nothing(data, reference, tmp_path):
    one_line_error(run('pretrain.py', '--data_path', str(data), *TRAIN, '--epoch', '1', '--val_n_way', '9',
                       cwd=tmp_path), '--val_n_way 9', 'the val split', 'only 5 classes', 'lower --val_n_way')
    assert not (tmp_path / 'checkpoints').exists() or not any((tmp_path / 'checkpoints').rglob('*.*'))
    result = run('test.py', '--data_path', str(data), *SMALL, '--test_n_way', '7', '--model_path',
                 str(reference['dir'] / 'best_model.pdparams'), '--results_dir', str(tmp_path / 'r'), cwd=tmp_path)
    one_line_error(result, '--test_n_way 7', 'the test split', 'lower --test_n_way')
    assert not (tmp_path / 'r').exists()


def test_one_way_episodes_and_one_class_pretraining_are_refused(data, reference, tmp_path):
    """With one class every query is right: 100% that measures nothing."""
    import meta_train
    import test as test_script
    with pytest.raises(FRNError, match='--test_n_way must be at least 2, not 1'):
        test_script.parse_args(['--data_path', str(data), '--test_n_way', '1', '--model_path',
                                str(reference['dir'] / 'best_model.pdparams')])
    with pytest.raises(FRNError, match='--val_n_way must be at least 2, not 1'):
        meta_train.parse_args(['--data_path', str(data), '--val_n_way', '1'])
    one_class = tmp_path / 'one_class'
    shutil.copytree(data, one_class)
    rows = (one_class / 'train.csv').read_text().splitlines()
    label = rows[1].split(',')[1]
    (one_class / 'train.csv').write_text('\n'.join([rows[0]] + [r for r in rows[1:] if r.endswith(label)]) + '\n')
    one_line_error(run('pretrain.py', '--data_path', str(one_class), *TRAIN, '--epoch', '1', cwd=tmp_path),
                   'has 1 class', 'at least 2')
    assert not (tmp_path / 'checkpoints').exists() or not any((tmp_path / 'checkpoints').rglob('*.*'))


@pytest.mark.slow
def test_a_model_tested_through_its_own_record_reports_the_size_it_ran_at_and_cache_dir_is_refused_first(
        data, reference, tmp_path):
    """A 32 px model tested with --image_size left at 84 runs at 32 px (its preprocess.json): the JSON says 32.
    --cache_dir holds the data's own transform, which this model does not take: refused before any cache is built."""
    args = ['--data_path', str(data), '--model', 'Conv4', '--n_query', '3', '--threads', '1', '--test_task_nums',
            '1', '--test_n_episode', '2', '--results_dir', str(tmp_path / 'r'), '--model_path',
            str(reference['dir'] / 'best_model.pdparams')]
    result = run('test.py', *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / 'r' / '5w1s' / 'mini_imagenet_Conv4_meta_frn.json').read_text())
    assert record['image_size'] == 32 and record['preprocess']['image_size'] == 32
    assert 'it sets the input size, not --image_size 84' in result.stdout
    one_line_error(run('test.py', *args, '--cache_dir', str(tmp_path / 'cache'), cwd=tmp_path),
                   '--cache_dir holds images prepared for the test data\'s own transform')
    assert not (tmp_path / 'cache').exists()


# ---- 8. killed at random points, resumed each time: the weights of an uninterrupted run ----

KILL_AFTER = textwrap.dedent('''
    import os, re, runpy, signal, sys
    pattern, script = sys.argv[1], sys.argv[2]
    real_replace = os.replace
    def replace(src, dst, *a, **k):  # atomic_write's rename: the file is complete once it returns
        real_replace(src, dst, *a, **k)
        if re.fullmatch(pattern, os.path.basename(str(dst))):
            os.kill(os.getpid(), signal.SIGKILL)
    os.replace = replace
    sys.argv = [script] + sys.argv[3:]
    sys.path.insert(0, os.path.dirname(script))
    runpy.run_path(script, run_name='__main__')
''')
# right after an epoch's <epoch>.pdopt, before last_model.*: the gap between the epoch's two checkpoint writes
GAP = r'[0-9]+\.pdopt'


def assert_same_weights(reference_dir, folder):
    for name in ('last_model.pdparams', 'best_model.pdparams'):
        straight, resumed = weights(reference_dir / name), weights(folder / name)
        assert straight.keys() == resumed.keys()
        for key in straight:
            np.testing.assert_array_equal(straight[key], resumed[key], err_msg=f'{name}: {key}')
    assert not temp_files(folder) and 'run.lock' not in os.listdir(folder)


@pytest.mark.slow
def test_kills_at_random_moments_and_between_the_checkpoint_writes_each_resume_bit_identical(data, reference,
                                                                                            tmp_path):
    """Runs are killed and resumed with --resume auto until one finishes: a chain.

    Kill moments alternate: a random time, or right after a <epoch>.pdopt is written (an os.replace
    hook in the process), which leaves that epoch's state newer than last_model's, or none at all
    after epoch 0. With --save_freq 2, epochs 0, 2, 4, 6 and 7 write <epoch>.* (the weights do not
    depend on it). A chain that finishes is checked against the uninterrupted run, and a new one
    starts, until at least four kills of each kind have been resumed and checked.
    """
    rng = random.Random(17)
    command = [str(REPO / 'pretrain.py'), '--data_path', str(data), *TRAIN, '--epoch', '8', '--save_freq', '2',
               '--resume', 'auto']
    folder, runs = run_dir(tmp_path), 0
    checked, pending = {'gap': 0, 'random': 0}, {'gap': 0, 'random': 0}
    enough = lambda counts: min(counts.values()) >= 4  # noqa: E731
    while not enough(checked):
        runs += 1
        assert runs <= 80, f'only {checked} kills were resumed and checked in 80 runs'
        kind = 'gap' if runs % 2 else 'random'
        more = not enough({k: checked[k] + pending[k] for k in checked})
        hook = [sys.executable, '-c', KILL_AFTER, GAP if kind == 'gap' and more else 'never-matches'] + command
        proc = subprocess.Popen(hook, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if kind == 'random':
            time.sleep(rng.uniform(0.3, max(1.0, 0.8 * reference['seconds'])))
            if more and proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=TIMEOUT)
        assert proc.returncode in (0, -signal.SIGKILL), err
        if proc.returncode != 0:
            pending[kind] += 1
            continue
        assert_same_weights(reference['dir'], folder)  # the chain finished: the uninterrupted run's weights
        checked = {k: checked[k] + pending[k] for k in checked}
        pending = {'gap': 0, 'random': 0}
        shutil.rmtree(folder)


def test_resume_auto_continues_a_rewound_run_not_the_later_epochs_it_abandoned(reference, tmp_path):
    """A run resumed from 0.pdparams and stopped after epoch 0 again leaves the first run's 7.pdopt behind, older
    than its last_model.pdopt: that is not continued. A 7.pdopt newer than last_model.pdopt is a kill's gap."""
    from engine.trainer import newest_state
    folder = shutil.copytree(reference['dir'], tmp_path / 'run')
    shutil.copy(folder / '0.pdopt', folder / 'last_model.pdopt')  # the rewound run, at epoch 0, written last
    os.utime(folder / '7.pdopt', (1_000_000, 1_000_000))
    path, state = newest_state(str(folder))
    assert os.path.basename(path) == 'last_model.pdopt' and state['epoch'] == 0
    os.utime(folder / 'last_model.pdopt', (500_000, 500_000))  # now 7.pdopt came after it
    path, state = newest_state(str(folder))
    assert os.path.basename(path) == '7.pdopt' and state['epoch'] == 7


@pytest.mark.parametrize('pattern', ['0\\.pdopt', '7\\.pdopt', 'last_model\\.pdparams'])
@pytest.mark.slow
def test_a_kill_between_an_epochs_checkpoint_files_resumes_from_its_newest_complete_state(pattern, data, reference,
                                                                                          tmp_path):
    """0.pdopt: no last_model yet (--resume auto once refused: 'no last_model.pdopt'); 7.pdopt: the last epoch,
    so nothing is left to train and last_model.* must be caught up from 7.*; last_model.pdparams: its .pdopt is
    one epoch behind."""
    command = [str(REPO / 'pretrain.py'), '--data_path', str(data), *TRAIN, '--epoch', '8', '--resume', 'auto']
    killed = subprocess.run([sys.executable, '-c', KILL_AFTER, pattern, *command], cwd=tmp_path,
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    folder = run_dir(tmp_path)
    resumed = subprocess.run([sys.executable, *command], cwd=tmp_path, capture_output=True, text=True,
                             timeout=TIMEOUT)
    assert resumed.returncode == 0, resumed.stderr
    log = (folder / 'output.log').read_text()
    if pattern.startswith('0'):
        assert 'resumed from' in log and '0.pdopt: epoch 0 done' in log
    if pattern.startswith('7'):
        assert 'copied from it' in log and 'Epoch 7 | lr' not in log.split('resumed from')[-1]
    assert_same_weights(reference['dir'], folder)
    last = paddle.load(str(folder / 'last_model.pdopt'))
    assert last['epoch'] == 7
