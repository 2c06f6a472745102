"""Few-shot prediction on your own images: class folders as the support, any images as queries.

The support folder holds one subfolder per class with 1 to K images; classes may have
different numbers of images. Each class's support is its own kr x d matrix (its k images'
r positions), reconstructed from by FRN's ridge regression, with lam = (kr / d) e^alpha for
that class's kr. A query's score for a class is the negative mean squared reconstruction
error over its r positions, from FRN's one head (methods/ridge.neg_l2_dist, which
FRN.get_neg_l2_dist also calls); the probabilities are softmax(scale * score) over the classes.
"""
import os

import numpy as np
import paddle
import paddle.nn.functional as F

from data.filelist import IMAGE_EXTENSIONS
from data.images import load_image
from data.preprocess import eval_transform_from
from data.transforms import eval_transform
from methods.ridge import neg_l2_dist
from utils import FRNError


def _images_in(folder):
    """Image files of a folder, sorted; hidden files (such as macOS's ._name.jpg) are left out."""
    return sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith('.')
                  and os.path.isfile(os.path.join(folder, f)))


def read_support(support_dir):
    """[(class name, [image paths])], classes and images sorted; at least two classes, none empty."""
    if not os.path.isdir(support_dir):
        raise FRNError(f'--support {support_dir!r} is not a folder; give a folder with one subfolder of '
                       f'example images per class')
    classes = sorted(d for d in os.listdir(support_dir)
                     if os.path.isdir(os.path.join(support_dir, d)) and not d.startswith('.'))
    support = []
    for name in classes:
        images = _images_in(os.path.join(support_dir, name))
        if not images:
            raise FRNError(f'class folder {os.path.join(support_dir, name)!r} holds no images '
                           f'({", ".join(IMAGE_EXTENSIONS)}); add 1 or more example images or remove the folder')
        support.append((name, [os.path.join(support_dir, name, f) for f in images]))
    if len(support) < 2:
        found = f'only {support[0][0]!r}' if support else 'none'
        raise FRNError(f'--support {support_dir!r} must hold at least 2 class subfolders (found {found}); '
                       f'put each class\'s example images in {os.path.join(support_dir, "<class name>")}/')
    return support


def read_queries(query_path, classes=None):
    """(image paths, true class of each or None): one image file; the images of a folder (sorted, not recursive);
    or, when the folder holds no images but class subfolders (query/<class>/img.jpg), their images labelled by the
    subfolder's name, which must be one of `classes` (the support's) when given."""
    if os.path.isfile(query_path):
        return [query_path], None
    if not os.path.isdir(query_path):
        raise FRNError(f'--query {query_path!r} does not exist; give an image file or a folder of images')
    images = _images_in(query_path)
    if images:
        return [os.path.join(query_path, f) for f in images], None
    folders = sorted(d for d in os.listdir(query_path)
                     if os.path.isdir(os.path.join(query_path, d)) and not d.startswith('.'))
    paths, truths = [], []
    for name in folders:
        if classes is not None and name not in classes:
            raise FRNError(f'query class folder {os.path.join(query_path, name)!r} is not a class of the support '
                           f'({", ".join(classes)}); name each query subfolder after a support class')
        found = _images_in(os.path.join(query_path, name))
        paths += [os.path.join(query_path, name, f) for f in found]
        truths += [name] * len(found)
    if not paths:
        raise FRNError(f'--query folder {query_path!r} holds no images ({", ".join(IMAGE_EXTENSIONS)}), neither '
                       f'directly nor in class subfolders; give an image file, a folder with images, or a folder '
                       f'of class subfolders named as the support\'s')
    return paths, truths


def list_queries(query_path):
    """Image paths of read_queries: one image file, the images of a folder, or those of its class subfolders."""
    return read_queries(query_path)[0]


def load_images(paths, image_size=84, preprocess=None):
    """Images [N, 3, S, S], float32, as the preprocessing record says (without one: the natural-image eval
    transform at `image_size`). An unreadable file is an FRNError naming it."""
    transform = eval_transform_from(preprocess) if preprocess else eval_transform(image_size)
    return np.stack([transform(load_image(p)) for p in paths])


def head_inputs(query_maps, support_maps, alpha, beta):
    """numpy query maps [Q, r, d], one [k_c, r, d] per class (k_c may differ) and floats alpha, beta -> the
    tensors of methods/ridge.neg_l2_dist: each class a support of its own."""
    query_maps = paddle.to_tensor(query_maps)
    alpha, beta = (paddle.to_tensor(v, dtype=query_maps.dtype) for v in (alpha, beta))
    return query_maps, [paddle.to_tensor(maps) for maps in support_maps], alpha, beta


def class_scores(query_maps, support_maps, alpha, beta):
    """FRN's scores [Q, way] numpy: minus each query's mean squared reconstruction error under each class."""
    return neg_l2_dist(*head_inputs(query_maps, support_maps, alpha, beta)).numpy()


def probabilities(scores, scale):
    """softmax over the classes of scale * scores [Q, way]: numpy, rows sum to 1."""
    return F.softmax(paddle.to_tensor(scores) * scale, axis=1).numpy()


def class_probabilities(query_maps, support_maps, alpha, beta, scale):
    """softmax over the classes of scale * FRN's scores: [Q, way] numpy, rows sum to 1."""
    return probabilities(class_scores(query_maps, support_maps, alpha, beta), scale)


def feature_maps(features, support, queries):
    """(one [k_c, r, d] numpy array per class, queries' [Q, r, d] or None without queries) from a feature
    extractor of deploy/export.py."""
    all_support = features(load_images([p for _, paths in support for p in paths], features.image_size,
                                       features.preprocess))
    support_maps, start = [], 0
    for _, paths in support:
        support_maps.append(all_support[start:start + len(paths)])  # k_c, r, d
        start += len(paths)
    if not queries:
        return support_maps, None
    return support_maps, features(load_images(queries, features.image_size, features.preprocess))


def predict(features, support, queries):
    """Classify every query among the support classes with a feature extractor of deploy/export.py.

    support: [(class name, [image paths])] as read_support gives; queries: image paths.
    Returns {'classes', 'support': {class: n images}, 'queries', 'scores' [Q, way] (FRN's), 'probabilities'
    [Q, way], 'predictions' [class name per query], 'query_maps' [Q, r, d], 'support_maps' (one [k_c, r, d]
    per class)}.
    """
    support_maps, query_maps = feature_maps(features, support, queries)
    scores = class_scores(query_maps, support_maps, features.alpha, features.beta)
    probs = probabilities(scores, features.scale)
    classes = [name for name, _ in support]
    return {'classes': classes, 'support': {name: len(paths) for name, paths in support}, 'queries': queries,
            'scores': scores, 'probabilities': probs, 'predictions': [classes[i] for i in probs.argmax(axis=1)],
            'query_maps': query_maps, 'support_maps': support_maps}
