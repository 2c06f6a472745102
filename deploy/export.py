"""FRN's feature extractor as a Paddle inference model, and two ways to run a feature extractor.

What is exported is `FRN.get_feature_map`: eval-transformed images [N, 3, S, S] ->
feature maps [N, resolution, d], positions in row-major order, ResNet-12 maps already
divided by sqrt(640). The exported model therefore feeds the FRN head the same numbers
as the dygraph model. The head's learned numbers (the softmax scale gamma and
r = [alpha, beta]) and the resolution go into `frn_head.json` beside it:

    <save_dir>/model.json         the program (paddle.jit.save; Paddle < 3 writes model.pdmodel)
    <save_dir>/model.pdiparams    the weights
    <save_dir>/frn_head.json      backbone, image_size, resolution, d, scale, r, ...

LeakyReLU (ResNet-12) is exported as the identical max(x, 0.1 x): Paddle 3.3.1's oneDNN
predictor crashes on leaky_relu. Training code is untouched; only the exported copy changes.

`DygraphFeatures` (a .pdparams checkpoint) and `InferenceFeatures` (an exported folder,
through paddle.inference, falling back to paddle.jit.load) both map images to feature
maps and carry the head's numbers, so prediction code does not care which one it has.
"""
import json
import os
import sys

import numpy as np
import paddle

from data import preprocess
from data.prepare_output import check_dst, staged_output
from methods.FRN import FRN
from network import BACKBONES
from methods.checkpoint import load_model, read_state_dict
from runtime.device import resolve_gpu, select_device
from runtime.paddle_internals import leaky_relu_slope, parse_program
from utils import FRNError, os_error_cause

HEAD_FILE = 'frn_head.json'
MODEL_PREFIX = 'model'
FORMAT = 'frn-paddle feature map 1'
BATCH = 64  # images per forward pass


def warn(message):
    print(f'warning: {message}', file=sys.stderr)


class LeakyReLUAsMaximum(paddle.nn.Layer):
    """max(x, slope x): equal to LeakyReLU for 0 < slope < 1, and runs on Paddle 3.3.1's oneDNN predictor."""

    def __init__(self, slope):
        super().__init__()
        self.slope = slope

    def forward(self, x):
        return paddle.maximum(x, self.slope * x)


class FeatureMapNet(paddle.nn.Layer):
    """The part of FRN that is exported: `get_feature_map`, with export-friendly activations."""

    def __init__(self, frn):
        super().__init__()
        self.frn = frn
        for layer in frn.sublayers(include_self=True):
            for name, child in list(layer.named_children()):
                if isinstance(child, paddle.nn.LeakyReLU):
                    setattr(layer, name, LeakyReLUAsMaximum(leaky_relu_slope(child)))

    def forward(self, image):
        return self.frn.get_feature_map(image)


_TOLD = set()  # what the user was already told, so each note comes once


def note_once(message, log=None):
    if message not in _TOLD:
        _TOLD.add(message)
        (log or warn)(message)


def checkpoint_preprocess(model_path, image_size=None):
    """(record, image size, note) for a checkpoint: its preprocess.json, or the natural-image defaults and a
    note saying so (for `note_once`, after the checkpoint has loaded, so that a bad file gives one error line).

    An --image_size that disagrees with the record is an error: the model was trained at the record's size.
    """
    record = preprocess.read_sidecar(model_path)
    note = None
    if record is None:
        record = preprocess.natural_default(image_size or 84)
        note = (f'{model_path!r} has no {preprocess.SIDECAR} beside it (an older checkpoint or converted '
                f'official weights): using the natural-image defaults ({preprocess.describe(record)})')
    elif image_size and image_size != record['image_size']:
        raise FRNError(f'--image_size {image_size} disagrees with {model_path!r}, which was trained on '
                       f'{record["image_size"]} px images ({preprocess.SIDECAR} beside it); drop --image_size')
    return record, record['image_size'], note


def infer_backbone(model_path):
    """The backbone a .pdparams checkpoint was trained with, from its parameter names."""
    from deploy.official_weights import infer_backbone as from_keys
    return from_keys(read_state_dict(model_path))


def load_frn(model_path, backbone=None, image_size=84):
    """An FRN in eval mode with the weights of `model_path` (backbone read from the keys unless given)."""
    backbone = backbone or infer_backbone(model_path)
    if backbone not in BACKBONES:
        raise FRNError(f'unknown model {backbone!r}; choose one of {", ".join(BACKBONES)}')
    model = FRN(backbone=backbone, image_size=image_size)
    _, missing = load_model(model, model_path)
    if 'r' in missing:  # FRN's [alpha, beta]: every FRN checkpoint has it, a ProtoNet's never
        raise FRNError(f'{model_path!r} is a ProtoNet checkpoint (meta_train.py --method meta_proto, or a converted '
                       f'official ProtoNet): it has no r = [alpha, beta] for FRN\'s head, which prediction and '
                       f'export run; give an FRN checkpoint, or test this one with test.py --method meta_proto')
    model.eval()
    return model


def head_of(model):
    """The FRN head's learned numbers and shapes, as stored in frn_head.json."""
    return {'scale': model.scale.item(), 'r': [model.r[0].item(), model.r[1].item()],
            'resolution': model.resolution, 'd': model.d}


EXTRA_PREFIXES = ('classifier.',)  # the whole classifier (deploy/classifier_export.py), when asked for
EXTRA_FILES = ('openset.json',)  # the open-set calibration (deploy/openset.py), when there is one


def export_files(names):
    """The names an export consists of: the program and weights files of paddle.jit.save, the head file, and the
    classifier program and open-set calibration when present."""
    return [n for n in names if n.startswith((MODEL_PREFIX + '.',) + EXTRA_PREFIXES) or n in (HEAD_FILE,) + EXTRA_FILES]


def check_save_dir(save_dir):
    """Refuse a --save_dir that holds anything but an earlier export: the new export replaces the whole folder."""
    check_dst(save_dir, '--save_dir')
    if not os.path.basename(os.path.abspath(save_dir)):
        raise FRNError(f'--save_dir {save_dir!r} is the root folder; give a folder for the export')
    others = sorted(set(os.listdir(save_dir)) - set(export_files(os.listdir(save_dir)))) \
        if os.path.isdir(save_dir) else []
    if others:
        raise FRNError(f'--save_dir {save_dir!r} holds files that are not part of an export ({", ".join(others[:4])}'
                       f'{", ..." if len(others) > 4 else ""}); an export replaces the whole folder, so give a new '
                       f'or empty folder, or one that holds only an earlier export')


def verify_saved(folder, model, image_size, save_dir):
    """Load the saved program back and run it: a full disk makes paddle.jit.save write its files short without
    an error, which only reading them shows."""
    probe = paddle.to_tensor(np.random.RandomState(0).randn(2, 3, image_size, image_size).astype('float32'))
    try:
        with paddle.no_grad():
            saved = paddle.jit.load(os.path.join(folder, MODEL_PREFIX))
            saved.eval()
            got, want = saved(probe).numpy(), model.get_feature_map(probe).numpy()
    except Exception as err:  # paddle raises several types for a file cut short
        raise FRNError(f'the new export for {save_dir!r} could not be read back ({type(err).__name__}: '
                       f'{first_line(err)}); a full disk cuts paddle.jit.save\'s files short without an error: free '
                       f'some space and export again; nothing was changed in {save_dir!r}') from None
    if got.shape != want.shape or not np.abs(got - want).max() <= 1e-4 * max(np.abs(want).max(), 1e-12):
        raise FRNError(f'the new export for {save_dir!r}, read back, does not compute the checkpoint\'s feature '
                       f'maps (a full disk?): free some space and export again; nothing was changed in {save_dir!r}')


def export_model(model_path, backbone, save_dir, image_size=None, check=None, extra=None):
    """Write `save_dir`/model.* (paddle.jit.save of get_feature_map) and frn_head.json. Returns (head, check's result).

    extra(folder, model, head), when given, writes more files into the export (the classifier program, the
    open-set calibration) and returns entries to add to frn_head.json.

    The checkpoint's preprocessing record (preprocess.json beside it, else the natural-image
    defaults) goes into frn_head.json as 'preprocess', and sets the input size. The export is
    built in a hidden folder beside `save_dir` (data/prepare_output.staged_output), read back,
    given to `check(folder)` if any, and only then swapped in: an earlier export in `save_dir`
    stays as it was until the new one is complete and checked.
    """
    paddle.device.set_device('cpu')
    record, image_size, note = checkpoint_preprocess(model_path, image_size)
    model = load_frn(model_path, backbone, image_size)
    if note:
        note_once(note)
    check_save_dir(save_dir)
    net = FeatureMapNet(model)
    net.eval()
    spec = [paddle.static.InputSpec([None, 3, image_size, image_size], 'float32', 'image')]
    static = paddle.jit.to_static(net, input_spec=spec, full_graph=True)
    head = {'format': FORMAT, 'backbone': model.backbone, 'image_size': image_size, **head_of(model),
            'output': 'feature map [N, resolution, d] = FRN.get_feature_map (row-major positions; '
                      'ResNet12 maps divided by sqrt(640))',
            'input': f'image [N, 3, image_size, image_size], float32, after: {preprocess.describe(record)}',
            'preprocess': record,
            'checkpoint': os.path.abspath(model_path), 'paddle': paddle.__version__}
    save_dir = os.path.abspath(save_dir)
    with staged_output(os.path.dirname(save_dir), [os.path.basename(save_dir)], True, '--save_dir') as tmp:
        folder = os.path.join(tmp, os.path.basename(save_dir))
        try:
            os.makedirs(folder)
            paddle.jit.save(static, os.path.join(folder, MODEL_PREFIX))
            if extra:
                head.update(extra(folder, model, head))
            with open(os.path.join(folder, HEAD_FILE), 'w', encoding='utf-8') as f:
                f.write(json.dumps(head, indent=2) + '\n')
        except OSError as err:
            raise FRNError(f'cannot write the export to {save_dir!r}: {os_error_cause(err)}; nothing was changed '
                           f'there') from None
        verify_saved(folder, model, image_size, save_dir)
        checked = check(folder) if check else None
        check_save_dir(save_dir)  # files may have been put there in the meantime
    return head, checked


def read_head(save_dir):
    """frn_head.json of an exported folder, checked."""
    path = os.path.join(save_dir, HEAD_FILE)
    if not os.path.isdir(save_dir):
        raise FRNError(f'--inference_dir {save_dir!r} does not exist; create it with '
                       f'`python tools/export_model.py --model_path CKPT --save_dir {save_dir}`')
    try:
        with open(path, encoding='utf-8') as f:
            head = json.load(f)
    except FileNotFoundError:
        raise FRNError(f'{save_dir!r} has no {HEAD_FILE}, so it is not a folder written by tools/export_model.py; '
                       f'export the model again') from None
    except ValueError as err:
        raise FRNError(f'{path!r} is not valid JSON ({err}); export the model again') from None
    if not isinstance(head, dict):
        raise FRNError(f'{path!r} holds a JSON {type(head).__name__}, not a head record; export the model again')
    missing = [k for k in ('format', 'backbone', 'image_size', 'resolution', 'd', 'scale', 'r') if k not in head]
    if missing or head.get('format') != FORMAT:
        raise FRNError(f'{path!r} is not a head file this code understands (format {head.get("format")!r}, '
                       f'expected {FORMAT!r}; missing {", ".join(missing) or "nothing"}); export the model again '
                       f'with this version of tools/export_model.py')
    bad = [(key, expected) for key, ok, expected in (
        ('backbone', head['backbone'] in BACKBONES, ' or '.join(BACKBONES)),
        ('image_size', _whole(head['image_size'], 16), 'a whole number of pixels, at least 16'),
        ('resolution', _whole(head['resolution'], 1), 'a positive whole number'),
        ('d', _whole(head['d'], 1), 'a positive whole number'),
        ('scale', _finite(head['scale']), 'a number'),
        ('r', isinstance(head['r'], list) and len(head['r']) == 2 and all(map(_finite, head['r'])),
         '[alpha, beta], two numbers')) if not ok]
    if bad:
        key, expected = bad[0]
        raise FRNError(f'{path!r} has a bad "{key}": {json.dumps(head[key])} (expected {expected}); the file was '
                       f'edited or damaged: export the model again')
    if head.get('preprocess') is not None:
        record = preprocess.check(head['preprocess'], f'"preprocess" of {path}')
        if record['image_size'] != head['image_size']:
            raise FRNError(f'{path!r} says image_size {head["image_size"]}, but its preprocessing record says '
                           f'{record["image_size"]} px; the two disagree (the file was edited): export the model '
                           f'again')
    return head


def _whole(value, least):
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def model_files(save_dir):
    """(program file, params file) as written by paddle.jit.save: model.json (Paddle 3) or model.pdmodel."""
    params = os.path.join(save_dir, MODEL_PREFIX + '.pdiparams')
    for ext in ('.json', '.pdmodel'):
        program = os.path.join(save_dir, MODEL_PREFIX + ext)
        if os.path.isfile(program) and os.path.isfile(params):
            return program, params
    raise FRNError(f'{save_dir!r} lacks {MODEL_PREFIX}.json (or .pdmodel) and {MODEL_PREFIX}.pdiparams; '
                   f'export the model again with tools/export_model.py')


def check_program(program, save_dir):
    """An FRNError for a program file that does not parse: Paddle 2.6's predictor crashes (SIGSEGV) on a
    damaged model.pdmodel instead of raising."""
    try:
        if program.endswith('.json'):
            with open(program, encoding='utf-8') as f:
                json.load(f)
        else:
            with open(program, 'rb') as f:
                parse_program(f.read())
    except Exception as err:  # json, protobuf and paddle raise several types
        raise FRNError(f'cannot load the exported model in {save_dir!r}: {os.path.basename(program)} does not parse '
                       f'({type(err).__name__}: {first_line(err)}); it is damaged or truncated: export the model '
                       f'again') from None


def predictor_config(program, params, use_gpu=False, threads=1):
    """The pinned paddle.inference configuration.

    CPU: oneDNN on (Paddle's default, stated explicitly), `threads` math threads, IR
    optimisation on, no memory optimisation: in 3.3.1 `enable_memory_optim` makes
    create_predictor fail ("pass_result_info ... map.count(predictor_id)"), and oneDNN with
    a leaky_relu op segfaults, hence LeakyReLUAsMaximum. GPU: CUDA device 0, 256 MB pool.
    """
    config = paddle.inference.Config(program, params)
    if use_gpu:
        config.enable_use_gpu(256, 0)
    else:
        config.disable_gpu()
        # Paddle 3.x names it enable_onednn; Paddle 2.x has only the older enable_mkldnn
        (config.enable_onednn if hasattr(config, 'enable_onednn') else config.enable_mkldnn)()
        config.set_cpu_math_library_num_threads(threads)
    config.disable_glog_info()
    return config


def first_line(err, limit=200):
    """The first line of an exception's message: paddle's run to many lines of C++ context."""
    return (str(err).strip().splitlines() or [''])[0][:limit]


class Features:
    """Images -> feature maps, plus what the FRN head needs: scale, alpha, beta, image_size."""
    backend = None
    source = None  # the checkpoint or the exported folder
    backbone = None
    image_size = None
    preprocess = None  # the record of data/preprocess.py: how images are turned into the input
    scale = alpha = beta = None

    def __call__(self, images):
        """float32 [N, 3, S, S] -> float32 numpy [N, resolution, d], in batches of BATCH."""
        images = np.ascontiguousarray(images, dtype=np.float32)
        return np.concatenate([self.run(images[i:i + BATCH]) for i in range(0, len(images), BATCH)], axis=0)

    def run(self, images):
        raise NotImplementedError

    def describe(self):
        return f'{self.source} ({self.backbone}, {self.image_size} px, {self.backend})'


class DygraphFeatures(Features):
    """A .pdparams checkpoint run as a dygraph FRN."""

    def __init__(self, model_path, backbone=None, image_size=None, use_gpu=False, log=None):
        select_device(use_gpu)
        self.source = model_path
        self.preprocess, image_size, note = checkpoint_preprocess(model_path, image_size)
        self.model = load_frn(model_path, backbone, image_size)
        if note:
            note_once(note, log)
        self.backbone, self.image_size = self.model.backbone, image_size
        head = head_of(self.model)
        self.scale, (self.alpha, self.beta) = head['scale'], head['r']
        self.backend = f'dygraph on {paddle.device.get_device()}'

    @paddle.no_grad()
    def run(self, images):
        return self.model.get_feature_map(paddle.to_tensor(images)).numpy()


class InferenceFeatures(Features):
    """An exported folder run through paddle.inference; paddle.jit.load when no predictor can be created."""

    def __init__(self, save_dir, use_gpu=False, threads=1, log=warn):
        head = read_head(save_dir)
        program, params = model_files(save_dir)
        check_program(program, save_dir)
        self.head, self.source = head, save_dir
        self.backbone, self.image_size = head['backbone'], int(head['image_size'])
        self.scale = float(head['scale'])
        self.alpha, self.beta = (float(v) for v in head['r'])
        if head.get('preprocess') is None:
            self.preprocess = preprocess.natural_default(self.image_size)
            note_once(f'{save_dir!r} was exported without a preprocessing record: using the natural-image '
                      f'defaults ({preprocess.describe(self.preprocess)})', log)
        else:
            self.preprocess = head['preprocess']  # checked by read_head
        use_gpu = resolve_gpu(use_gpu)
        self.predictor = self.layer = None
        try:
            self.predictor = paddle.inference.create_predictor(predictor_config(program, params, use_gpu, threads))
            self.backend = f'paddle.inference on {"GPU" if use_gpu else "CPU with oneDNN"}'
        except Exception as err:  # paddle raises several types; paddle.jit.load may still read the files
            reason = f'{type(err).__name__}: {first_line(err)}'
            paddle.device.set_device('gpu' if use_gpu else 'cpu')
            try:
                self.layer = paddle.jit.load(os.path.join(save_dir, MODEL_PREFIX))
            except Exception as load_err:  # neither can read them: the files are damaged
                raise FRNError(f'cannot load the exported model in {save_dir!r}: paddle.inference says {reason}; '
                               f'paddle.jit.load says {type(load_err).__name__}: {first_line(load_err)}. '
                               f'{os.path.basename(program)} or {os.path.basename(params)} is damaged or '
                               f'truncated: export the model again') from None
            log(f'paddle.inference could not create a predictor for {save_dir!r} ({reason}); '
                f'falling back to paddle.jit.load')
            self.layer.eval()
            self.backend = f'paddle.jit.load on {paddle.device.get_device()}'

    def run(self, images):
        if self.predictor is None:
            with paddle.no_grad():
                out = self.layer(paddle.to_tensor(images)).numpy()
        else:
            handle = self.predictor.get_input_handle(self.predictor.get_input_names()[0])
            handle.reshape(list(images.shape))
            handle.copy_from_cpu(images)
            self.predictor.run()
            out = self.predictor.get_output_handle(self.predictor.get_output_names()[0]).copy_to_cpu()
        expected = [len(images), self.head['resolution'], self.head['d']]
        if list(out.shape) != expected:
            raise FRNError(f'the exported model gives feature maps of shape {list(out.shape)}, but {HEAD_FILE} '
                           f'says {expected}: the model files and {HEAD_FILE} do not belong together; '
                           f'export the model again')
        return out


def feature_extractor(model_path=None, inference_dir=None, backbone=None, image_size=None, use_gpu=False,
                      threads=1, log=warn):
    """DygraphFeatures or InferenceFeatures, with --model/--image_size checked against an exported folder."""
    if (model_path is None) == (inference_dir is None):
        raise FRNError('give exactly one of --model_path (a .pdparams checkpoint) or --inference_dir '
                       '(a folder written by tools/export_model.py)')
    if model_path is not None:
        return DygraphFeatures(model_path, backbone, image_size, use_gpu, log)
    head = read_head(inference_dir)
    if backbone and backbone != head['backbone']:
        raise FRNError(f'--model {backbone} does not match the exported model in {inference_dir!r}, which is a '
                       f'{head["backbone"]}; drop --model or export the right checkpoint')
    if image_size and image_size != head['image_size']:
        raise FRNError(f'--image_size {image_size} does not match the exported model in {inference_dir!r}, which '
                       f'takes {head["image_size"]} px images; drop --image_size or export again with '
                       f'--image_size {image_size}')
    return InferenceFeatures(inference_dir, use_gpu, threads, log)
