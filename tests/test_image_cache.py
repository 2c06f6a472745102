"""The pre-resized image cache: bit-identical eval tensors, train copies, and manifests that notice changed sources."""
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
from paddle.vision import transforms as T
from PIL import Image

from conftest import REPO, load_tool
from data.datamgr import SetDataManager, SimpleDataManager
from data.filelist import read_split
from data.image_cache import CachedSplit, open_cache, train_short_side
from data.transforms import MEAN, STD, Normalized, ToNumpy, eval_transform
from utils import FRNError

# (width, height, mode, format): full-size photos both ways up, small ones, and modes that need converting
SYNTHETIC = [(500, 375, 'RGB', 'JPEG'), (375, 500, 'RGB', 'JPEG'), (120, 90, 'RGB', 'JPEG'), (84, 84, 'RGB', 'JPEG'),
             (300, 200, 'L', 'JPEG'), (200, 300, 'RGBA', 'PNG'), (260, 180, 'CMYK', 'JPEG')]


def synthetic_photo(width, height, mode, seed):
    """Smooth colour fields plus noise: compresses and resizes like a photo."""
    rng = np.random.default_rng(seed)
    base = Image.fromarray((rng.random((6, 8, 3)) * 255).astype(np.uint8)).resize((width, height), Image.BICUBIC)
    noisy = np.clip(np.asarray(base).astype(np.int16) + rng.integers(-25, 25, (height, width, 3)), 0, 255)
    img = Image.fromarray(noisy.astype(np.uint8))
    return img.convert('RGBA') if mode == 'RGBA' else img.convert(mode)


@pytest.fixture(scope='module')
def folders(tmp_path_factory):
    """A class-per-folder dataset of synthetic photos of the SYNTHETIC sizes and modes, 2 classes per split."""
    root = tmp_path_factory.mktemp('folders')
    for split in ('train', 'val', 'test'):
        for c, cls in enumerate(('a', 'b')):
            (root / split / cls).mkdir(parents=True)
            for i, (w, h, mode, fmt) in enumerate(SYNTHETIC):
                ext = 'png' if fmt == 'PNG' else 'jpg'
                synthetic_photo(w, h, mode, seed=100 * c + i).save(root / split / cls / f'{i}.{ext}', fmt, quality=90)
    return root


def eval_tensors(split, image_size):
    """Every image as the eval episodes see it (through SetDataset and the split's transform)."""
    dataset = SetDataManager(image_size, 2, 1, 1, 1).get_data_loader(split, aug=False).dataset
    return [dataset.transform(split.load_image(i)) for i in range(len(split))]


def test_normalized_table_is_bitwise_paddles_to_tensor_and_normalize(tiny_mini, folders):
    reference = T.Compose([T.ToTensor(), T.Normalize(mean=MEAN, std=STD), ToNumpy()])
    normalized = Normalized()
    split = read_split(str(tiny_mini), 'val')
    images = [split.load_image(i) for i in range(0, len(split), 2)]
    images += [Image.open(p).convert('RGB').resize((84, 84)) for p in sorted(folders.glob('test/*/*'))]
    every_value = Image.fromarray(np.arange(256 * 3, dtype=np.int64).reshape(16, 16, 3).astype(np.uint8))
    for img in images + [every_value]:
        out = normalized(img)
        assert out.dtype == np.float32 and out.shape == (3, img.height, img.width)
        np.testing.assert_array_equal(out, reference(img))


@pytest.mark.parametrize('image_size', [84, 32])
def test_eval_cache_gives_bit_identical_tensors_to_decoding_the_files(tiny_mini, folders, tmp_path, image_size):
    for root in (tiny_mini, folders):
        for name in ('val', 'test'):
            split = read_split(str(root), name)
            cached = open_cache(split, str(tmp_path), name, image_size, log=lambda m: None)
            assert cached.prepared == ('eval', image_size)
            assert all(cached.pixels(i).shape == (image_size, image_size, 3) for i in range(len(cached)))
            for a, b in zip(eval_tensors(split, image_size), eval_tensors(cached, image_size)):
                np.testing.assert_array_equal(a, b)


def test_train_cache_resizes_large_images_to_the_short_side_and_keeps_small_ones(tiny_mini, folders, tmp_path):
    short = train_short_side(84)
    assert short == 128
    split = read_split(str(folders), 'train')
    cached = open_cache(split, str(tmp_path), 'train', 84, log=lambda m: None)
    assert cached.prepared is None  # the usual train transform applies
    for i in range(len(split)):
        original = split.load_image(i)
        h, w, _ = cached.pixels(i).shape
        if min(original.size) <= short:
            np.testing.assert_array_equal(cached.pixels(i), np.asarray(original))
        else:
            assert min(h, w) == short and abs(w / h - original.width / original.height) < 0.01
    tiny = read_split(str(tiny_mini), 'train')  # 32 x 32 photos are kept as they are
    cached_tiny = open_cache(tiny, str(tmp_path), 'train', 84, log=lambda m: None)
    np.testing.assert_array_equal(cached_tiny.pixels(7), np.asarray(tiny.load_image(7)))
    loader = SimpleDataManager(84, 4, seed=1).get_data_loader(cached, aug=True)
    x, y = next(iter(loader))
    assert list(x.shape) == [4, 3, 84, 84]


def test_changed_or_missing_source_images_make_the_cache_stale_with_the_fix(folders, tmp_path_factory):
    data = tmp_path_factory.mktemp('changing')
    os.symlink(folders / 'train', data / 'train')
    os.symlink(folders / 'val', data / 'val')
    (data / 'test').mkdir()
    for cls in ('a', 'b'):
        (data / 'test' / cls).mkdir()
        for f in sorted((folders / 'test' / cls).iterdir()):
            (data / 'test' / cls / f.name).write_bytes(f.read_bytes())
    cache_dir = str(data / 'cache')
    open_cache(read_split(str(data), 'test'), cache_dir, 'test', 84, log=lambda m: None)
    changed = data / 'test' / 'b' / '0.jpg'
    synthetic_photo(500, 375, 'RGB', seed=999).save(changed, quality=90)
    with pytest.raises(FRNError, match=re.escape(str(changed))) as err:
        open_cache(read_split(str(data), 'test'), cache_dir, 'test', 84)
    assert 'out of date' in str(err.value) and 'build_image_cache.py' in str(err.value) and '--rebuild' in str(err.value)
    load_tool('build_image_cache').main(['--data_path', str(data), '--cache_dir', cache_dir, '--splits', 'test',
                                         '--rebuild'])
    rebuilt = open_cache(read_split(str(data), 'test'), cache_dir, 'test', 84)
    for a, b in zip(eval_tensors(read_split(str(data), 'test'), 84), eval_tensors(rebuilt, 84)):
        np.testing.assert_array_equal(a, b)
    listed = read_split(str(data), 'test')  # a file list (as the JSON/CSV layouts keep) that outlives a file
    os.remove(data / 'test' / 'a' / '3.jpg')
    with pytest.raises(FRNError, match='1 of 14 source images changed.*3.jpg is missing'):
        open_cache(listed, cache_dir, 'test', 84)


def test_a_cache_without_its_manifest_is_rebuilt_and_a_missing_one_can_be_required(folders, tmp_path):
    split = read_split(str(folders), 'val')
    with pytest.raises(FRNError, match='build_image_cache.py'):
        open_cache(split, str(tmp_path), 'val', 84, build_missing=False)
    messages = []
    cached = open_cache(split, str(tmp_path), 'val', 84, log=messages.append)
    assert any('building' in m for m in messages)
    os.remove(cached.pixels_path[:-len('.u8')] + '.json')  # as if the build was interrupted
    messages.clear()
    open_cache(split, str(tmp_path), 'val', 84, log=messages.append)
    assert any('building' in m for m in messages)


def test_a_cached_split_subsets_and_pickles_without_its_pixels(tiny_mini, tmp_path):
    split = read_split(str(tiny_mini), 'test')
    cached = open_cache(split, str(tmp_path), 'test', 84, log=lambda m: None)
    cached.load_image(0)  # opens the memory map
    assert len(pickle.dumps(cached)) < os.path.getsize(cached.pixels_path) / 10
    again = pickle.loads(pickle.dumps(cached))
    np.testing.assert_array_equal(again.pixels(5), cached.pixels(5))
    sub, sub_cached = split.subset([3, 1]), cached.subset([3, 1])
    assert isinstance(sub_cached, CachedSplit) and sub_cached.image_paths == sub.image_paths
    transform = eval_transform(84)
    for i in (0, len(sub) - 1):
        np.testing.assert_array_equal(Normalized()(sub_cached.pixels(i)), transform(sub.load_image(i)))


@pytest.mark.slow
def test_test_py_with_cache_dir_and_workers_prints_the_same_accuracies(tiny_mini, tmp_path):
    import paddle
    from methods.FRN import FRN
    paddle.seed(0)
    checkpoint = tmp_path / 'model.pdparams'
    paddle.save(FRN(backbone='Conv4', image_size=32).state_dict(), str(checkpoint))
    args = ['--data_path', str(tiny_mini), '--model', 'Conv4', '--image_size', '32', '--n_query', '3',
            '--test_task_nums', '1', '--test_n_episode', '4', '--threads', '2', '--model_path', str(checkpoint),
            '--results_dir', str(tmp_path)]
    outputs = []
    for extra in ([], ['--cache_dir', str(tmp_path / 'cache'), '--num_workers', '2']):
        result = subprocess.run([sys.executable, str(REPO / 'test.py'), *args, *extra], cwd=tmp_path,
                                capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
        outputs.append(re.findall(r'^\d+ Test Acc = .*$', result.stdout, flags=re.M))
    assert len(outputs[0]) == 1 and outputs[0] == outputs[1]
    assert [p.suffix for p in sorted((tmp_path / 'cache').iterdir())] == ['.json', '.u8']
