"""The official ProtoNet baseline against outputs of the unmodified official code
(shared/fixtures/proto_official; Tsingularity/FRN models/Proto.py + trainers/proto_train.py).

Float64 throughout, at 1e-8 relative (tests/_official.py says how). The only
exceptions are those of tests/test_frn_official.py, each checked where it applies:
Conv-4's conv-bias gradients are analytically zero (the stored values are rounding
noise); BatchNorm's running statistics are compared once Paddle's biased variance and
float32 momentum are corrected; and Paddle's Momentum holds momentum and weight decay
in float32, which moves two steps' parameters by about 1e-7 of the update.
"""
import functools
import json

import numpy as np
import paddle
import pytest

import utils
from methods import checkpoint
from _official import (BACKBONES, MOMENTUM_F32, WEIGHT_DECAY_F32, BatchNormRecorder, assert_close,
                       check_batchnorm_stats, check_gradients, nesterov_sgd, use_exact_leaky_relu)
from conftest import shared_path
from methods.FRN import FRN
from deploy.official_weights import convert_checkpoint, convert_state_dict, read_torch_state_dict
from methods.protonet import PrototypeClassifier, Proto

RTOL = 1e-8
PADDLE_2 = int(paddle.__version__.split('.')[0]) < 3
DTYPE = 'float64'


def official_resnet12_proto_state():
    """The README's recipe: the official ResNet-12 FRN checkpoint without `r`, scale 2.5."""
    state = read_torch_state_dict(shared_path('fixtures', 'frn_official', 'resnet12_frn_official.pth'))
    del state['r']
    state['scale'] = np.float32([2.5])
    return state


@pytest.fixture(scope='module')
def converted(tmp_path_factory):
    """backbone -> .pdparams converted from the official Proto checkpoint."""
    out = tmp_path_factory.mktemp('proto')
    conv4 = out / 'conv4_proto.pdparams'
    info = convert_checkpoint(shared_path('fixtures', 'proto_official', 'conv4_proto_official.pth'), conv4)
    assert (info['model'], info['backbone'], info['pretraining']) == ('Proto', 'Conv4', False)
    state, info = convert_state_dict(official_resnet12_proto_state())
    assert (info['model'], info['backbone']) == ('Proto', 'ResNet12')
    resnet12 = out / 'resnet12_proto.pdparams'
    utils.atomic_save({k: paddle.to_tensor(v) for k, v in state.items()}, resnet12)
    return {'conv4': conv4, 'resnet12': resnet12}


class Official:
    """One backbone in float64: runs each stage of the official protocol once."""

    def __init__(self, backbone, converted):
        folder = shared_path('fixtures', 'proto_official')
        self.backbone, self.converted = backbone, converted
        self.cfg = json.loads((folder / 'proto_cases.json').read_text())[backbone]
        self.z = np.load(folder / self.cfg['file'])

    def tensor(self, array):
        return paddle.to_tensor(np.asarray(array), dtype=DTYPE)

    def model(self):
        c = self.cfg
        model = Proto(way=c['way'], shots=[c['shot'], c['query']], backbone=BACKBONES[self.backbone])
        assert checkpoint.load_model(model, self.converted[self.backbone]) == ([], [])
        model.to(dtype=DTYPE)
        if PADDLE_2:  # its float32 LeakyReLU slope is the one measured cause of 2.x's float64 differences
            use_exact_leaky_relu(model)
        assert model.dim == c['dim'] and model.scale.item() == 2.5
        return model

    @functools.cached_property
    def eval(self):
        model, z, c = self.model(), self.z, self.cfg
        model.eval()
        way, shot, query = c['test_way'], c['test_shot'], c['test_query']
        with paddle.no_grad():
            x = self.tensor(z['x_test'])
            neg_l2_images = model.get_neg_l2_dist(x, way, shot, query)  # the whole official path
            feature_map = model.get_feature_map(x)
            out = {'model': model, 'x': x, 'feature_map': feature_map, 'neg_l2': neg_l2_images.numpy(),
                   'neg_l2_from_maps': model.episode_scores(feature_map, way, shot, query).numpy()}
            # the official-named methods below would rerun the backbone on x: reuse its map
            model.get_feature_map = lambda images: feature_map if images is x else Proto.get_feature_map(model, images)
            out['feature_vector'] = model.get_feature_vector(x).numpy()
            out['pred'] = model.meta_test(x, way, shot, query).numpy()
            del model.get_feature_map
        return out

    @functools.cached_property
    def train(self):
        """One train-mode forward and backward of the NLL loss, then two Nesterov steps."""
        model, z, c = self.model(), self.z, self.cfg
        model.train()
        recorder = BatchNormRecorder(model)
        params = {k: p for k, p in model.named_parameters() if not p.stop_gradient}
        before = {k: p.numpy().copy() for k, p in params.items()}
        x, target = self.tensor(z['x_train']), paddle.to_tensor(z['train_target'])
        log_prediction = model(x)
        bn_after = recorder.finish()
        loss = paddle.nn.functional.nll_loss(log_prediction, target)
        loss.backward()
        grads = {k: p.grad.numpy().copy() for k, p in params.items()}
        opt = paddle.optimizer.Momentum(learning_rate=c['lr'], momentum=0.9, use_nesterov=True,
                                        weight_decay=5e-4, parameters=model.parameters())
        opt.step()
        opt.clear_grad()
        after_one = {k: p.numpy().copy() for k, p in params.items()}
        loss2 = paddle.nn.functional.nll_loss(model(x), target)
        loss2.backward()
        grads2 = {k: p.grad.numpy().copy() for k, p in params.items()}
        opt.step()
        return {'log_prediction': log_prediction.numpy(), 'loss': loss.item(), 'grads': grads,
                'bn_initial': recorder.initial, 'bn_after': bn_after, 'bn_count': recorder.counts,
                'before': before, 'after_one': after_one, 'grads2': grads2, 'loss2': loss2.item(),
                'after_two': {k: p.numpy().copy() for k, p in params.items()}}


@pytest.fixture(scope='module', params=[pytest.param(b, marks=[pytest.mark.slow] if b == 'resnet12' else [])
                                        for b in BACKBONES])
def case(request, converted):
    return Official(request.param, converted)


def test_eval_feature_vectors_match_official(case):
    assert_close(case.eval['feature_vector'], case.z['eval_feature_vector'], RTOL, 'feature vector')


def test_neg_l2_distances_and_predictions_match_official(case):
    assert_close(case.eval['neg_l2'], case.z['eval_neg_l2'], RTOL, 'neg_l2')
    np.testing.assert_array_equal(case.eval['pred'], case.z['eval_pred'])
    np.testing.assert_array_equal(case.eval['pred'], case.cfg['eval_pred'])


def test_episode_scores_on_maps_are_bitwise_the_per_episode_scores(case):
    np.testing.assert_array_equal(case.eval['neg_l2_from_maps'], case.eval['neg_l2'])


def test_episode_scores_on_maps_embedded_one_image_at_a_time_are_bitwise_the_per_episode_scores(case):
    """What a feature cache does: each image through the backbone alone, the head on the stacked maps."""
    if case.backbone == 'resnet12':
        pytest.skip('Conv-4 shows it; 25 single-image ResNet-12 passes would double this file\'s time')
    e, c = case.eval, case.cfg
    with paddle.no_grad():
        maps = paddle.concat([e['model'].get_feature_map(e['x'][i:i + 1]) for i in range(e['x'].shape[0])])
        scores = e['model'].episode_scores(maps, c['test_way'], c['test_shot'], c['test_query'])
    np.testing.assert_array_equal(scores.numpy(), e['neg_l2'])


def test_train_forward_and_loss_match_official(case):
    t, z, c = case.train, case.z, case.cfg
    np.testing.assert_array_equal(z['train_target'], np.arange(c['way'] * c['query']) // c['query'])
    assert_close(t['log_prediction'], z['train_log_prediction'], RTOL, 'log_prediction')
    assert_close(t['loss'], z['train_loss'], RTOL, 'loss')
    assert_close(t['loss'], c['loss'], RTOL, 'loss')


def test_every_gradient_matches_official(case):
    check_gradients(case.train['grads'], case.z, '', RTOL)


def test_batchnorm_running_stats_equal_torch_once_biased_variance_and_float32_momentum_are_corrected(case):
    t = case.train
    check_batchnorm_stats(t['bn_initial'], t['bn_after'], t['bn_count'], case.z, RTOL)


def test_paddle_momentum_is_torch_nesterov_sgd_with_float32_coefficients(case):
    t = case.train
    for key in t['before']:
        emulated = nesterov_sgd([t['before'][key], t['after_one'][key]], [t['grads'][key], t['grads2'][key]],
                                case.cfg['lr'], MOMENTUM_F32, WEIGHT_DECAY_F32)
        assert_close(t['after_one'][key], emulated[0], 1e-13, key + ' step 1')
        assert_close(t['after_two'][key], emulated[1], 1e-13, key + ' step 2')


def test_parameters_after_two_momentum_steps_match_official_sgd(case):
    """Tolerance: 1e-8 of the parameter plus 1e-7 of the update, for Paddle's float32 momentum
    and weight decay (2.6e-8 and 4.7e-8 relative)."""
    t, z = case.train, case.z
    assert_close(t['loss2'], z['train_loss_step2'], RTOL, 'loss at step 2')
    assert_close(t['loss2'], case.cfg['loss_step2'], RTOL, 'loss at step 2')
    keys = [k.split('/', 1)[1] for k in z.files if k.startswith('after_2_sgd_steps/')]
    # the fixture stores every parameter of at most 200k elements
    assert sorted(keys) == sorted(k for k, v in t['after_two'].items() if v.size <= 200_000)
    for key in keys:
        expected, start = z['after_2_sgd_steps/' + key], t['before'][key]
        err = np.abs(t['after_two'][key] - expected).max()
        allowed = RTOL * np.abs(expected).max() + 1e-7 * np.abs(expected - start).max()
        assert err <= allowed, f'{key}: {err:.3g} > {allowed:.3g}'


def test_the_official_checkpoint_is_detected_as_proto_and_keeps_every_value(converted):
    official = read_torch_state_dict(shared_path('fixtures', 'proto_official', 'conv4_proto_official.pth'))
    assert 'r' not in official and official['scale'].tolist() == [2.5]
    model = Proto(backbone='Conv4')
    checkpoint.load_model(model, converted['conv4'])
    state = model.state_dict()
    for key, value in official.items():
        if not key.endswith('num_batches_tracked'):
            ours = key.replace('running_mean', '_mean').replace('running_var', '_variance')
            np.testing.assert_array_equal(state[ours].numpy(), value)
    # the same backbone as the FRN fixture's checkpoint, which converts as FRN
    frn_state, info = convert_state_dict(read_torch_state_dict(
        shared_path('fixtures', 'frn_official', 'conv4_frn_official.pth')))
    assert info['model'] == 'FRN' and 'r' in frn_state
    with pytest.raises(utils.FRNError, match='backbone parameter'):
        checkpoint.load_model(Proto(backbone='ResNet12'), converted['conv4'])


def test_proto_differs_from_frn_only_by_the_head():
    """Same backbone, same maps except FRN's ResNet-12 /sqrt(640); Conv-4 vectors flatten channel-major."""
    paddle.seed(0)
    proto, frn = Proto(backbone='Conv4', image_size=32), FRN(backbone='Conv4', image_size=32)
    frn.set_state_dict({k: v for k, v in proto.state_dict().items()})
    proto.eval(), frn.eval()
    x = paddle.randn([2, 3, 32, 32])
    with paddle.no_grad():
        np.testing.assert_array_equal(proto.get_feature_map(x).numpy(), frn.get_feature_map(x).numpy())
        raw = proto.feature_extractor(x).numpy()  # N, 64, 2, 2
        np.testing.assert_array_equal(proto.get_feature_vector(x).numpy(), raw.reshape(2, -1))
    assert proto.dim == 64 * 2 * 2 and Proto(backbone='ResNet12').dim == 640
    assert not hasattr(proto, 'r')


def test_all_three_heads_score_cached_maps_as_their_episodes_and_share_log_probabilities():
    paddle.seed(1)
    frn = FRN(backbone='Conv4', image_size=32)
    proto = Proto(way=3, shots=[2, 1], backbone='Conv4', image_size=32)
    x = paddle.randn([3 * (2 + 1), 3, 32, 32])
    for model in (frn, proto, PrototypeClassifier(frn)):
        model.eval()
        with paddle.no_grad():
            scores = model.get_neg_l2_dist(x, 3, 2, 1)
            from_maps = model.episode_scores(model.get_feature_map(x), 3, 2, 1)
        np.testing.assert_array_equal(from_maps.numpy(), scores.numpy())
        assert scores.shape == [3, 3]
        with pytest.raises(ValueError, match='3-way 2-shot 2-query needs 12 images'):
            model.episode_scores(model.get_feature_map(x), 3, 2, 2)
    proto.train()
    logits = proto.get_neg_l2_dist(x, 3, 2, 1) / proto.dim * proto.scale
    np.testing.assert_allclose(proto(x).numpy(), paddle.nn.functional.log_softmax(logits, axis=1).numpy(), rtol=1e-6)
