"""Per-dataset transforms as the official experiments use them: train type 0/1, eval resize shorter/square/none."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from data.transforms import (MEAN, STD, OFFICIAL_TRANSFORMS, eval_transform, official_transforms,
                             prepared_eval_transform, train_transform)

S = 32
RED_CHANNEL = (1.0 - MEAN[0]) / STD[0]  # a pure red pixel's first channel after Normalize


def wide_image_with_red_left_edge():
    """96 x 32 grey, its leftmost 16 columns red: the square resize keeps them, the shorter-side one crops them."""
    pixels = np.full((32, 96, 3), 128, np.uint8)
    pixels[:, :16] = (255, 0, 0)
    return Image.fromarray(pixels)


def test_each_dataset_defaults_to_the_official_choice():
    assert OFFICIAL_TRANSFORMS['mini_imagenet'] == (0, 'shorter') and OFFICIAL_TRANSFORMS['custom'] == (0, 'shorter')
    assert official_transforms('cub', '/data/CUB_fewshot_cropped') == (0, 'square')
    assert official_transforms('cub', '/data/CUB_fewshot_raw/') == (0, 'shorter')
    assert official_transforms('aircraft', '/data/Aircraft_fewshot') == (0, 'square')
    assert official_transforms('tiered_imagenet', '/data/tiered') == (1, 'none')


def test_square_resize_keeps_the_whole_width_and_shorter_side_crops_it():
    image = wide_image_with_red_left_edge()
    square = eval_transform(S, 'square')(image)
    shorter = eval_transform(S, 'shorter')(image)
    assert square.shape == shorter.shape == (3, S, S)
    assert square[0, :, 0].min() > RED_CHANNEL - 0.05          # the red edge is still there
    assert shorter[0, :, 0].max() < RED_CHANNEL - 1.0          # cropped away: the middle is grey


def test_no_resize_only_centre_crops_and_normalises():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (S, S, 3), dtype=np.uint8))
    np.testing.assert_array_equal(eval_transform(S, 'none')(image), prepared_eval_transform()(image))
    big = Image.fromarray(rng.integers(0, 256, (S + 10, S + 10, 3), dtype=np.uint8))
    np.testing.assert_array_equal(eval_transform(S, 'none')(big), prepared_eval_transform()(big.crop((5, 5, 5 + S, 5 + S))))


def test_train_type_1_pads_and_crops_without_rescaling():
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (S, S, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    padded = 0.0
    for seed in range(12):
        import random
        import paddle
        random.seed(seed)
        np.random.seed(seed)
        paddle.seed(seed)
        x = train_transform(S, 1)(image)
        assert x.shape == (3, S, S)
        padded += float(np.mean(np.all(np.isclose(x, -np.array(MEAN)[:, None, None] / np.array(STD)[:, None, None],
                                                  atol=0.35), axis=0)))
    assert padded > 0  # some crops reach into the zero padding (black, before jitter)
    with pytest.raises(ValueError, match='train transform type'):
        train_transform(S, 2)


@pytest.mark.slow
def test_test_py_records_the_transforms_and_refuses_them_with_the_image_cache(tiny_mini, tmp_path):
    model = tmp_path / 'frn.pdparams'
    import paddle
    from methods.FRN import FRN
    paddle.save(FRN(backbone='Conv4', image_size=S).state_dict(), str(model))
    base = [sys.executable, str(REPO / 'test.py'), '--data_path', str(tiny_mini), '--model', 'Conv4', '--image_size',
            str(S), '--n_query', '3', '--model_path', str(model), '--test_task_nums', '1', '--test_n_episode', '2',
            '--results_dir', str(tmp_path / 'results'), '--threads', '1']
    done = subprocess.run(base + ['--eval_resize', 'square'], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / 'results' / '5w1s' / 'mini_imagenet_Conv4_meta_frn.json').read_text())
    assert result['eval_resize'] == 'square' and result['train_transform_type'] == 0
    assert 'transforms: train type 0 (RandomResizedCrop), eval resize square' in done.stdout
    refused = subprocess.run(base + ['--eval_resize', 'none', '--cache_dir', str(tmp_path / 'cache')], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and '--cache_dir stores images resized for' in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize('mode', ['shorter', 'square', 'none'])
def test_the_preprocessing_record_of_each_eval_resize_rebuilds_the_same_transform(mode):
    from data import preprocess
    image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (40, 70, 3), dtype=np.uint8))
    record = json.loads(json.dumps(preprocess.record_for('cub', S, mode)))  # as a sidecar holds it
    np.testing.assert_array_equal(preprocess.eval_transform_from(record)(image), eval_transform(S, mode)(image))
