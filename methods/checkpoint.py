"""Reading `.pdparams` files into the models: a clear error for a wrong file, a partial load that says what it kept."""
import os
import warnings

from utils import FRNError


def read_state_dict(path):
    """Load a `.pdparams` file as a dict of tensors, with a clear error when it cannot be read."""
    import paddle
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FRNError(f'checkpoint {path!r} does not exist; check the path '
                       f'(pretraining writes ./checkpoints/<dataset>/<model>_stl_frn_pretrain/best_model.pdparams)')
    if path.endswith(('.pth', '.pt', '.tar')):
        raise FRNError(f'{path!r} looks like a PyTorch checkpoint; convert it first with '
                       f'`python tools/convert_official_weights.py --src {path} --dst model.pdparams`')
    try:
        state = paddle.load(path)
    except Exception as err:  # paddle raises many types for a corrupt or foreign file
        raise FRNError(f'cannot read checkpoint {path!r} ({type(err).__name__}: {err}); '
                       f'it must be a .pdparams file written by this project or by paddle.save') from None
    if not isinstance(state, dict) or not state:
        raise FRNError(f'checkpoint {path!r} holds no parameters; it must be a state dict saved with paddle.save')
    return state


def load_model(model, path, required_prefix='feature_extractor.'):
    """Load `path` into `model`, keeping what fits.

    Keys the model does not have (such as `cat_mat` when a pretrained model starts
    meta-training) are dropped; head parameters the file lacks keep their initial
    values. A backbone parameter that is missing or has the wrong shape means the
    checkpoint belongs to another model, which is an error.
    Returns (dropped, missing) key lists so callers can report them.
    """
    state = read_state_dict(path)
    own = model.state_dict()
    dropped = sorted(k for k in state if k not in own)
    missing = sorted(k for k in own if k not in state)
    wrong_shape = sorted(k for k in state if k in own and list(state[k].shape) != list(own[k].shape))
    bad_backbone = [k for k in missing if k.startswith(required_prefix)]
    if wrong_shape or bad_backbone:
        detail = []
        if wrong_shape:
            k = wrong_shape[0]
            detail.append(f'{len(wrong_shape)} parameter(s) have the wrong shape, e.g. {k}: '
                          f'file {list(state[k].shape)} vs model {list(own[k].shape)}')
        if bad_backbone:
            detail.append(f'{len(bad_backbone)} backbone parameter(s) are missing, e.g. {bad_backbone[0]}')
        raise FRNError(f'checkpoint {os.fspath(path)!r} does not match this model: {"; ".join(detail)}. '
                       f'Check --model (ResNet12 or Conv4) and --image_size against the run that wrote it.')
    # cast to the model's dtype, so a float32 file fills a float64 model (and the reverse)
    with warnings.catch_warnings():  # paddle warns once per missing key; `missing` reports them instead
        warnings.simplefilter('ignore', UserWarning)
        model.set_state_dict({k: v.astype(own[k].dtype) if v.dtype != own[k].dtype else v
                              for k, v in state.items() if k in own})
    return dropped, missing
