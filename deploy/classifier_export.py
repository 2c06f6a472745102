"""The whole few-shot classifier as one Paddle inference program: query images and stored support maps
in, class scores out, FRN's ridge head included.

The feature export (deploy/export.py, model.*) turns images into maps; this program,
classifier.* in the same folder, takes

    query     [Q, 3, S, S]  float32  query images after the model's preprocessing
    support   [W, K, r, d]  float32  each class's support maps (from model.*), zero past its own images
    shots     [W]           int32    how many of the K slots of each class hold maps (1..K)

and returns scores [Q, W] (FRN's: minus the mean squared reconstruction error), probabilities [Q, W]
(softmax of scale * scores) and explained [Q, W] (the fraction of each query each class rebuilds, the
open-set confidence of deploy/openset.py). Q and W are free; K (--max_shot) is fixed at export.

Classes of different sizes share one tensor: zero rows add nothing to S^T S nor to S S^T's
coupling, so a padded class rebuilds exactly what its own rows do, provided its regulariser is its
own lam_c = (k_c r / d) e^alpha and not the padded one's. methods/ridge.neg_l2_dist takes lam from
the tensor's size, lam_K; multiplying class c's support by s_c = sqrt(lam_K / lam_c) turns
(s^2 S^T S + lam_K I)^-1 s^2 S^T S into (S^T S + lam_c I)^-1 S^T S, the class's own ridge solution.
So the program calls the one head unchanged.

The head works in float64 with cholesky and triangular_solve, which Paddle Inference runs on the
CPU in both 2.6.2 and 3.3.1, but not under oneDNN: its fuse passes turn the float64 matmuls into
fused_matmul, which has no float64 kernel. The pinned configuration therefore runs this program
without oneDNN (the feature program keeps it).
"""
import os

import numpy as np
import paddle
import paddle.nn.functional as F

from deploy.export import FeatureMapNet, check_program, first_line, warn
from methods.ridge import neg_l2_dist, ridge_lambda
from utils import FRNError

PREFIX = 'classifier'
MAX_SHOT = 10
INPUTS = ('query', 'support', 'shots')
OUTPUTS = ('scores', 'probabilities', 'explained')


class FewShotClassifier(paddle.nn.Layer):
    """(query images, support maps [W, K, r, d], shots [W]) -> (scores, probabilities, explained), each [Q, W]."""

    def __init__(self, frn, max_shot):
        super().__init__()
        self.features = FeatureMapNet(frn)
        self.frn = frn
        self.max_shot = max_shot

    def forward(self, query, support, shots):
        query_maps = self.features(query)  # Q, r, d
        resolution, d = self.frn.resolution, self.frn.d
        alpha, beta = self.frn.r[0], self.frn.r[1]
        support = paddle.reshape(support, [-1, self.max_shot * resolution, d])  # W, K*r, d
        lam_padded = ridge_lambda(self.max_shot * resolution, d, alpha)
        lam_own = ridge_lambda(paddle.cast(shots, 'float32') * resolution, d, alpha)  # W
        support = support * paddle.reshape(paddle.sqrt(lam_padded / lam_own), [-1, 1, 1])
        scores = neg_l2_dist(query_maps, support, alpha, beta)  # Q, W
        energy = paddle.mean(paddle.sum(paddle.square(query_maps), axis=2), axis=1, keepdim=True)  # Q, 1
        return scores, F.softmax(scores * self.frn.scale, axis=1), 1 + scores / energy


def save_classifier(folder, frn, image_size, max_shot=MAX_SHOT):
    """Write folder/classifier.* (paddle.jit.save) for an FRN in eval mode. Returns the frn_head.json entry."""
    if max_shot < 1:
        raise FRNError(f'--max_shot must be at least 1, not {max_shot}')
    net = FewShotClassifier(frn, max_shot)
    net.eval()
    size, resolution, d = image_size, frn.resolution, frn.d
    spec = [paddle.static.InputSpec([None, 3, size, size], 'float32', 'query'),
            paddle.static.InputSpec([None, max_shot, resolution, d], 'float32', 'support'),
            paddle.static.InputSpec([None], 'int32', 'shots')]
    paddle.jit.save(paddle.jit.to_static(net, input_spec=spec, full_graph=True), os.path.join(folder, PREFIX))
    return {'max_shot': max_shot,
            'inputs': {'query': '[Q, 3, image_size, image_size] float32, preprocessed as "preprocess" says',
                       'support': f'[W, {max_shot}, {resolution}, {d}] float32: each class\'s support maps '
                                  f'(model.*), zeros past its own',
                       'shots': '[W] int32: support images of each class, 1..max_shot'},
            'outputs': {'scores': '[Q, W] FRN scores', 'probabilities': '[Q, W] softmax(scale * scores)',
                        'explained': '[Q, W] fraction of each query each class rebuilds (open-set confidence)'}}


def pad_support(support_maps, max_shot):
    """One [k_c, r, d] array per class -> (support [W, max_shot, r, d] zero-padded, shots [W] int32)."""
    too_many = [(c, len(m)) for c, m in enumerate(support_maps) if len(m) > max_shot]
    if too_many:
        c, k = too_many[0]
        raise FRNError(f'class {c} has {k} support images, but the exported classifier takes at most {max_shot} per '
                       f'class; export again with --max_shot {k} or more, or use fewer images')
    r, d = support_maps[0].shape[1:]
    support = np.zeros((len(support_maps), max_shot, r, d), dtype=np.float32)
    for c, maps in enumerate(support_maps):
        support[c, :len(maps)] = maps
    return support, np.array([len(m) for m in support_maps], dtype=np.int32)


def classifier_files(save_dir):
    """(program, params) of classifier.* in an exported folder, or an FRNError saying how to make them."""
    params = os.path.join(save_dir, PREFIX + '.pdiparams')
    for ext in ('.json', '.pdmodel'):
        program = os.path.join(save_dir, PREFIX + ext)
        if os.path.isfile(program) and os.path.isfile(params):
            return program, params
    raise FRNError(f'{save_dir!r} has no {PREFIX}.json (or .pdmodel) and {PREFIX}.pdiparams: it was exported '
                   f'without the classifier; export again with tools/export_model.py --classifier')


def classifier_config(program, params, threads=1):
    """paddle.inference on the CPU without oneDNN (see the module docstring), IR optimisation on."""
    config = paddle.inference.Config(program, params)
    config.disable_gpu()
    (config.disable_onednn if hasattr(config, 'disable_onednn') else config.disable_mkldnn)()
    config.set_cpu_math_library_num_threads(threads)
    config.disable_glog_info()
    return config


class ExportedClassifier:
    """classifier.* of an exported folder through paddle.inference; paddle.jit.load when no predictor can be made."""

    def __init__(self, save_dir, head, threads=1, log=warn):
        if 'classifier' not in head:
            raise FRNError(f'{save_dir!r} was exported without the classifier; export again with '
                           f'tools/export_model.py --classifier')
        self.max_shot = int(head['classifier']['max_shot'])
        program, params = classifier_files(save_dir)
        check_program(program, save_dir)
        self.predictor = self.layer = None
        try:
            self.predictor = paddle.inference.create_predictor(classifier_config(program, params, threads))
            self.backend = 'paddle.inference on CPU'
        except Exception as err:  # paddle raises several types; paddle.jit.load may still read the files
            reason = f'{type(err).__name__}: {first_line(err)}'
            try:
                self.layer = paddle.jit.load(os.path.join(save_dir, PREFIX))
            except Exception as load_err:
                raise FRNError(f'cannot load the exported classifier in {save_dir!r}: paddle.inference says '
                               f'{reason}; paddle.jit.load says {type(load_err).__name__}: {first_line(load_err)}; '
                               f'export the model again') from None
            log(f'paddle.inference could not create a predictor for {save_dir!r}/{PREFIX} ({reason}); falling back '
                f'to paddle.jit.load')
            self.layer.eval()
            self.backend = 'paddle.jit.load'

    def __call__(self, query_images, support_maps):
        """Query images [Q, 3, S, S] and one [k_c, r, d] array per class -> {'scores', 'probabilities',
        'explained'}, each [Q, W] numpy."""
        support, shots = pad_support(support_maps, self.max_shot)
        inputs = (np.ascontiguousarray(query_images, dtype=np.float32), support, shots)
        if self.predictor is None:
            with paddle.no_grad():
                outs = [t.numpy() for t in self.layer(*map(paddle.to_tensor, inputs))]
        else:
            for name, value in zip(INPUTS, inputs):
                handle = self.predictor.get_input_handle(name)
                handle.reshape(list(value.shape))
                handle.copy_from_cpu(value)
            self.predictor.run()
            outs = [self.predictor.get_output_handle(n).copy_to_cpu() for n in self.predictor.get_output_names()]
        return dict(zip(OUTPUTS, outs))


def compare_with_dygraph(features, exported, query_images, support_images):
    """Max |exported - dygraph| of the scores, relative to the largest dygraph score, and the largest absolute one.

    features: a DygraphFeatures (the reference maps and head numbers); exported: an ExportedClassifier;
    support_images: one [k_c, 3, S, S] array per class. The dygraph scores are deploy/predict's: each class
    solved alone with its own support, as tools/infer.py scores it.
    """
    from deploy.predict import class_scores
    support_maps = [features(images) for images in support_images]
    reference = class_scores(features(query_images), support_maps, features.alpha, features.beta)
    got = exported(query_images, support_maps)['scores']
    diff = float(np.abs(got - reference).max())
    return diff / float(np.abs(reference).max()), diff


def random_episode(image_size, shots, n_query=4, seed=0):
    """Random images for a check: (queries [n_query, 3, S, S], one [k, 3, S, S] array per class of `shots`)."""
    rng = np.random.RandomState(seed)
    images = lambda n: rng.randn(n, 3, image_size, image_size).astype(np.float32)  # noqa: E731
    return images(n_query), [images(k) for k in shots]


def extras(model_path, classifier=False, max_shot=None):
    """The `extra` of deploy/export.export_model: the checkpoint's open-set calibration, and the classifier if asked."""
    from deploy import openset

    def write(folder, model, head):
        copied, note = openset.copy_into_export(model_path, folder, {
            'backbone': head['backbone'], 'image_size': head['image_size'], 'scale': head['scale'], 'r': head['r']})
        if note:
            (print if copied else warn)(note)
        if not classifier:
            return {}
        return {'classifier': save_classifier(folder, model, head['image_size'], max_shot or MAX_SHOT)}
    return write


def check_export(model_path, backbone, save_dir, threads=1):
    """The export check of tools/export_model.py: relative score difference on random images, classes of 1, 2 and
    max_shot support images."""
    from deploy.export import DygraphFeatures, read_head
    head = read_head(save_dir)
    exported = ExportedClassifier(save_dir, head, threads)
    features = DygraphFeatures(model_path, backbone, head['image_size'])
    shots = sorted({1, min(2, exported.max_shot), exported.max_shot})
    relative, _ = compare_with_dygraph(features, exported, *random_episode(head['image_size'], shots))
    return relative
