"""Open-set rejection: answering "none of these classes" from FRN's reconstruction error.

FRN scores a query under class c by rebuilding its feature map from c's support (methods/ridge.py);
its score is minus the mean squared reconstruction error e_c = mean_p ||rho q_bar_p - q_p||^2 over
the r positions. Relative to the query's own energy E = mean_p ||q_p||^2, the fraction of the query
that class c explains is

    explained_c = 1 - e_c / E        (1: rebuilt exactly; 0: nothing of it rebuilt)

which does not depend on how bright or textured the query is, nor on how many other classes there are
(each class is solved alone). A query whose best class explains less than a threshold is "unknown".

The threshold comes from a calibration on labelled images: episodes of `way` known classes with
`shot` support images each, whose queries are images of the known classes and of `unknown_way`
classes left out of the support; the threshold is set so that a chosen fraction of the unknown
queries is accepted (the target false-accept rate). Support sets with more images rebuild everything
better, so there is one threshold per number of support images of the predicted class.
The record goes in openset.json beside the model (the checkpoint's folder, or the exported folder).

Confidences ('score' kinds): 'explained' (the default), 'score' (FRN's raw score of the best class)
and 'msp' (the maximum softmax probability, the usual baseline).
"""
import json
import os

import numpy as np

from utils import FRNError, atomic_write_json

FORMAT = 'frn-paddle openset 1'
FILE = 'openset.json'
KINDS = ('explained', 'score', 'msp')


# ---- the numbers ----

def query_energy(query_maps):
    """E = mean over positions of ||q_p||^2: [Q] float64, from query maps [Q, r, d]."""
    q = np.asarray(query_maps, dtype=np.float64)
    return np.square(q).sum(axis=2).mean(axis=1)


def explained_fraction(scores, query_maps):
    """1 - e_c / E for every query and class: [Q, W], from FRN's scores [Q, W] (= -e_c) and the query maps."""
    return 1.0 + np.asarray(scores, dtype=np.float64) / query_energy(query_maps)[:, None]


def softmax(scores, scale):
    z = scale * np.asarray(scores, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def confidences(scores, query_maps, scale):
    """{kind: [Q]} the best class's confidence under each kind (higher = more likely known)."""
    return {'explained': explained_fraction(scores, query_maps).max(axis=1),
            'score': np.asarray(scores, dtype=np.float64).max(axis=1),
            'msp': softmax(scores, scale).max(axis=1)}


def threshold_at(unknown, rate):
    """The lowest threshold t with at most a fraction `rate` of `unknown` confidences >= t (accepted)."""
    values = np.sort(np.asarray(unknown, dtype=np.float64))[::-1]
    allowed = int(np.floor(rate * len(values) + 1e-9))  # unknowns that may be accepted
    if allowed >= len(values):
        return float(values[-1])
    return float(np.nextafter(values[allowed], np.inf))


def auroc(known, unknown):
    """Area under the ROC curve of known (positive) against unknown confidences, ties counted half."""
    known, unknown = np.asarray(known, dtype=np.float64), np.asarray(unknown, dtype=np.float64)
    values = np.concatenate([known, unknown])
    order = np.argsort(values, kind='mergesort')
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    for s, e in zip(starts, ends):  # average ranks within ties
        if e - s > 1:
            ranks[order[s:e]] = (s + 1 + e) / 2
    return float((ranks[:len(known)].sum() - len(known) * (len(known) + 1) / 2) / (len(known) * len(unknown)))


# ---- episodes with unknown queries ----

def open_episodes(members, way, shot, n_query, unknown_way, episodes, seed):
    """Episodes as index arrays: (support [way, shot], known queries [way, n_query], unknown [unknown_way * n_query]).

    members: the image indices of each class. Classes and images are drawn without replacement
    within an episode, from numpy's RandomState(seed).
    """
    eligible = [c for c, m in enumerate(members) if len(m) >= shot + n_query]
    if len(eligible) < way + unknown_way:
        raise FRNError(f'an open-set episode needs {way} known + {unknown_way} unknown classes with at least '
                       f'{shot + n_query} images each ({shot} support + {n_query} queries); the data has only '
                       f'{len(eligible)} such classes: lower --way, --unknown_way, --queries or the shots')
    rng = np.random.RandomState(seed)
    out = []
    for _ in range(episodes):
        classes = rng.choice(eligible, way + unknown_way, replace=False)
        known = np.stack([rng.choice(members[c], shot + n_query, replace=False) for c in classes[:way]])
        unknown = np.concatenate([rng.choice(members[c], n_query, replace=False) for c in classes[way:]])
        out.append((known[:, :shot], known[:, shot:], unknown))
    return out


def run_episodes(maps, members, head, way, shot, n_query, unknown_way, episodes, seed):
    """Confidences of known and unknown queries over open-set episodes of cached maps [N, r, d].

    head: (scale, alpha, beta). Returns {'known': {kind: [n]}, 'unknown': {kind: [n]}, 'correct': [n] bool}:
    every known query's confidences and whether its best class is its own.
    """
    from deploy.predict import class_scores
    scale, alpha, beta = head
    known, unknown, correct = [], [], []
    for support, known_q, unknown_q in open_episodes(members, way, shot, n_query, unknown_way, episodes, seed):
        queries = np.concatenate([known_q.reshape(-1), unknown_q])
        scores = class_scores(maps[queries], [maps[s] for s in support], alpha, beta)  # Q, way
        conf = confidences(scores, maps[queries], scale)
        n = known_q.size
        known.append({k: v[:n] for k, v in conf.items()})
        unknown.append({k: v[n:] for k, v in conf.items()})
        correct.append(scores[:n].argmax(axis=1) == np.repeat(np.arange(way), n_query))
    return {'known': {k: np.concatenate([c[k] for c in known]) for k in KINDS},
            'unknown': {k: np.concatenate([c[k] for c in unknown]) for k in KINDS},
            'correct': np.concatenate(correct)}


def rates(run, kind, threshold):
    """What a threshold does on a run of episodes: false accepts, known accepts, known accepted and right."""
    accepted = run['known'][kind] >= threshold
    return {'false_accept': float(np.mean(run['unknown'][kind] >= threshold)),
            'known_accept': float(np.mean(accepted)),
            'known_correct_accept': float(np.mean(accepted & run['correct'])),
            'closed_accuracy': float(np.mean(run['correct'])),
            'auroc': auroc(run['known'][kind], run['unknown'][kind])}


# ---- feature maps of a labelled split ----

def labelled_split(data_path, split=None):
    """A labelled image set as a data.filelist.SplitList: `split` of a dataset folder (mini-ImageNet format,
    class-per-folder train/val/test, or Omniglot's zips), or, without `split`, a folder of class folders."""
    from data.filelist import SplitList, read_split
    from data.omniglot import is_omniglot_folder, read_omniglot
    if split is not None:
        if is_omniglot_folder(data_path):
            return read_omniglot(data_path, split)
        return read_split(data_path, split)
    from deploy.predict import read_support
    classes = read_support(data_path)
    paths = [p for _, ps in classes for p in ps]
    labels = [c for c, (_, ps) in enumerate(classes) for _ in ps]
    return SplitList(paths, labels, [name for name, _ in classes], source=data_path)


def chosen_images(split, images_per_class, seed=0, max_classes=None):
    """The positions in `split` that split_maps embeds, in its order: up to `images_per_class` images per class
    (drawn with RandomState(seed)), of all classes or `max_classes` of them. Returns (positions, members)."""
    rng = np.random.RandomState(seed)
    classes = split.class_members()
    if max_classes and max_classes < len(classes):
        classes = [classes[c] for c in sorted(rng.choice(len(classes), max_classes, replace=False))]
    chosen, members = [], []
    for images in classes:
        images = list(images)
        rng.shuffle(images)
        images = sorted(images[:images_per_class])
        members.append(np.arange(len(chosen), len(chosen) + len(images)))
        chosen += images
    return chosen, members


def split_maps(features, split, images_per_class, seed=0, progress=None, max_classes=None):
    """(maps [N, r, d], members: indices into maps per class) of the images chosen_images picks, through the
    model's preprocessing."""
    from data.preprocess import eval_transform_from
    chosen, members = chosen_images(split, images_per_class, seed, max_classes)
    transform = eval_transform_from(features.preprocess)
    maps = []
    batches = range(0, len(chosen), 64)
    for start in (progress(batches) if progress else batches):
        maps.append(features(np.stack([transform(split.load_image(i)) for i in chosen[start:start + 64]])))
    return np.concatenate(maps), members


# ---- the flags of the calibration and measurement tools ----

def add_episode_flags(parser):
    """The episode flags of tools/calibrate_openset.py and tools/measure_openset.py."""
    parser.add_argument('--way', type=int, default=5, help='known classes per episode (your number of classes)')
    parser.add_argument('--unknown_way', type=int, default=5, help='classes left out of the support per episode')
    parser.add_argument('--shots', type=int, nargs='+', default=[1, 2, 3, 4, 5],
                        help='support images per class to calibrate a threshold for')
    parser.add_argument('--queries', type=int, default=3, help='query images per class and episode')
    parser.add_argument('--episodes', type=int, default=100, help='episodes per number of support images')
    parser.add_argument('--images_per_class', type=int, default=20,
                        help='images of each class to embed (the episodes draw from these)')
    parser.add_argument('--rate', type=float, default=0.05,
                        help='target false-accept rate: the fraction of unknown queries to accept')
    parser.add_argument('--score', choices=['explained', 'score', 'msp'], default='explained',
                        help='the confidence: the fraction of the query the best class explains (default), FRN\'s '
                             'raw score, or the maximum softmax probability (the usual baseline)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the image choice and the episodes')


def check_episode_flags(args):
    for name in ('way', 'unknown_way', 'queries', 'episodes', 'images_per_class', 'threads'):
        if getattr(args, name) < 1:
            raise FRNError(f'--{name} must be at least 1, not {getattr(args, name)}')
    if args.way < 2:
        raise FRNError(f'--way must be at least 2, not {args.way}: with one class there is nothing to choose')
    if min(args.shots) < 1:
        raise FRNError(f'--shots must all be at least 1, not {" ".join(map(str, args.shots))}')
    if not 0 <= args.rate < 1:
        raise FRNError(f'--rate must be in [0, 1), not {args.rate}')
    if args.images_per_class < max(args.shots) + args.queries:
        raise FRNError(f'--images_per_class {args.images_per_class} is fewer than the largest of --shots plus '
                       f'--queries ({max(args.shots) + args.queries}); raise it')



# ---- the calibration record ----

def model_identity(features):
    """What ties a calibration to a model: its backbone, input size and learned head numbers."""
    return {'backbone': features.backbone, 'image_size': int(features.image_size),
            'scale': float(features.scale), 'r': [float(features.alpha), float(features.beta)]}


def calibrate(features, maps, members, shots=(1, 2, 3, 4, 5), way=5, unknown_way=5, n_query=3, episodes=100,
              rate=0.05, kind='explained', seed=0, source=None):
    """The calibration record: per number of support images, the threshold at false-accept `rate`, and what
    it does on the calibration episodes (false accepts, known accepts and right, AUROC)."""
    if kind not in KINDS:
        raise FRNError(f'unknown confidence {kind!r}; choose one of {", ".join(KINDS)}')
    if not 0 <= rate < 1:
        raise FRNError(f'the target false-accept rate must be in [0, 1), not {rate}')
    head = (features.scale, features.alpha, features.beta)
    thresholds, measured = {}, {}
    for shot in shots:
        run = run_episodes(maps, members, head, way, shot, n_query, unknown_way, episodes, seed + shot)
        thresholds[str(shot)] = threshold_at(run['unknown'][kind], rate)
        measured[str(shot)] = rates(run, kind, thresholds[str(shot)])
    return {'format': FORMAT, 'score': kind, 'target_false_accept': rate, 'thresholds': thresholds,
            'measured': measured,
            'calibration': {'data': source, 'classes': len(members), 'images': int(sum(map(len, members))),
                            'way': way, 'unknown_way': unknown_way, 'queries_per_class': n_query,
                            'episodes': episodes, 'seed': seed},
            'model': {'source': features.source, **model_identity(features)}}


def default_path(features):
    """openset.json in the exported folder, or beside the checkpoint."""
    source = os.path.abspath(features.source)
    return os.path.join(source if os.path.isdir(source) else os.path.dirname(source), FILE)


def write_calibration(record, path):
    atomic_write_json(record, path)
    return path


class Calibration:
    """A checked calibration record, ready to reject: `decide(scores, query_maps, shots)`."""

    def __init__(self, record, path):
        self.record, self.path = record, path
        self.kind = record['score']
        self.thresholds = {int(k): float(v) for k, v in record['thresholds'].items()}
        self.rate = float(record['target_false_accept'])
        self.scale = float(record['model']['scale'])

    def threshold(self, shot):
        """The threshold for a class of `shot` images: its own, else the nearest calibrated size below (the
        smallest calibrated one for a class smaller than all)."""
        below = [s for s in self.thresholds if s <= shot]
        return self.thresholds[max(below) if below else min(self.thresholds)]

    def uncovered(self, shots):
        """Class sizes this calibration has no threshold of its own for."""
        return sorted({k for k in shots if k not in self.thresholds})

    def decide(self, scores, explained, shots):
        """{'best' [Q] class index, 'confidence' [Q], 'threshold' [Q], 'accepted' [Q] bool} from FRN's scores
        [Q, W] and explained fractions [Q, W] (explained_fraction) against classes of `shots` [W] images each."""
        scores = np.asarray(scores)
        best = scores.argmax(axis=1)
        if self.kind == 'explained':
            conf = np.asarray(explained, dtype=np.float64)[np.arange(len(best)), best]
        elif self.kind == 'score':
            conf = scores.max(axis=1).astype(np.float64)
        else:
            conf = softmax(scores, self.scale).max(axis=1)
        threshold = np.array([self.threshold(int(shots[c])) for c in best])
        return {'best': best, 'confidence': conf, 'threshold': threshold, 'accepted': conf >= threshold}

    def describe(self):
        return (f'{self.path} ({self.kind}, target false-accept rate {self.rate:g}, calibrated for '
                f'{self.record["calibration"]["way"]}-way support sets of '
                f'{", ".join(map(str, sorted(self.thresholds)))} images per class)')


def read_calibration(path, features=None):
    """The Calibration in `path`, checked; with `features`, refused when it was made for another model."""
    try:
        with open(path, encoding='utf-8') as f:
            record = json.load(f)
    except FileNotFoundError:
        raise FRNError(f'no calibration {path!r}: make one with `python tools/calibrate_openset.py` on a labelled '
                       f'split (see docs/deploy.md), or give its file with --calibration') from None
    except ValueError as err:
        raise FRNError(f'{path!r} is not valid JSON ({err}); calibrate again') from None
    keys = ('format', 'score', 'target_false_accept', 'thresholds', 'calibration', 'model')
    if not isinstance(record, dict) or record.get('format') != FORMAT or any(k not in record for k in keys):
        raise FRNError(f'{path!r} is not an open-set calibration this code understands (expected format '
                       f'{FORMAT!r} with {", ".join(keys)}); calibrate again with tools/calibrate_openset.py')
    thresholds = record['thresholds']
    if (record['score'] not in KINDS or not isinstance(thresholds, dict) or not thresholds
            or not all(k.isdigit() and int(k) >= 1 and isinstance(v, (int, float)) and np.isfinite(v)
                       for k, v in thresholds.items())):
        raise FRNError(f'{path!r} has a bad "score" or "thresholds" (the file was edited or damaged); calibrate '
                       f'again with tools/calibrate_openset.py')
    if features is not None:
        want, got = model_identity(features), {k: record['model'].get(k) for k in model_identity(features)}
        if not _same_model(want, got):
            raise FRNError(f'{path!r} was calibrated for another model ({got["backbone"]}, scale {got["scale"]}, '
                           f'r {got["r"]}), not {features.source} ({want["backbone"]}, scale {want["scale"]:.6g}, '
                           f'r [{want["r"][0]:.6g}, {want["r"][1]:.6g}]); calibrate this model with '
                           f'tools/calibrate_openset.py')
    return Calibration(record, path)


def _same_model(want, got):
    if want['backbone'] != got['backbone'] or want['image_size'] != got['image_size']:
        return False
    try:
        return all(np.isclose(float(a), float(b), rtol=1e-6, atol=0)
                   for a, b in zip([want['scale']] + want['r'], [got['scale']] + list(got['r'])))
    except (TypeError, ValueError):
        return False


def apply(result, calibration, explained=None):
    """Reject in a result of deploy/predict.predict, deploy/explain.explain or deploy/gallery: 'predictions' of
    the rejected queries become None, and 'open_set' holds calibration.decide's arrays. explained: [Q, W]
    (default: from the result's scores and query maps)."""
    if explained is None:
        explained = explained_fraction(result['scores'], result['query_maps'])
    decision = calibration.decide(result['scores'], explained, [result['support'][c] for c in result['classes']])
    result['open_set'] = dict(decision, describe=calibration.describe())
    result['predictions'] = [p if ok else None for p, ok in zip(result['predictions'], decision['accepted'])]
    return result


def json_fields(result):
    """The open-set part of tools/infer.py's JSON: the calibration, and per query its best class, confidence,
    threshold and whether it was accepted (in query order)."""
    decision, classes = result['open_set'], result['classes']
    return {'open_set': {'calibration': decision['describe'],
                         'queries': [{'best': classes[b], 'confidence': round(float(c), 6),
                                      'threshold': round(float(t), 6), 'accepted': bool(a)}
                                     for b, c, t, a in zip(decision['best'], decision['confidence'],
                                                           decision['threshold'], decision['accepted'])]}}


def copy_into_export(model_path, folder, identity):
    """Copy the checkpoint's openset.json into an export folder when it was made for this model (`identity`, as
    model_identity gives). Returns (copied, a note for the user, or None when there is no calibration)."""
    import shutil
    path = os.path.join(os.path.dirname(os.path.abspath(model_path)), FILE)
    if not os.path.isfile(path):
        return False, None
    try:
        with open(path, encoding='utf-8') as f:
            record = json.load(f)
        same = _same_model(identity, {k: record['model'].get(k) for k in identity})
    except (ValueError, KeyError, TypeError, AttributeError):
        same = False
    if not same:
        return False, f'{path} was not made for this checkpoint (or is damaged): not copied into the export'
    shutil.copyfile(path, os.path.join(folder, FILE))
    return True, f'copied the open-set calibration {path} into the export'
