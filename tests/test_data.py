"""Episodes, batches and transforms on real photographs."""
import numpy as np
import pytest
from PIL import Image

from data.datamgr import SetDataManager, SimpleDataManager
from data.dataset import EpisodicBatchSampler, SetDataset
from data.images import load_image
from data.filelist import read_split
from data.transforms import MEAN, STD, eval_resize, eval_transform, train_transform
from utils import FRNError


@pytest.fixture(scope='module')
def val_split(tiny_mini):
    return read_split(str(tiny_mini), 'val')


def episodes(split, seed, n_way=5, n_support=2, n_query=3, n_episode=3, num_workers=0, aug=False, epoch=0):
    loader = SetDataManager(32, n_way, n_support, n_query, n_episode, num_workers=num_workers,
                            seed=seed).get_data_loader(split, aug=aug)
    loader.set_epoch(epoch)
    return [(x.numpy(), y.numpy()) for x, y in loader]


def test_episode_batches_are_class_major_with_the_right_shape(val_split):
    for x, y in episodes(val_split, seed=0):
        assert x.shape == (5, 5, 3, 32, 32) and x.dtype == np.float32
        assert y.shape == (5, 5)
        assert (y == y[:, :1]).all()              # each row is one class
        assert len(set(y[:, 0])) == 5             # and the classes are distinct


def test_episode_images_are_distinct_and_from_their_class():
    split_sizes = [40] * 5
    sampler = EpisodicBatchSampler(5, 5, 50, n_per_class=17, class_sizes=split_sizes, seed=1)
    for episode in sampler:
        assert len({c for c, _, _ in episode}) == 5
        for _, positions, _ in episode:
            assert len(set(positions)) == 17 and max(positions) < 40


def test_set_dataset_returns_images_of_the_requested_class(val_split):
    dataset = SetDataset(val_split, eval_transform(32))
    images, labels = dataset[(3, (0, 5, 7), 123)]
    assert images.shape == (3, 3, 32, 32) and list(labels) == [3, 3, 3]
    members = val_split.class_members()[3]
    expected = eval_transform(32)(load_image(val_split.image_paths[members[5]]))
    np.testing.assert_array_equal(images[1], expected)


def test_same_seed_gives_identical_episodes_and_other_seeds_differ(val_split):
    a, b, c = episodes(val_split, seed=7, aug=True), episodes(val_split, seed=7, aug=True), episodes(val_split, seed=8)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert any((ya != yc).any() for (_, ya), (_, yc) in zip(a, c))


def test_epochs_draw_new_episodes(val_split):
    first, second = episodes(val_split, seed=7, epoch=0), episodes(val_split, seed=7, epoch=1)
    assert any((x0 != x1).any() for (x0, _), (x1, _) in zip(first, second))


def test_episodes_do_not_depend_on_num_workers(val_split):
    serial, parallel = episodes(val_split, seed=5, aug=True), episodes(val_split, seed=5, aug=True, num_workers=2)
    assert len(serial) == len(parallel) == 3
    for (xs, ys), (xp, yp) in zip(serial, parallel):
        np.testing.assert_array_equal(xs, xp)
        np.testing.assert_array_equal(ys, yp)


def test_pretraining_batches_are_shuffled_reproducibly_and_cover_the_split(tiny_mini):
    split = read_split(str(tiny_mini), 'train')

    def epoch_labels(seed, epoch):
        loader = SimpleDataManager(32, 64, seed=seed).get_data_loader(split, aug=True)
        loader.set_epoch(epoch)
        batches = [(x.numpy(), y.numpy()) for x, y in loader]
        assert all(x.shape == (64, 3, 32, 32) for x, _ in batches)
        return batches

    run1, run2, other_epoch = epoch_labels(0, 0), epoch_labels(0, 0), epoch_labels(0, 1)
    assert len(run1) == len(split) // 64  # the last, partial batch is dropped (BatchNorm needs real batches)
    for (x1, y1), (x2, y2) in zip(run1, run2):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    labels = np.concatenate([y for _, y in run1])
    assert len(set(labels)) == 8 and not (labels[:64] == np.sort(labels[:64])).all()
    assert any((y1 != y3).any() for (_, y1), (_, y3) in zip(run1, other_epoch))


def test_impossible_episodes_are_refused_before_any_work(val_split):
    with pytest.raises(FRNError, match='lower --n_shot or --n_query'):
        SetDataManager(32, 5, 30, 15, 2).get_data_loader(val_split, aug=False)
    with pytest.raises(FRNError, match='at least 6 classes'):
        SetDataManager(32, 6, 1, 1, 2).get_data_loader(val_split, aug=False)


# ---- transforms ----

def test_eval_transform_normalises_with_the_imagenet_statistics():
    colour = (200, 100, 50)
    out = eval_transform(84)(Image.new('RGB', (500, 375), colour))
    assert out.shape == (3, 84, 84) and out.dtype == np.float32
    expected = (np.array(colour) / 255.0 - MEAN) / STD
    np.testing.assert_allclose(out.reshape(3, -1).mean(1), expected, rtol=1e-5)
    np.testing.assert_allclose(out.reshape(3, -1).std(1), 0, atol=1e-6)


def test_eval_transform_resizes_the_shorter_side_then_centre_crops():
    assert eval_resize(84) == 92 and eval_resize(32) == 35
    img = np.zeros((184, 300, 3), np.uint8)
    img[:, 150:] = 255                                    # right half white
    out = eval_transform(84)(Image.fromarray(img))       # 184x300 -> 92x150, keep columns 33..116
    assert out.shape == (3, 84, 84)
    black, white = -np.array(MEAN) / np.array(STD), (1 - np.array(MEAN)) / np.array(STD)
    assert np.allclose(out[:, :, 20], black[:, None], atol=1e-5)   # resized column 53
    assert np.allclose(out[:, :, 70], white[:, None], atol=1e-5)   # resized column 103


def test_train_transform_is_random_but_repeatable_under_a_seed():
    from data.dataset import seeded_global_rngs
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8))
    transform = train_transform(84)
    with seeded_global_rngs(1):
        a = transform(img)
    with seeded_global_rngs(1):
        b = transform(img)
    with seeded_global_rngs(2):
        c = transform(img)
    assert a.shape == (3, 84, 84) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize('mode', ['L', 'CMYK', 'P'])
def test_greyscale_cmyk_and_palette_images_load_as_rgb(tmp_path, mode):
    path = tmp_path / ('img.jpg' if mode != 'P' else 'img.png')
    Image.new(mode, (40, 30), 100 if mode != 'CMYK' else (10, 20, 30, 40)).save(path)
    img = load_image(str(path))
    assert img.mode == 'RGB' and img.size == (40, 30)
    assert eval_transform(84)(img).shape == (3, 84, 84)


def test_unreadable_image_is_a_clear_error(tmp_path):
    path = tmp_path / 'broken.jpg'
    path.write_bytes(b'not a jpeg')
    with pytest.raises(FRNError, match='broken.jpg'):
        load_image(str(path))
