"""The preparation tools against bad inputs and bad luck: each case a real file, a one-line error, nothing left.

Cases from a battery of bad inputs run against tools/prepare_cub.py: repeated file names,
a run killed with SIGKILL, names that climb out of --dst, archives cut short, non-UTF-8
metadata, a full disk, a --dst that is a file, and an image header claiming billions of pixels.
"""
import io
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

import utils
from conftest import REPO, jpeg_claiming
from data import prepare_fewshot
from data.decode import decode_image
from test_prepare_datasets import CUB, edit_line, make_cub, pack, run_failing, tree


def one_line_error(capsys, *argv):
    code, err = run_failing('prepare_cub', capsys, *argv)
    assert code == 2 and err.startswith('error: ') and len(err.strip().splitlines()) == 1, err
    assert 'Traceback' not in err
    return err


# --- names ---------------------------------------------------------------------------------------------

def test_inside_joins_names_and_refuses_any_that_leave_the_root(tmp_path):
    assert utils.inside(tmp_path, 'train', '002.Bird', 'a b.png') == str(tmp_path / 'train' / '002.Bird' / 'a b.png')
    for bad in ('../../escaped', '/etc/passwd', '', '.', 'a/../../b', 'x\0y', '..'):
        with pytest.raises(utils.FRNError, match='cannot become a file or folder name'):
            utils.inside(tmp_path, 'train', bad)


def test_a_class_name_that_climbs_out_of_dst_is_refused_and_nothing_is_written_outside(tmp_path, capsys):
    base = tmp_path / 'src'
    make_cub(base)
    edit_line(base / CUB / 'classes.txt', 1, '2 ../../../../../escaped_cub')
    err = one_line_error(capsys, str(base), '--dst', str(tmp_path / 'a' / 'b' / 'out'))
    assert '../../../../../escaped_cub' in err
    assert not list(tmp_path.rglob('escaped_cub')) and not (tmp_path / 'a').exists()


def test_two_images_of_a_class_with_one_file_name_are_refused(tmp_path, capsys):
    base = tmp_path / 'src'
    images = make_cub(base)
    edit_line(base / CUB / 'images.txt', 1, f'2 {images[1][1]}')   # image 2 listed under image 1's file name
    err = one_line_error(capsys, str(base), '--dst', str(tmp_path / 'out'))
    assert 'would both be written as' in err and os.path.basename(images[1][1])[:-4] in err
    assert not (tmp_path / 'out').exists()


# --- archives and metadata -----------------------------------------------------------------------------

def test_an_archive_cut_short_before_its_first_tar_block_is_named_as_truncated(tmp_path, capsys):
    base = tmp_path / 'src'
    make_cub(base)
    archive = pack(base, tmp_path / 'CUB_200_2011.tgz')
    archive.write_bytes(archive.read_bytes()[:300])   # gzip of less than one 512-byte tar block
    err = one_line_error(capsys, str(archive), '--dst', str(tmp_path / 'out'))
    assert 'CUB_200_2011.tgz' in err and 'truncated' in err
    assert not (tmp_path / 'out').exists()


def test_a_non_utf8_byte_is_reported_in_the_file_that_holds_it(tmp_path, capsys):
    base = tmp_path / 'src'
    make_cub(base)
    path = base / CUB / 'classes.txt'
    path.write_bytes(path.read_bytes().replace(b'Bird_1', b'Bird_\xe9', 1))
    err = one_line_error(capsys, str(base), '--dst', str(tmp_path / 'out'))
    assert 'classes.txt is not a UTF-8 text file' in err and 'bounding_boxes' not in err


def noise_png_bytes(size):
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(buffer, 'PNG')
    return buffer.getvalue()


def test_an_image_claiming_more_than_the_decompression_bomb_limit_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(utils.FRNError, match="bomb.jpg claims more pixels than Pillow's decompression-bomb limit"):
        decode_image(jpeg_claiming(60000, 60000), 'bomb.jpg')   # 3.6 billion pixels
    base = tmp_path / 'src'
    images = make_cub(base)
    (base / CUB / 'images' / images[3][1]).write_bytes(jpeg_claiming(60000, 60000))
    err = one_line_error(capsys, str(base), '--dst', str(tmp_path / 'out'))
    assert os.path.basename(images[3][1]) in err and 'decompression-bomb' in err
    assert not (tmp_path / 'out').exists()


# --- the destination -----------------------------------------------------------------------------------

@pytest.mark.parametrize('where', ['dst', 'parent'])
def test_a_dst_that_is_a_file_or_lies_under_one_is_named_as_such(where, tmp_path, capsys):
    base = tmp_path / 'src'
    make_cub(base)
    (tmp_path / 'afile').write_text('mine')
    dst = tmp_path / 'afile' if where == 'dst' else tmp_path / 'afile' / 'out'
    err = one_line_error(capsys, str(base), '--dst', str(dst))
    assert f"{tmp_path / 'afile'}'" in err and 'is a file, not a folder; give a folder' in err
    assert (tmp_path / 'afile').read_text() == 'mine'


def test_a_full_disk_is_a_one_line_error_naming_the_file_and_nothing_is_left(small_disk, tmp_path, capsys):
    base = tmp_path / 'src'
    images = make_cub(base)
    for _, rel, _, _ in images.values():   # noise PNGs do not compress: 16 x ~60 KB fill 300 KB
        (base / CUB / 'images' / rel).write_bytes(noise_png_bytes((140, 140)))
    edit = [f'{iid} 0.0 0.0 140.0 140.0' for iid in images]
    (base / CUB / 'bounding_boxes.txt').write_text('\n'.join(edit) + '\n')
    err = one_line_error(capsys, str(base), '--dst', str(small_disk / 'out'))
    assert 'No space left on device' in err and 'the disk is full' in err and str(small_disk / 'out') in err
    assert os.listdir(small_disk) == []


# --- a killed run ----------------------------------------------------------------------------------------

SLOW_RUN = '''
import sys, time
sys.path.insert(0, {repo!r})
from data import prepare_fewshot
crop = prepare_fewshot.crop
def slow_crop(*args, **kwargs):
    time.sleep(0.2)
    return crop(*args, **kwargs)
prepare_fewshot.crop = slow_crop
prepare_fewshot.prepare_cub({src!r}, {dst!r})
'''


def start_slow_run(src, dst):
    code = SLOW_RUN.format(repo=str(REPO), src=str(src), dst=str(dst))
    return subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for_partial(dst, run, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        partials = [p for p in dst.glob('.CUB_fewshot_cropped.*.partial') if list(p.rglob('*.png'))]
        if partials:
            return partials[0]
        assert run.poll() is None, run.stderr.read().decode()
        time.sleep(0.05)
    raise AssertionError('the slow run never started writing')


def test_a_run_killed_with_sigkill_leaves_a_partial_folder_that_the_next_run_removes(tmp_path, capsys):
    base = tmp_path / 'src'
    make_cub(base)
    dst = tmp_path / 'out'
    run = start_slow_run(base, dst)
    partial = wait_for_partial(dst, run)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    assert partial.is_dir()   # what SIGKILL leaves: nothing can clean up inside the killed process
    prepare_fewshot.prepare_cub(base, dst)
    assert sorted(os.listdir(dst)) == ['CUB_fewshot_cropped', 'CUB_fewshot_raw']
    assert f'removed {partial}, left by an interrupted run' in capsys.readouterr().err
    assert len(tree(dst / 'CUB_fewshot_cropped')) == 17   # 16 crops and split.json


def test_a_second_run_leaves_a_live_run_alone_and_says_so(tmp_path, capsys):
    base = tmp_path / 'src'
    make_cub(base)
    dst = tmp_path / 'out'
    run = start_slow_run(base, dst)
    try:
        partial = wait_for_partial(dst, run)
        err = one_line_error(capsys, str(base), '--dst', str(dst))
        assert f'another run (pid {run.pid}) is preparing CUB_fewshot_cropped in {dst}' in err
        assert partial.is_dir()   # the live run's folder was not touched
    finally:
        run.kill()
        run.wait()
