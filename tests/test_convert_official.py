"""Reading official PyTorch checkpoints without PyTorch, converting them, and loading the result.

Hand-made archives are written by `torch_zip` below, which emits the same pickle
opcodes and zip layout as torch.save (protocol 2, persistent storage ids, one raw
file per storage), so the reader can be tested on layouts the fixtures do not have.
"""
import collections
import pickle
import struct
import subprocess
import sys
import zipfile

import numpy as np
import paddle
import pytest

from methods import checkpoint
from conftest import REPO, load_tool, shared_path
from methods.FRN import FRN
from deploy.official_weights import convert_checkpoint, convert_state_dict, infer_backbone, read_torch_state_dict
from methods.protonet import Proto
from utils import FRNError

STORAGE = {np.float32: 'FloatStorage', np.float64: 'DoubleStorage', np.float16: 'HalfStorage',
           np.int64: 'LongStorage', np.int32: 'IntStorage', np.uint8: 'ByteStorage', np.bool_: 'BoolStorage'}


class Tensor:
    """A tensor to write: `storage` (1-D array, shared by key) viewed at offset with size and stride."""

    def __init__(self, storage, key, offset, size, stride):
        self.storage, self.key, self.offset, self.size, self.stride = storage, key, offset, size, stride

    @classmethod
    def of(cls, array, key):
        array = np.ascontiguousarray(array)
        strides = tuple(s // array.itemsize for s in array.strides)
        return cls(array.reshape(-1), key, 0, array.shape, strides)


def _global(module, name):
    return b'c' + module.encode() + b'\n' + name.encode() + b'\n'


def _str(s):
    data = s.encode()
    return b'X' + struct.pack('<I', len(data)) + data


def _int(i):
    return b'J' + struct.pack('<i', i)


def _tuple(items):
    return b'(' + b''.join(items) + b't'


def _ordered_dict():
    return _global('collections', 'OrderedDict') + b')R'


def torch_pickle(state, metadata=True):
    """Protocol-2 pickle of an OrderedDict of Tensors, as torch.save writes it."""
    out = b'\x80\x02' + _ordered_dict() + b'('
    for name, t in state.items():
        pid = _tuple([_str('storage'), _global('torch', STORAGE[t.storage.dtype.type]), _str(t.key), _str('cpu'),
                      _int(t.storage.size)])
        args = [pid + b'Q', _int(t.offset), _tuple(_int(n) for n in t.size), _tuple(_int(s) for s in t.stride),
                b'\x89', _ordered_dict()]
        out += _str(name) + _global('torch._utils', '_rebuild_tensor_v2') + _tuple(args) + b'R'
    out += b'u'
    if metadata:  # state_dict()._metadata, set on the OrderedDict by BUILD
        out += b'}' + _str('_metadata') + _ordered_dict() + b's' + b'b'
    return out + b'.'


def torch_zip(path, state, folder='archive', byteorder='little', pickled=None):
    """Write `state` ({name: Tensor}) like torch.save: <folder>/data.pkl, <folder>/data/<key>, ..."""
    with zipfile.ZipFile(path, 'w') as archive:
        archive.writestr(f'{folder}/data.pkl', pickled if pickled is not None else torch_pickle(state))
        if byteorder is not None:
            archive.writestr(f'{folder}/byteorder', byteorder)
        written = set()
        for t in state.values():
            if t.key not in written:
                order = '<' if byteorder in ('little', None) else '>'
                archive.writestr(f'{folder}/data/{t.key}', t.storage.astype(t.storage.dtype.newbyteorder(order)).tobytes())
                written.add(t.key)
        archive.writestr(f'{folder}/version', '3\n')
    return path


def official_state(backbone, pretraining=False, proto=False):
    """A random state dict with every official key and shape (of FRN, or of the Proto baseline), as numpy arrays."""
    rng = np.random.default_rng(0)
    state = collections.OrderedDict()
    model = Proto(backbone=backbone) if proto else FRN(backbone=backbone, is_pretraining=pretraining, num_cat=3)
    for key, value in model.state_dict().items():
        key = key.replace('_mean', 'running_mean').replace('_variance', 'running_var')
        state[key] = rng.standard_normal(value.shape).astype(np.float32)
        if key.endswith('running_var'):
            state[key.replace('running_var', 'num_batches_tracked')] = np.array(7, dtype=np.int64)
    return state


def write_state(path, state, **kw):
    return torch_zip(path, {k: Tensor.of(v, str(i)) for i, (k, v) in enumerate(state.items())}, **kw)


# --- reading -----------------------------------------------------------------------------------

def test_reader_decodes_strides_offsets_shared_storages_and_dtypes(tmp_path):
    base = np.arange(30, dtype=np.float32) * 0.5
    state = {
        'transposed': Tensor(base, '0', 0, (5, 6), (1, 5)),  # a .t() of a 6x5 tensor
        'window': Tensor(base, '0', 7, (2, 3), (5, 1)),  # a slice with an offset, sharing storage 0
        'scalar': Tensor(base, '0', 29, (), ()),
        'empty': Tensor(np.zeros(0, np.float32), '1', 0, (0, 4), (4, 1)),
        'double': Tensor.of(np.linspace(0, 1, 6).reshape(2, 3), '2'),
        'half': Tensor.of(np.array([1.5, -2.25], np.float16), '3'),
        'long': Tensor.of(np.array([7, -(2 ** 40)], np.int64), '4'),
        'flags': Tensor.of(np.array([True, False]), '5'),
    }
    for byteorder in ('little', 'big', None):
        got = read_torch_state_dict(torch_zip(tmp_path / f'{byteorder}.pth', state, folder='model_x',
                                              byteorder=byteorder))
        assert list(got) == list(state)
        np.testing.assert_array_equal(got['transposed'], base.reshape(6, 5).T)
        np.testing.assert_array_equal(got['window'], base.reshape(6, 5)[1:3, 2:5])
        assert got['scalar'].shape == () and got['scalar'] == 14.5
        assert got['empty'].shape == (0, 4)
        np.testing.assert_array_equal(got['double'], np.linspace(0, 1, 6).reshape(2, 3))
        assert got['half'].dtype == np.float16 and got['half'].tolist() == [1.5, -2.25]
        assert got['long'].tolist() == [7, -(2 ** 40)]
        assert got['flags'].dtype == np.bool_ and got['flags'].tolist() == [True, False]
        assert all(v.dtype.isnative for v in got.values())


def test_reader_reads_the_official_checkpoints():
    folder = shared_path('fixtures', 'frn_official')
    for name, count, backbone in (('resnet12_frn_official', 98, 'ResNet12'), ('conv4_frn_official', 30, 'Conv4'),
                                  ('conv4_pretrain_official', 31, 'Conv4')):
        state = read_torch_state_dict(folder / f'{name}.pth')
        assert len(state) == count and infer_backbone(state) == backbone
        assert list(state)[:2] == ['scale', 'r'] and state['scale'].tolist() == [2.5]
        assert all(v.dtype == np.int64 for k, v in state.items() if k.endswith('num_batches_tracked'))
    pretrain = read_torch_state_dict(folder / 'conv4_pretrain_official.pth')
    cases = np.load(folder / 'conv4_cases.npz')
    np.testing.assert_array_equal(pretrain['cat_mat'], cases['pretrain_cat_mat'])
    np.testing.assert_array_equal(pretrain['r'], [0, 0])
    fine_tuned = read_torch_state_dict(folder / 'conv4_frn_official.pth')
    np.testing.assert_array_equal(fine_tuned['r'], np.float32([0.3, -0.2]))


def test_converter_refuses_unknown_pickle_globals_without_running_them(tmp_path):
    marker = tmp_path / 'pwned'
    payload = (b'\x80\x02' + _global('os', 'system') + _tuple([_str(f'touch {marker}')]) + b'R.')
    path = torch_zip(tmp_path / 'evil.pth', {}, pickled=payload)
    with pytest.raises(FRNError, match=r'`os\.system`.*Nothing from the file was executed'):
        read_torch_state_dict(path)
    assert not marker.exists()
    builtin = b'\x80\x02' + _global('builtins', 'eval') + _tuple([_str('1+1')]) + b'R.'
    with pytest.raises(FRNError, match='builtins.eval'):
        read_torch_state_dict(torch_zip(tmp_path / 'eval.pth', {}, pickled=builtin))


def test_legacy_non_zip_checkpoints_are_refused_with_how_to_resave(tmp_path):
    legacy = tmp_path / 'old.pth'
    legacy.write_bytes(pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2) + pickle.dumps(1001, protocol=2))
    with pytest.raises(FRNError, match=r'legacy \(pre-1\.6\).*torch\.save\(torch\.load'):
        read_torch_state_dict(legacy)
    other = tmp_path / 'notes.pth'
    other.write_text('hello')
    with pytest.raises(FRNError, match='not a PyTorch checkpoint'):
        read_torch_state_dict(other)
    with pytest.raises(FRNError, match='does not exist'):
        read_torch_state_dict(tmp_path / 'missing.pth')


def test_damaged_archives_give_one_clear_error(tmp_path):
    state = {'w': Tensor.of(np.ones(4, np.float32), '0')}
    path = torch_zip(tmp_path / 'cut.pth', state)
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp_path / 'nodata.pth', 'w') as dst:
        for item in src.namelist():
            if '/data/' not in item:
                dst.writestr(item, src.read(item))
    with pytest.raises(FRNError, match='storage .* is missing'):
        read_torch_state_dict(tmp_path / 'nodata.pth')
    past_end = {'w': Tensor(np.ones(4, np.float32), '0', 2, (4,), (1,))}
    with pytest.raises(FRNError, match='runs past its storage'):
        read_torch_state_dict(torch_zip(tmp_path / 'past.pth', past_end))
    with zipfile.ZipFile(tmp_path / 'plain.zip', 'w') as archive:
        archive.writestr('readme.txt', 'not a checkpoint')
    with pytest.raises(FRNError, match='not a torch.save archive'):
        read_torch_state_dict(tmp_path / 'plain.zip')
    not_dict = b'\x80\x02' + _tuple([_int(1)]) + b'.'
    with pytest.raises(FRNError, match='not a state dict'):
        read_torch_state_dict(torch_zip(tmp_path / 'tuple.pth', {}, pickled=not_dict))


def test_a_truncated_checkpoint_is_named_truncated(tmp_path):
    """A download cut short keeps the zip's first entries but loses the directory at its end."""
    path = write_state(tmp_path / 'model.pth', official_state('Conv4'))
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) * 2 // 3])
    with pytest.raises(FRNError, match='is truncated or damaged: it begins like the zip archive torch.save writes'):
        read_torch_state_dict(path)


# --- converting --------------------------------------------------------------------------------

@pytest.mark.parametrize('backbone', [pytest.param('ResNet12', marks=pytest.mark.slow), 'Conv4'])
@pytest.mark.parametrize('pretraining', [False, True])
def test_conversion_renames_batchnorm_buffers_drops_counters_and_keeps_values(tmp_path, backbone, pretraining):
    official = official_state(backbone, pretraining)
    path = write_state(tmp_path / 'model.pth', official)
    state, info = convert_state_dict(read_torch_state_dict(path))
    model = FRN(backbone=backbone, is_pretraining=pretraining, num_cat=3)
    assert list(state) == list(model.state_dict())
    assert info['backbone'] == backbone and info['pretraining'] == pretraining
    assert info['dropped'] == [k for k in official if k.endswith('num_batches_tracked')] != []
    for key, value in official.items():
        if not key.endswith('num_batches_tracked'):
            ours = key.replace('running_mean', '_mean').replace('running_var', '_variance')
            np.testing.assert_array_equal(state[ours], value)
            assert state[ours].dtype == np.float32


@pytest.mark.parametrize('backbone', [pytest.param('ResNet12', marks=pytest.mark.slow), 'Conv4'])
def test_proto_checkpoints_are_told_from_frn_by_the_missing_r_and_convert_to_protos_names(tmp_path, backbone):
    official = official_state(backbone, proto=True)
    assert 'r' not in official and 'scale' in official
    state, info = convert_state_dict(read_torch_state_dict(write_state(tmp_path / 'proto.pth', official)))
    assert info['model'] == 'Proto' and info['backbone'] == backbone and not info['pretraining']
    assert list(state) == list(Proto(backbone=backbone).state_dict())
    np.testing.assert_array_equal(state['scale'], official['scale'])
    assert convert_state_dict(official_state(backbone))[1]['model'] == 'FRN'
    official['r'] = np.zeros(2, np.float32)  # r makes it an FRN checkpoint, which then converts as one
    assert convert_state_dict(official)[1]['model'] == 'FRN'


def test_conversion_names_unknown_missing_and_misshapen_keys(tmp_path):
    official = official_state('Conv4')
    official['feature_extractor.layers.12.layers.0.weight'] = np.zeros(3, np.float32)
    del official['feature_extractor.layers.9.layers.1.running_var']
    official['scale'] = np.zeros(2, np.float32)
    with pytest.raises(FRNError) as err:
        convert_state_dict(official)
    message = str(err.value)
    assert '1 unknown key(s): feature_extractor.layers.12.layers.0.weight' in message
    assert '1 missing key(s): feature_extractor.layers.9.layers.1._variance' in message
    assert 'scale [2] (expected [1])' in message
    assert '--model' in message


def test_backbone_is_inferred_from_the_keys_and_can_be_forced():
    official = official_state('Conv4')
    assert infer_backbone(official) == 'Conv4' and infer_backbone(official_state('ResNet12')) == 'ResNet12'
    with pytest.raises(FRNError, match='ResNet12 backbone.*missing key'):
        convert_state_dict(official, backbone='ResNet12')
    with pytest.raises(FRNError, match='Pass --model'):
        infer_backbone(['scale', 'r'])


def test_pretraining_checkpoint_of_another_image_size_keeps_its_resolution():
    official = official_state('Conv4', pretraining=True)
    official['cat_mat'] = np.ones((3, 36, 64), np.float32)  # 6x6 maps: 96..111 px images
    state, info = convert_state_dict(official)
    assert state['cat_mat'].shape == (3, 36, 64) and info['num_cat'] == 3
    official['cat_mat'] = np.ones((3, 30, 64), np.float32)
    with pytest.raises(FRNError, match='square resolution'):
        convert_state_dict(official)


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, str(REPO / 'tools' / 'convert_official_weights.py'), *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_cli_converts_from_any_folder_and_the_result_loads_into_frn(tmp_path):
    src = shared_path('fixtures', 'frn_official', 'conv4_pretrain_official.pth')
    dst = tmp_path / 'out' / 'conv4_pretrain.pdparams'
    done = run_cli('--src', src, '--dst', dst, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert 'Conv4, pretraining (cat_mat, 8 classes), 27 tensors; dropped 4 num_batches_tracked' in done.stdout
    official = read_torch_state_dict(src)
    pretraining = FRN(backbone='Conv4', is_pretraining=True, num_cat=8)
    assert checkpoint.load_model(pretraining, dst) == ([], [])
    np.testing.assert_array_equal(pretraining.cat_mat.numpy(), official['cat_mat'])
    np.testing.assert_array_equal(pretraining.state_dict()['feature_extractor.layers.3.layers.1._variance'].numpy(),
                                  official['feature_extractor.layers.3.layers.1.running_var'])
    meta = FRN(way=5, shots=[1, 15], backbone='Conv4')
    assert checkpoint.load_model(meta, dst) == (['cat_mat'], [])  # pretraining -> meta-training drops cat_mat
    np.testing.assert_array_equal(meta.scale.numpy(), official['scale'])


def test_cli_converts_the_official_proto_checkpoint_for_proto(tmp_path, capsys):
    src = shared_path('fixtures', 'proto_official', 'conv4_proto_official.pth')
    dst = tmp_path / 'conv4_proto.pdparams'
    load_tool('convert_official_weights').main(['--src', str(src), '--dst', str(dst)])
    assert 'Proto Conv4, fine-tuned, 25 tensors; dropped 4 num_batches_tracked' in capsys.readouterr().out
    model = Proto(backbone='Conv4')
    assert checkpoint.load_model(model, dst) == ([], [])
    assert model.scale.item() == 2.5


@pytest.mark.slow
def test_cli_errors_are_one_line_with_exit_code_2(tmp_path):
    evil = torch_zip(tmp_path / 'evil.pth', {}, pickled=b'\x80\x02' + _global('os', 'system') + b'.')
    done = run_cli('--src', evil, '--dst', tmp_path / 'x.pdparams', cwd=REPO)
    assert done.returncode == 2
    assert done.stderr.startswith('error: refusing to read') and done.stderr.count('\n') == 1
    assert not (tmp_path / 'x.pdparams').exists()
    for flag in ('--model', '--backbone'):  # the old spelling still works, with a note
        forced = run_cli('--src', write_state(tmp_path / 'c4.pth', official_state('Conv4')), '--dst',
                         tmp_path / 'y.pdparams', flag, 'ResNet12', cwd=REPO)
        assert forced.returncode == 2 and 'ResNet12 backbone' in forced.stderr
        assert ('note: --backbone is now spelled --model' in forced.stderr) == (flag == '--backbone')


def test_load_model_keeps_the_model_head_when_the_file_lacks_it(tmp_path):
    path = tmp_path / 'conv4.pdparams'
    convert_checkpoint(write_state(tmp_path / 'c4.pth', official_state('Conv4')), path)
    pretraining = FRN(backbone='Conv4', is_pretraining=True, num_cat=3)
    cat_mat = pretraining.cat_mat.numpy().copy()
    assert checkpoint.load_model(pretraining, path) == ([], ['cat_mat'])
    np.testing.assert_array_equal(pretraining.cat_mat.numpy(), cat_mat)
    with pytest.raises(FRNError, match='backbone parameter'):
        checkpoint.load_model(FRN(backbone='ResNet12'), path)
    with pytest.raises(FRNError, match='PyTorch checkpoint; convert it first'):
        checkpoint.load_model(pretraining, tmp_path / 'c4.pth')


def test_converter_refuses_a_pth_destination(tmp_path):
    src = write_state(tmp_path / 'c4.pth', official_state('Conv4'))
    with pytest.raises(FRNError, match='name it \\*.pdparams'):
        convert_checkpoint(src, tmp_path / 'out.pth')
    assert not (tmp_path / 'out.pth').exists()
    convert_checkpoint(src, tmp_path / 'out.pdparams')
    assert list(paddle.load(str(tmp_path / 'out.pdparams'))) == list(FRN(backbone='Conv4').state_dict())


def test_load_model_fills_a_float64_model_from_a_float32_file(tmp_path):
    path = tmp_path / 'conv4.pdparams'
    convert_checkpoint(write_state(tmp_path / 'c4.pth', official_state('Conv4')), path)
    paddle.set_default_dtype('float64')
    try:
        model = FRN(backbone='Conv4')
    finally:
        paddle.set_default_dtype('float32')
    checkpoint.load_model(model, path)
    assert model.scale.dtype == paddle.float64
    expected = paddle.load(str(path))
    np.testing.assert_array_equal(model.scale.numpy(), expected['scale'].numpy().astype('float64'))
