"""Why FRN picked a class: where each class reconstructs a query well, and from which support positions.

FRN scores a query under class c by rebuilding every position q of its feature map from
c's support positions S (methods/ridge.neg_l2_dist, FRN's one head, asked for its
extras): q_bar = W S with ridge weights
W = rho q S^T (S S^T + lam I)^-1 (Equation 8). The per-position squared errors
||q_bar - q||^2, laid out on the h x w feature grid, are the class's error map; their
negative mean is the class's score, the very number deploy/predict.py softmaxes, so the
maps explain the prediction rather than approximate it. For the predicted class, the
largest entries of W name the support positions (image, row, col) a query position is
built from.
"""
import math

import numpy as np
import paddle.nn.functional as F

from deploy.predict import feature_maps, head_inputs
from methods.ridge import neg_l2_dist


def grid_side(resolution):
    """Side of the square feature grid with `resolution` positions (FRN's maps are row-major h x w, h = w)."""
    side = math.isqrt(resolution)
    if side * side != resolution:
        raise ValueError(f'a feature map of {resolution} positions is not a square grid')
    return side


def traced_positions(resolution, positions=None):
    """How many best (and as many worst) positions to trace on a map of `resolution` positions: at most half of
    them; by default (None) 2, and 1 on maps under 16 positions, so that a 2 x 2 map is not all best or worst."""
    if positions is None:
        return max(1, min(2, resolution // 8))
    return max(1, min(positions, resolution // 2))


def explain_maps(query_maps, support_maps, alpha, beta, scale, top=3, positions=None, reconstruct=False):
    """Error maps, scores, probabilities and correspondences from feature maps.

    query_maps: [Q, r, d]; support_maps: one [k_c, r, d] per class (k_c may differ).
    Each class is reconstructed from its own support alone, as in deploy/predict.py.
    Returns {'errors' [Q, way, h, w], 'scores' [Q, way] (= -mean of errors),
    'probabilities' [Q, way], 'predicted' [Q] class indices, 'correspondences': per query
    a list of {'kind': 'best'|'worst', 'row', 'col', 'error', 'support': top `top` of
    {'image' (index within the predicted class), 'row', 'col', 'weight'}}}, and with `reconstruct`
    'reconstructions' [Q, way, r, d]: each class's rho * q_bar = W S, the maps whose errors these
    are; `positions` best and as many worst positions under the predicted class (see traced_positions).
    """
    n_query, resolution, _ = query_maps.shape
    side = grid_side(resolution)
    head = neg_l2_dist(*head_inputs(query_maps, support_maps, alpha, beta), explain=True, reconstruct=reconstruct)
    scores = head['scores']  # Q, way: the scores deploy/predict.py softmaxes
    probabilities = F.softmax(scores * scale, axis=1).numpy()
    errors = np.transpose(head['dist'].numpy(), [0, 2, 1]).reshape(n_query, -1, side, side)  # Q, way, h, w
    weights = [w.numpy() for w in head['weights']]  # way x [Q, r, k_c*r]
    scores = scores.numpy()
    predicted = scores.argmax(axis=1)
    n_each = traced_positions(resolution, positions)
    correspondences = []
    for i, c in enumerate(predicted):
        flat = errors[i, c].reshape(-1)  # r
        order = np.argsort(flat, kind='stable')
        picks = [('best', p) for p in order[:n_each]] + [('worst', p) for p in order[::-1][:n_each]]
        correspondences.append([_correspondence(kind, p, flat[p], weights[c][i, p], side, top) for kind, p in picks])
    out = {'errors': errors, 'scores': scores, 'probabilities': probabilities, 'predicted': predicted,
           'correspondences': correspondences}
    if reconstruct:
        out['reconstructions'] = head['reconstructions'].numpy()  # Q, way, r, d
    return out


def _correspondence(kind, position, error, weights, side, top):
    """One query position and the `top` support positions with the largest ridge weights.

    weights [k_c*r], in the order of the support rows: image-major, then row-major positions.
    """
    best = np.argsort(-weights, kind='stable')[:top]
    resolution = side * side
    return {'kind': kind, 'row': int(position // side), 'col': int(position % side), 'error': float(error),
            'support': [{'image': int(j // resolution), 'row': int(j % resolution // side),
                         'col': int(j % side), 'weight': float(weights[j])} for j in best]}


def explain(features, support, queries, top=3, positions=None, reconstruct=False):
    """deploy/predict.predict's result plus 'errors', 'correspondences' (see explain_maps), and with
    `reconstruct` also 'reconstructions'.

    Support images in a correspondence are also named by path ('path').
    """
    support_maps, query_maps = feature_maps(features, support, queries)
    out = explain_maps(query_maps, support_maps, features.alpha, features.beta, features.scale, top, positions,
                       reconstruct)
    out.update(query_maps=query_maps, support_maps=support_maps)  # Q, r, d; one k_c, r, d per class
    classes = [name for name, _ in support]
    for i, c in enumerate(out['predicted']):
        for match in out['correspondences'][i]:
            for s in match['support']:
                s['path'] = support[c][1][s['image']]
    out.update(classes=classes, support={name: len(paths) for name, paths in support}, queries=queries,
               predictions=[classes[i] for i in out['predicted']])
    return out


def model_view(image, image_size, preprocess=None):
    """The image as the model sees it, before normalisation and inversion (colour, resize, centre crop): uint8
    [S, S, 3]. preprocess: the record of data/preprocess.py (default: the natural-image eval transform)."""
    from paddle.vision import transforms as T
    from data.preprocess import Grey, natural_default
    record = preprocess or natural_default(image_size)
    if record['colour'] == 'grey':
        image = Grey()(image)
    size = record['resize']['size']
    image = T.Resize(tuple(size) if isinstance(size, list) else size,
                     interpolation=record['resize']['interpolation'])(image)
    return np.asarray(T.CenterCrop(record['crop']['center'])(image) if record['crop'] else image)
