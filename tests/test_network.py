"""The backbones and the FRN head, specified without reference data.

Agreement with the official PyTorch outputs is in test_frn_official.py; this file pins
the architecture, the initialisation, BatchNorm's conventions and the head's algebra.
"""
import math

import numpy as np
import paddle
import pytest

from methods.episode import episode_images, episode_order, query_targets, split_episode
from methods.FRN import FRN, auxrank
from methods.ridge import neg_l2_dist, recon_dist, ridge_lambda
from network import Conv4, ResNet12, build_backbone
from utils import FRNError

MOMENTUM_F32 = float(np.float32(0.9))  # Paddle holds BatchNorm's momentum in float32


def official_keys(backbone):
    """The official FRN state-dict keys (fine-tuning format), spelled out from the official architecture."""
    bn = ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked')
    keys = ['scale', 'r']
    if backbone == 'ResNet12':
        for stage in range(1, 5):
            block = f'feature_extractor.layer{stage}.0.'
            for i in (1, 2, 3):
                keys += [f'{block}conv{i}.weight'] + [f'{block}bn{i}.{b}' for b in bn]
            keys += [f'{block}downsample.0.weight'] + [f'{block}downsample.1.{b}' for b in bn]
    else:
        for index in (0, 3, 6, 9):
            block = f'feature_extractor.layers.{index}.layers.'
            keys += [f'{block}0.weight', f'{block}0.bias'] + [f'{block}1.{b}' for b in bn]
    return keys


def ours(key):
    return key.replace('running_mean', '_mean').replace('running_var', '_variance')


# --- backbones ---------------------------------------------------------------------------------

@pytest.mark.parametrize('backbone, channels', [('ResNet12', 640), ('Conv4', 64)])
def test_backbone_turns_84px_images_into_5x5_maps(backbone, channels):
    net = build_backbone(backbone)
    net.eval()
    with paddle.no_grad():
        out = net(paddle.rand([2, 3, 84, 84]))
    assert out.shape == [2, channels, 5, 5]
    assert net.out_channels == channels


@pytest.mark.parametrize('size, side', [(32, 2), (80, 5), (92, 5), (100, 6)])
def test_output_size_is_four_floor_halvings_as_in_the_forward_pass(size, side):
    net = Conv4()
    net.eval()
    with paddle.no_grad():
        out = net(paddle.rand([1, 3, size, size]))
    assert Conv4.output_size(size) == ResNet12.output_size(size) == side == out.shape[-1] == out.shape[-2]


def test_resnet12_at_32px_gives_2x2_maps():
    net = ResNet12()
    net.eval()
    with paddle.no_grad():
        assert net(paddle.rand([1, 3, 32, 32])).shape == [1, 640, 2, 2]


@pytest.mark.parametrize('backbone, count', [('ResNet12', 98), ('Conv4', 30)])
def test_parameter_names_are_the_official_ones_with_paddle_batchnorm_buffers(backbone, count):
    expected = [ours(k) for k in official_keys(backbone) if not k.endswith('num_batches_tracked')]
    model = FRN(backbone=backbone)
    assert len(official_keys(backbone)) == count
    assert list(model.state_dict()) == expected


def test_resnet12_init_is_kaiming_normal_fan_out_with_unit_batchnorm():
    paddle.seed(0)
    net = ResNet12()
    for name, p in net.named_parameters():
        w = p.numpy()
        if name.endswith(('conv1.weight', 'conv2.weight', 'conv3.weight', 'downsample.0.weight')):
            fan_out = w.shape[0] * w.shape[2] * w.shape[3]
            std = math.sqrt(2 / fan_out)
            assert abs(w.mean()) < 5 * std / math.sqrt(w.size), name
            assert w.std() == pytest.approx(std, rel=5 / math.sqrt(w.size)), name
        elif name.endswith('.weight'):
            assert np.all(w == 1), name
        elif name.endswith('.bias'):
            assert np.all(w == 0), name
    assert not any(sub.bias is not None for sub in net.sublayers() if isinstance(sub, paddle.nn.Conv2D))


def test_conv4_init_is_torch_default_uniform_of_one_over_sqrt_fan_in():
    paddle.seed(0)
    net = Conv4()
    convs = [sub for sub in net.sublayers() if isinstance(sub, paddle.nn.Conv2D)]
    assert len(convs) == 4
    for conv in convs:
        bound = 1 / math.sqrt(conv.weight.shape[1] * 9)
        for p in (conv.weight, conv.bias):
            w = p.numpy()
            assert np.abs(w).max() <= bound
            assert np.abs(w).max() > 0.9 * bound
        assert conv.weight.numpy().std() == pytest.approx(bound / math.sqrt(3), rel=0.1)


def test_batchnorm_uses_eps_1e5_and_torch_momentum_0_1():
    bn = [sub for sub in Conv4().sublayers() if isinstance(sub, paddle.nn.BatchNorm2D)][0]
    rng = np.random.default_rng(0)
    mean0, var0 = rng.random(64) * 2 - 1, rng.random(64) + 0.5
    bn._mean.set_value(mean0.astype('float32'))
    bn._variance.set_value(var0.astype('float32'))
    x = rng.standard_normal((4, 64, 3, 3)).astype('float32') * 3 + 1
    bn.eval()
    expected = (x - mean0[:, None, None]) / np.sqrt(var0[:, None, None] + 1e-5)
    np.testing.assert_allclose(bn(paddle.to_tensor(x)).numpy(), expected, rtol=1e-5, atol=1e-5)
    bn.train()
    bn(paddle.to_tensor(x))
    np.testing.assert_allclose(bn._mean.numpy(), 0.9 * mean0 + 0.1 * x.mean(axis=(0, 2, 3)), rtol=1e-6, atol=1e-6)


def test_paddle_batchnorm_running_var_uses_the_biased_batch_variance_unlike_torch():
    """Known deviation, documented in docs/development.md: torch updates the running variance
    with the unbiased batch variance (n / (n - 1)), Paddle with the biased one, and
    Paddle's momentum is a float32. If this test fails, Paddle changed: update
    docs/development.md and the correction in test_frn_official.py."""
    paddle.set_default_dtype('float64')
    try:
        bn = paddle.nn.BatchNorm2D(3, momentum=0.9, epsilon=1e-5)
    finally:
        paddle.set_default_dtype('float32')
    x = np.random.default_rng(1).standard_normal((2, 3, 2, 2)) * 2  # n = 8 values per channel
    bn.train()
    bn(paddle.to_tensor(x))
    biased = x.var(axis=(0, 2, 3))
    np.testing.assert_allclose(bn._variance.numpy(), MOMENTUM_F32 + (1 - MOMENTUM_F32) * biased, rtol=1e-14)
    torch_rule = 0.9 + 0.1 * biased * 8 / 7
    assert np.abs(bn._variance.numpy() - torch_rule).min() > 1e-3


# --- FRN construction --------------------------------------------------------------------------

def test_frn_has_scale_one_r_zero_and_no_class_matrix_when_meta_training():
    model = FRN(way=5, shots=[1, 15], backbone='Conv4')
    assert model.scale.shape == [1] and model.scale.numpy()[0] == 1.0
    assert model.r.shape == [2] and np.all(model.r.numpy() == 0)
    assert not model.r.stop_gradient
    assert not hasattr(model, 'cat_mat')
    assert (model.d, model.resolution) == (64, 25)


def test_pretraining_class_matrix_is_standard_normal_and_sized_by_the_backbone_output():
    paddle.seed(0)
    model = FRN(backbone='ResNet12', is_pretraining=True, num_cat=64)
    cat = model.cat_mat.numpy()
    assert cat.shape == (64, 25, 640)
    assert abs(cat.mean()) < 0.01 and cat.std() == pytest.approx(1.0, rel=0.01)
    assert FRN(backbone='Conv4', is_pretraining=True, num_cat=3, image_size=100).cat_mat.shape == [3, 36, 64]


def test_pretraining_freezes_r_so_the_optimizer_leaves_it_unchanged():
    paddle.seed(0)
    model = FRN(backbone='Conv4', is_pretraining=True, num_cat=4, image_size=32)
    model.r.set_value(paddle.to_tensor([0.5, -0.5]))
    opt = paddle.optimizer.Momentum(learning_rate=0.1, momentum=0.9, use_nesterov=True, weight_decay=5e-4,
                                    parameters=model.parameters())
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    for _ in range(2):
        log_prob = model.forward_pretrain(paddle.rand([4, 3, 32, 32]))
        loss = paddle.nn.functional.nll_loss(log_prob, paddle.to_tensor([0, 1, 2, 3]))
        loss.backward()
        opt.step()
        opt.clear_grad()
    after = model.state_dict()
    np.testing.assert_array_equal(after['r'].numpy(), [0.5, -0.5])
    assert not np.array_equal(after['scale'].numpy(), before['scale'])
    assert not np.array_equal(after['cat_mat'].numpy(), before['cat_mat'])


def test_episode_feature_maps_use_the_actual_resolution_for_other_image_sizes():
    model = FRN(way=2, shots=[1, 2], backbone='Conv4')  # built for 84 px, fed 100 px (6x6 maps)
    model.eval()
    x = paddle.rand([6, 3, 100, 100])
    with paddle.no_grad():
        assert model.get_feature_map(x).shape == [6, 36, 64]
        neg_l2, support = model.get_neg_l2_dist(x, 2, 1, 2, return_support=True)
        log_prediction, support2 = model(x)
    assert neg_l2.shape == [4, 2] and support.shape == [2, 36, 64] and support2.shape == [2, 36, 64]
    assert log_prediction.shape == [4, 2]
    np.testing.assert_allclose(np.exp(log_prediction.numpy()).sum(1), 1, rtol=1e-5)
    assert model.meta_test(x, 2, 1, 2).shape == [4]


def test_feature_map_positions_are_row_major_and_resnet_maps_are_divided_by_sqrt_640():
    model = FRN(backbone='ResNet12')
    model.eval()
    x = paddle.rand([1, 3, 84, 84])
    with paddle.no_grad():
        raw = model.feature_extractor(x).numpy()[0]  # 640, 5, 5
        fm = model.get_feature_map(x).numpy()[0]  # 25, 640
    np.testing.assert_allclose(fm[1 * 5 + 3], raw[:, 1, 3] / math.sqrt(640), rtol=1e-6)
    np.testing.assert_allclose(fm, raw.reshape(640, 25).T / math.sqrt(640), rtol=1e-6)


def test_episode_of_the_wrong_size_is_refused_with_the_expected_count():
    model = FRN(backbone='Conv4')
    with pytest.raises(ValueError, match='needs 10 images, got 9'):
        model.get_neg_l2_dist(paddle.rand([9, 3, 84, 84]), 5, 1, 1)


def test_unknown_backbone_and_solver_are_refused():
    with pytest.raises(FRNError, match='ResNet12, Conv4'):
        FRN(backbone='ResNet18')
    with pytest.raises(ValueError, match='cholesky'):
        FRN(backbone='Conv4', solver='lu')
    with pytest.raises(ValueError, match='num_cat'):
        FRN(backbone='Conv4', is_pretraining=True)


# --- the ridge head ----------------------------------------------------------------------------

def features(rng, *shape):
    """Non-negative, correlated features like a ReLU backbone's, divided by sqrt(d)."""
    return np.maximum(rng.standard_normal(shape) + 0.5, 0) / math.sqrt(shape[-1])


def official_dist(query, support, alpha, beta):
    """Equation 10 in numpy float64, with lam rounded to float32 as the official code does."""
    way, kr, d = support.shape
    lam = float(np.float32(kr / d * math.exp(alpha) + 1e-6))
    out = np.empty((query.shape[0], way))
    for c in range(way):
        sts = support[c].T @ support[c]
        hat = np.linalg.solve(sts + lam * np.eye(d), sts)
        out[:, c] = np.sum((math.exp(beta) * query @ hat - query) ** 2, axis=1)
    return out


def t64(a, grad=False):
    return paddle.to_tensor(np.asarray(a, dtype=np.float64), stop_gradient=not grad)


@pytest.mark.parametrize('way, kr, d', [(3, 10, 32), (2, 40, 16), (4, 16, 16)])
@pytest.mark.parametrize('solver, form', [('cholesky', None), ('cholesky', 'kr'), ('cholesky', 'd'),
                                          ('inverse', 'd'), ('inverse', 'kr')])
def test_every_solver_form_gives_the_official_distances(way, kr, d, solver, form):
    rng = np.random.default_rng(way * kr + d)
    support, query = features(rng, way, kr, d), features(rng, 7, d)
    got = recon_dist(t64(query), t64(support), t64(0.4), t64(-0.3), solver=solver, form=form).numpy()
    np.testing.assert_allclose(got, official_dist(query, support, 0.4, -0.3), rtol=1e-10)


def ridge_grads(query, support, alpha, beta, needs_grad=(True, True, True, True), **kw):
    tensors = [t64(a, grad=g) for a, g in zip((query, support, alpha, beta), needs_grad)]
    dist = recon_dist(*tensors, **kw)
    weights = np.random.default_rng(5).random(dist.shape)
    paddle.sum(dist * t64(weights)).backward()
    return [t.grad.numpy() if g else None for t, g in zip(tensors, needs_grad)]


@pytest.mark.parametrize('form', ['kr', 'd'])
def test_cholesky_gradients_equal_the_official_inverse_gradients(form):
    rng = np.random.default_rng(2)
    support, query = features(rng, 3, 12, 20), features(rng, 9, 20)
    ours = ridge_grads(query, support, 0.2, 0.1, solver='cholesky', form=form)
    official = ridge_grads(query, support, 0.2, 0.1, solver='inverse', form='d')
    for a, b in zip(ours, official):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12 * np.abs(b).max())


@pytest.mark.parametrize('form', ['kr', 'd'])
@pytest.mark.parametrize('needs_grad', [(False, False, True, True), (False, True, True, False),
                                        (True, False, False, True)])
def test_gradients_are_right_when_only_some_inputs_need_them(form, needs_grad):
    """A frozen backbone (features without gradients) must still give alpha and beta the
    right gradients: Paddle's triangular_solve gets this wrong on its own."""
    rng = np.random.default_rng(8)
    support, query = features(rng, 2, 6, 10), features(rng, 5, 10)
    ours = ridge_grads(query, support, 0.3, -0.2, needs_grad, solver='cholesky', form=form)
    official = ridge_grads(query, support, 0.3, -0.2, needs_grad, solver='inverse', form='d')
    for a, b in zip(ours, official):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12 * np.abs(b).max())


def test_cholesky_picks_the_smaller_matrix():
    rng = np.random.default_rng(3)
    q = t64(features(rng, 4, 8))
    wide, tall = t64(features(rng, 2, 3, 8)), t64(features(rng, 2, 30, 8))  # kr < d and kr > d
    for support, form in ((wide, 'kr'), (tall, 'd')):
        auto = recon_dist(q, support, t64(0.0), t64(0.0)).numpy()
        np.testing.assert_array_equal(auto, recon_dist(q, support, t64(0.0), t64(0.0), form=form).numpy())


@pytest.mark.parametrize('form', ['kr', 'd'])
def test_cholesky_solver_is_stable_for_rank_deficient_support(form):
    """Repeated support images, dead (all-zero) positions and kr > d all make S S^T or
    S^T S singular; lam >= 1e-6 keeps the system positive definite, also at alpha = -12."""
    rng = np.random.default_rng(4)
    one_image = features(rng, 1, 5, 24)
    support = np.concatenate([one_image] * 6, axis=1)  # 6 identical shots: rank 5 of kr = 30 > d = 24
    support[:, :5] = 0
    support = np.concatenate([support, features(rng, 1, 30, 24)], axis=0)  # way 2
    query = features(rng, 6, 24)
    for alpha in (0.0, -12.0):
        got = recon_dist(t64(query), t64(support), t64(alpha), t64(0.1), form=form).numpy()
        np.testing.assert_allclose(got, official_dist(query, support, alpha, 0.1), rtol=1e-6)
        grads = ridge_grads(query, support, alpha, 0.1, form=form)
        assert all(np.isfinite(g).all() for g in grads)
    support32 = paddle.to_tensor(support.astype('float32'))
    got32 = recon_dist(paddle.to_tensor(query.astype('float32')), support32,
                       paddle.to_tensor(np.float32(0)), paddle.to_tensor(np.float32(0.1)), form=form).numpy()
    np.testing.assert_allclose(got32, official_dist(query.astype('float32'), support32.numpy(), 0.0, 0.1), rtol=1e-5)


def test_float32_distances_are_exact_to_float32_rounding():
    """The kr x kr form subtracts a projection from ||q||^2; working in float64 keeps
    float32 distances at float32 rounding (the official float32 inverse is ~1e-4 here)."""
    rng = np.random.default_rng(6)
    support, query = features(rng, 5, 25, 640).astype('float32'), features(rng, 100, 640).astype('float32')
    exact = official_dist(query.astype(np.float64), support.astype(np.float64), 0.0, 0.0)
    got = recon_dist(paddle.to_tensor(query), paddle.to_tensor(support),
                     paddle.to_tensor(np.float32(0)), paddle.to_tensor(np.float32(0))).numpy()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, exact, rtol=1e-6)


def test_lambda_is_kr_over_d_times_exp_alpha_plus_1e6_at_float32_precision():
    alpha64 = t64(0.3, grad=True)
    lam = ridge_lambda(50, 64, alpha64)
    assert lam.item() == float(np.float32(50 / 64 * math.exp(0.3) + 1e-6))
    lam.backward()
    assert alpha64.grad.item() == pytest.approx(50 / 64 * math.exp(0.3), rel=1e-15)
    lam32 = ridge_lambda(50, 64, paddle.to_tensor(np.float32(0.3)))
    assert lam32.dtype == paddle.float32
    assert lam32.item() == pytest.approx(50 / 64 * math.exp(0.3) + 1e-6, rel=1e-7)


def test_unknown_solver_or_form_is_refused():
    q, s, a = t64(np.ones((2, 4))), t64(np.ones((1, 2, 4))), t64(0.0)
    with pytest.raises(ValueError, match='solver'):
        recon_dist(q, s, a, a, solver='qr')
    with pytest.raises(ValueError, match='form'):
        recon_dist(q, s, a, a, form='dd')


# --- the one head: ridge.neg_l2_dist --------------------------------------------------------------

def test_scores_are_minus_the_mean_over_positions_of_every_class_distance():
    rng = np.random.default_rng(9)
    query_maps, support = features(rng, 4, 6, 10), features(rng, 3, 12, 10)  # Q, r, d; way, kr, d
    scores = neg_l2_dist(t64(query_maps), t64(support), t64(0.2), t64(-0.1)).numpy()
    expected = -official_dist(query_maps.reshape(24, 10), support, 0.2, -0.1).reshape(4, 6, 3).mean(axis=1)
    np.testing.assert_allclose(scores, expected, rtol=1e-10)


def test_a_list_of_classes_scores_each_class_with_its_own_support_size():
    """Classes of 1, 3 and 2 images: class c's column is its score alone, with lam from its own kr;
    classes of equal size give the scores of the batched [way, kr, d] support."""
    rng = np.random.default_rng(10)
    query_maps = t64(features(rng, 5, 4, 8))  # Q, r, d
    ragged = [t64(features(rng, k, 4, 8)) for k in (1, 3, 2)]  # k_c, r, d
    scores = neg_l2_dist(query_maps, ragged, t64(0.3), t64(0.1)).numpy()
    for c, maps in enumerate(ragged):
        alone = neg_l2_dist(query_maps, paddle.reshape(maps, [1, -1, 8]), t64(0.3), t64(0.1)).numpy()
        np.testing.assert_array_equal(scores[:, c], alone[:, 0])
    equal = features(rng, 3, 8, 8)  # way, kr, d
    np.testing.assert_allclose(neg_l2_dist(query_maps, [t64(s) for s in equal], t64(0.3), t64(0.1)).numpy(),
                               neg_l2_dist(query_maps, t64(equal), t64(0.3), t64(0.1)).numpy(), rtol=1e-12)


@pytest.mark.parametrize('ragged', [False, True])
def test_the_explanations_extras_leave_the_scores_bit_identical(ragged):
    rng = np.random.default_rng(11)
    query_maps = paddle.to_tensor(features(rng, 3, 4, 16).astype('float32'))
    support = features(rng, 2, 8, 16).astype('float32')  # way, kr, d
    support = [paddle.to_tensor(s) for s in support] if ragged else paddle.to_tensor(support)
    a, b = paddle.to_tensor(np.float32(0.2)), paddle.to_tensor(np.float32(0.4))
    plain = neg_l2_dist(query_maps, support, a, b).numpy()
    out = neg_l2_dist(query_maps, support, a, b, explain=True, reconstruct=True)
    np.testing.assert_array_equal(out['scores'].numpy(), plain)
    np.testing.assert_allclose(-out['dist'].numpy().mean(axis=1), plain, rtol=1e-6)
    assert out['dist'].shape == [3, 4, 2] and [w.shape for w in out['weights']] == [[3, 4, 8]] * 2
    assert out['reconstructions'].shape == [3, 2, 4, 16]
    for c in range(2):  # the reconstruction W S of class c has the squared error dist[:, :, c]
        s = support[c].numpy().astype(np.float64)  # kr, d
        rebuilt = out['weights'][c].numpy().astype(np.float64) @ s  # Q, r, d
        np.testing.assert_allclose(rebuilt, out['reconstructions'].numpy()[:, c], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(((rebuilt - query_maps.numpy()) ** 2).sum(axis=2), out['dist'].numpy()[..., c],
                                   rtol=1e-4)


def test_pretraining_scores_each_image_against_the_class_matrices_with_the_same_head():
    paddle.seed(3)
    model = FRN(backbone='Conv4', is_pretraining=True, num_cat=6, image_size=32)
    model.eval()
    x = paddle.rand([3, 3, 32, 32])
    with paddle.no_grad():
        scores = neg_l2_dist(model.get_feature_map(x), model.cat_mat, model.r[0], model.r[1])  # 3, num_cat
        np.testing.assert_array_equal(model.forward_pretrain(x).numpy(), model.log_probabilities(scores).numpy())


# --- the episode layout: methods/episode.py -------------------------------------------------------

def test_episode_layout_is_supports_by_class_then_queries_by_class():
    way, shot, query = 3, 2, 4
    label = np.arange(way * (shot + query), dtype=np.float32).reshape(way, shot + query)  # class c: c*6 + j
    x = paddle.to_tensor(np.broadcast_to(label[:, :, None, None, None], (way, shot + query, 1, 2, 2)).copy())
    flat = episode_images(x, shot).numpy()[:, 0, 0, 0]  # N
    np.testing.assert_array_equal(flat, label.reshape(-1)[episode_order(way, shot, query)])
    np.testing.assert_array_equal(flat[:way * shot], label[:, :shot].reshape(-1))  # supports, class by class
    support, queries = split_episode(paddle.to_tensor(flat), way, shot, query)
    np.testing.assert_array_equal(support.numpy(), label[:, :shot])  # way, shot
    np.testing.assert_array_equal(queries.numpy() // (shot + query), query_targets(way, query).numpy())
    with pytest.raises(ValueError, match='needs 18 images, got 17'):
        split_episode(paddle.to_tensor(flat[:-1]), way, shot, query)


# --- auxrank -----------------------------------------------------------------------------------

def test_auxrank_is_003_times_pairwise_frobenius_norms_after_one_global_normalisation():
    support = np.random.default_rng(7).standard_normal((4, 6, 5))
    s = support / np.sqrt(np.sum(support ** 2))
    expected = 0.03 * sum(np.sum((s[i] @ s[j].T) ** 2) for i in range(4) for j in range(i))
    assert auxrank(t64(support)).item() == pytest.approx(expected, rel=1e-13)
    assert auxrank(t64(support[:1])).item() == 0.0


def test_conv4_pretraining_starts_with_nearly_flat_logits(tiny_mini):
    """Conv-4's class-matrix pretraining starts near ln(classes), like ResNet-12's (its maps are divided by
    sqrt(640)); with the last BatchNorm scale left at 1 it starts far above, which collapses training."""
    import math

    import paddle.nn.functional as F

    from data.datamgr import SimpleDataManager
    from data.filelist import read_split
    split = read_split(str(tiny_mini), 'train')
    x, y = next(iter(SimpleDataManager(32, 32).get_data_loader(split, aug=False)))
    paddle.seed(0)
    model = FRN(backbone='Conv4', is_pretraining=True, num_cat=64, image_size=32)
    model.train()
    flat = F.nll_loss(model.forward_pretrain(x), y).item()
    model.feature_extractor.init_output_scale(1.0)
    steep = F.nll_loss(model.forward_pretrain(x), y).item()
    assert abs(flat - math.log(64)) < 0.05 * math.log(64)
    assert steep > 1.5 * math.log(64)
    assert FRN(backbone='Conv4').feature_extractor.layers[9].layers[1].weight.numpy().tolist() == [1.0] * 64
