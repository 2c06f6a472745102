"""Official FRN and ProtoNet (PyTorch) checkpoints -> our FRN's / Proto's parameters, without PyTorch.

A `torch.save` file (PyTorch >= 1.6) is a zip archive: `<folder>/data.pkl` pickles the
state dict, and every tensor's storage is a raw little- or big-endian byte file
`<folder>/data/<key>`. `read_torch_state_dict` unpickles with an allow-list: only the
few globals a state dict needs are resolved (the OrderedDict, the tensor-rebuild
functions and the typed storages), each to a local stand-in, so no pickled code runs.

Official parameter names are ours too, except the BatchNorm buffers (`running_mean`,
`running_var` -> `_mean`, `_variance`); `num_batches_tracked` has no counterpart.
The official repository's ProtoNet baseline (`models/Proto.py`) saves the same backbone
names and `scale` but no `r`: that absence tells the two models apart.
"""
import collections
import os
import pickle
import zipfile

import numpy as np

from runtime.paddle_internals import BN_MEAN_KEY, BN_VARIANCE_KEY
from utils import FRNError

# torch storage class -> numpy dtype of its elements
_STORAGE_DTYPES = {
    'DoubleStorage': np.float64, 'FloatStorage': np.float32, 'HalfStorage': np.float16,
    'BFloat16Storage': 'bfloat16', 'LongStorage': np.int64, 'IntStorage': np.int32,
    'ShortStorage': np.int16, 'CharStorage': np.int8, 'ByteStorage': np.uint8, 'BoolStorage': np.bool_,
}
_LEGACY_MAGIC = pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2)[2:]  # pre-1.6 torch.save header
_BN_BUFFERS = {'running_mean': BN_MEAN_KEY, 'running_var': BN_VARIANCE_KEY}
HEAD_KEYS = ('scale', 'r', 'cat_mat')


class _StorageType:
    """Stand-in for `torch.<X>Storage`: only its element type matters."""

    def __init__(self, name):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    """Stand-in for `torch._utils._rebuild_tensor_v2`: a strided view of the storage, copied."""
    if not isinstance(storage, np.ndarray):
        raise ValueError('a tensor refers to something that is not a storage')
    size, stride = tuple(size), tuple(stride)
    values = (storage_offset,) + size + stride
    if len(size) != len(stride) or not all(isinstance(v, int) and v >= 0 for v in values):
        raise ValueError(f'bad tensor layout: offset {storage_offset}, size {size}, stride {stride}')
    if 0 in size:
        return np.zeros(size, dtype=storage.dtype)
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.size:
        raise ValueError(f'tensor of size {size} at offset {storage_offset} runs past its storage '
                         f'of {storage.size} elements')
    view = np.lib.stride_tricks.as_strided(storage[storage_offset:], shape=size,
                                           strides=[s * storage.itemsize for s in stride], writeable=False)
    return np.array(view)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    """Stand-in for `torch._utils._rebuild_parameter`: a Parameter is its data."""
    return data


_ALLOWED_GLOBALS = {
    ('collections', 'OrderedDict'): collections.OrderedDict,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor_v2,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    **{('torch', name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, load_storage, path):
        super().__init__(file)
        self._load_storage = load_storage
        self._path = path

    def find_class(self, module, name):
        found = _ALLOWED_GLOBALS.get((module, name))
        if found is None:
            allowed = ', '.join(sorted(f'{m}.{n}' for m, n in _ALLOWED_GLOBALS if not n.endswith('Storage')))
            raise FRNError(f'refusing to read {self._path!r}: its pickle references the global '
                           f'`{module}.{name}`, which a state dict never needs (allowed: {allowed} and the '
                           f'torch.<Type>Storage classes). Nothing from the file was executed.')
        return found

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 4 and pid[0] == 'storage'
                and isinstance(pid[1], _StorageType)):
            raise ValueError(f'unexpected persistent id {pid!r:.80}')
        return self._load_storage(pid[1], str(pid[2]))


def _storage_reader(archive, prefix, path):
    names = set(archive.namelist())
    byteorder = 'little'
    if prefix + 'byteorder' in names:
        byteorder = archive.read(prefix + 'byteorder').decode('ascii', 'replace').strip()
        if byteorder not in ('little', 'big'):
            raise FRNError(f'{path!r} declares an unknown byte order {byteorder!r}')
    cache = {}

    def load(storage_type, key):
        if key not in cache:
            entry = f'{prefix}data/{key}'
            if entry not in names:
                raise FRNError(f'{path!r} is incomplete: storage {entry!r} is missing from the archive')
            raw = archive.read(entry)
            if storage_type.dtype == 'bfloat16':  # numpy has no bfloat16: widen the 16 bits to a float32
                half = np.frombuffer(raw, dtype=np.dtype(np.uint16).newbyteorder('<' if byteorder == 'little' else '>'))
                cache[key] = (half.astype(np.uint32) << 16).view(np.float32)
            else:
                dtype = np.dtype(storage_type.dtype).newbyteorder('<' if byteorder == 'little' else '>')
                if len(raw) % dtype.itemsize:
                    raise FRNError(f'{path!r}: storage {entry!r} has {len(raw)} bytes, not a whole number '
                                   f'of {storage_type.name} elements')
                cache[key] = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder('='))
        return cache[key]
    return load


def read_torch_state_dict(path):
    """Read a `torch.save`d state dict as an ordered {name: numpy array}, without torch.

    Raises FRNError for a missing, legacy-format, corrupt or unsafe file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FRNError(f'{path!r} does not exist; pass the official checkpoint with --src')
    if not zipfile.is_zipfile(path):
        with open(path, 'rb') as f:
            head = f.read(512)
        if head.startswith(b'\x80') and _LEGACY_MAGIC in head[:64] or head[257:262] == b'ustar':
            raise FRNError(f'{path!r} uses the legacy (pre-1.6) torch.save format, which is not supported. '
                           f'Re-save it with PyTorch >= 1.6: '
                           f'python -c "import torch; torch.save(torch.load(\'{path}\'), \'resaved.pth\')"')
        if head.startswith(b'PK\x03\x04'):  # a zip's first entry, but no readable directory at its end
            raise FRNError(f'{path!r} is truncated or damaged: it begins like the zip archive torch.save writes, '
                           f'but its end (the zip directory) is missing; copy or download it again')
        raise FRNError(f'{path!r} is not a PyTorch checkpoint (expected the zip archive written by torch.save)')
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith('data.pkl') and n.count('/') == 1]
            if len(pickles) != 1:
                raise FRNError(f'{path!r} is a zip file but not a torch.save archive '
                               f'(expected exactly one <folder>/data.pkl, found {len(pickles)})')
            prefix = pickles[0][:-len('data.pkl')]
            with archive.open(pickles[0]) as f:
                state = _RestrictedUnpickler(f, _storage_reader(archive, prefix, path), path).load()
    except FRNError:
        raise
    except Exception as err:  # a corrupt or hand-made archive can fail in many ways
        raise FRNError(f'cannot read {path!r} as a PyTorch state dict ({type(err).__name__}: {err})') from None
    if not isinstance(state, dict):
        raise FRNError(f'{path!r} holds a {type(state).__name__}, not a state dict; '
                       f'save the model with torch.save(model.state_dict(), path)')
    for key, value in state.items():
        if not isinstance(key, str) or not isinstance(value, np.ndarray):
            raise FRNError(f'{path!r} is not a plain state dict: entry {key!r} is a {type(value).__name__}, '
                           f'not a tensor; save the model with torch.save(model.state_dict(), path)')
    return collections.OrderedDict(state)


def infer_backbone(keys, flag='--model'):
    """'ResNet12' or 'Conv4' from official parameter names; `flag` is the option that forces one in the calling tool."""
    keys = list(keys)
    if any(k.startswith('feature_extractor.layer1.') for k in keys):
        return 'ResNet12'
    if any(k.startswith('feature_extractor.layers.') for k in keys):
        return 'Conv4'
    raise FRNError(f'cannot tell the backbone from the checkpoint keys (no feature_extractor.layer1.* or '
                   f'feature_extractor.layers.*); is it an FRN checkpoint? Pass {flag} to force one')


def infer_model(keys):
    """'FRN' or 'Proto' from official parameter names: only FRN has `r` (alpha, beta)."""
    return 'FRN' if 'r' in keys or 'cat_mat' in keys else 'Proto'


def paddle_key(official_key):
    """Our name for an official key, or None for one that has no counterpart (num_batches_tracked)."""
    module, _, leaf = official_key.rpartition('.')
    if leaf == 'num_batches_tracked':
        return None
    if leaf in _BN_BUFFERS:
        return f'{module}.{_BN_BUFFERS[leaf]}'
    return official_key


def _listing(keys, limit=5):
    shown = ', '.join(keys[:limit])
    return shown + (f' and {len(keys) - limit} more' if len(keys) > limit else '')


def convert_state_dict(official, backbone=None, dtype=np.float32):
    """Map an official FRN or Proto state dict onto our names, checking every key and shape.

    Returns (state, info): `state` is {our name: numpy array of `dtype`} in our model's
    order; `info` says the model ('FRN' or 'Proto'), the backbone, whether it is a
    pretraining checkpoint (with `cat_mat`), num_cat, and the official keys that were dropped.
    """
    from methods.FRN import FRN
    from methods.protonet import Proto
    backbone = backbone or infer_backbone(official)
    model_name = infer_model(official)
    renamed, dropped = {}, []
    for key, value in official.items():
        ours = paddle_key(key)
        if ours is None:
            dropped.append(key)
        else:
            renamed[ours] = value
    pretraining = 'cat_mat' in renamed
    num_cat, image_size = None, 84
    if pretraining:
        cat_mat = renamed['cat_mat']
        side = int(round(cat_mat.shape[1] ** 0.5)) if cat_mat.ndim == 3 else 0
        if cat_mat.ndim != 3 or side * side != cat_mat.shape[1] or side == 0:
            raise FRNError(f'cat_mat has shape {list(cat_mat.shape)}; expected [num_cat, resolution, d] '
                           f'with a square resolution such as 25 (5x5)')
        num_cat, image_size = cat_mat.shape[0], side * 16  # four 2x2 pools: side*16 pixels give side
    if model_name == 'Proto':
        model = Proto(backbone=backbone, image_size=image_size)
    else:
        model = FRN(backbone=backbone, is_pretraining=pretraining, num_cat=num_cat, image_size=image_size)
    expected = {k: list(v.shape) for k, v in model.state_dict().items()}
    unknown = [k for k in official if paddle_key(k) is not None and paddle_key(k) not in expected]
    missing = [k for k in expected if k not in renamed]
    misshapen = [f'{k} {list(renamed[k].shape)} (expected {shape})' for k, shape in expected.items()
                 if k in renamed and list(renamed[k].shape) != shape]
    problems = []
    if unknown:
        problems.append(f'{len(unknown)} unknown key(s): {_listing(unknown)}')
    if missing:
        problems.append(f'{len(missing)} missing key(s): {_listing(missing)}')
    if misshapen:
        problems.append(f'{len(misshapen)} key(s) with the wrong shape: {_listing(misshapen, 3)}')
    if problems:
        raise FRNError(f'the checkpoint does not match an official {model_name} with the {backbone} backbone: '
                       f'{"; ".join(problems)}. If the backbone was guessed wrong, force it with --model')
    state = collections.OrderedDict((k, np.asarray(renamed[k], dtype=dtype)) for k in expected)
    info = {'model': model_name, 'backbone': backbone, 'pretraining': pretraining, 'num_cat': num_cat,
            'dropped': dropped, 'num_tensors': len(state)}
    return state, info


def convert_checkpoint(src, dst, backbone=None):
    """Read the official checkpoint `src` and write our `.pdparams` to `dst`; returns the info dict."""
    import paddle
    from utils import atomic_save
    if os.fspath(dst).endswith(('.pth', '.pt', '.tar')):
        raise FRNError(f'--dst {os.fspath(dst)!r} would look like a PyTorch file; name it *.pdparams')
    state, info = convert_state_dict(read_torch_state_dict(src), backbone=backbone)
    atomic_save({k: paddle.to_tensor(v) for k, v in state.items()}, dst)
    return info
