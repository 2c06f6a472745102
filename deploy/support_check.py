"""Support-set diagnostics: which example image of a class is wrong or does not help.

With one to five examples per class, one mislabelled or unrepresentative support image ruins a
class. FRN rebuilds a query from a class's support by ridge regression (methods/ridge.py), so the
same head can ask of every support image i of class c, in terms of the fraction of a feature map
a support rebuilds (deploy/openset.explained_fraction):

- own: how much of i the rest of c (its other k_c - 1 images) explains: leave-one-out;
- foreign rank: the fraction of the other classes' support images that the rest of c explains at
  least as well as it explains i. An image of the class is rebuilt better than images of other
  classes (rank 0); a wrong or unrepresentative one is rebuilt like a foreign image. Measured
  against the support set's own other classes, this needs no calibration and adapts to the model;
- resembles: the other class that explains i best;
- help (when queries are given): how much the explained fraction of the queries predicted as c
  drops when i is left out of c's support; negative when c's queries are rebuilt better without it.

An image is flagged when its foreign rank reaches `flag_at` (default 0.2), or its help is negative;
flagged images come first, the most foreign first. A class of one image cannot be checked. The check
is as good as the model: when the median image is itself as foreign as `flag_at`, the model barely
tells these classes apart, and the report says so.
"""
import numpy as np

from deploy.openset import explained_fraction
from deploy.predict import class_scores

FLAG_AT = 0.2
MAX_FOREIGN = 200  # other classes' images each leave-one-out support is compared with (evenly spaced beyond)


def _explained(query_maps, support_maps, alpha, beta):
    """Explained fraction [Q, W] of query maps under each support (one [k_c, r, d] array per class)."""
    return explained_fraction(class_scores(query_maps, support_maps, alpha, beta), query_maps)


def check_maps(support_maps, alpha, beta, query_maps=None, flag_at=FLAG_AT, max_foreign=MAX_FOREIGN):
    """Diagnostics from feature maps: support_maps, one [k_c, r, d] array per class; query_maps [Q, r, d] or None.

    Returns one dict per support image, in class then image order: 'class', 'image' (index in its class),
    'own', 'foreign_rank', 'resembles' (class index or None), 'resembles_explained', 'help' (None without
    queries, or when no query is predicted as its class), 'queries' (how many help is measured on),
    'flags' (a list of 'unlike its class' and/or 'unhelpful').
    """
    way = len(support_maps)
    everything = np.concatenate(support_maps)  # N, r, d
    class_of = np.concatenate([np.full(len(m), c) for c, m in enumerate(support_maps)])
    by_class = _explained(everything, support_maps, alpha, beta)  # N, W: each image under each full class
    if query_maps is not None:
        full = _explained(query_maps, support_maps, alpha, beta)  # Q, W
        predicted = full.argmax(axis=1)
    report, start = [], 0
    for c, maps in enumerate(support_maps):
        foreign = everything[class_of != c]
        if len(foreign) > max_foreign:
            foreign = foreign[np.linspace(0, len(foreign) - 1, max_foreign).round().astype(int)]
        mine = np.flatnonzero(predicted == c) if query_maps is not None else np.zeros(0, dtype=int)
        for i in range(len(maps)):
            others = by_class[start + i].copy()
            others[c] = -np.inf
            item = {'class': c, 'image': i, 'own': None, 'foreign_rank': None, 'help': None, 'queries': len(mine),
                    'resembles': int(others.argmax()) if way > 1 else None,
                    'resembles_explained': float(others.max()) if way > 1 else None, 'flags': []}
            if len(maps) > 1:
                rest = np.delete(maps, i, axis=0)
                probe = np.concatenate([maps[i:i + 1], foreign] + ([query_maps[mine]] if len(mine) else []))
                explained = _explained(probe, [rest], alpha, beta)[:, 0]
                item['own'] = float(explained[0])
                item['foreign_rank'] = float(np.mean(explained[1:1 + len(foreign)] >= explained[0]))
                if len(mine):
                    item['help'] = float(np.mean(full[mine, c] - explained[1 + len(foreign):]))
                if item['foreign_rank'] >= flag_at:
                    item['flags'].append('unlike its class')
                if item['help'] is not None and item['help'] < 0:
                    item['flags'].append('unhelpful')
            report.append(item)
        start += len(maps)
    return report


def suspicion_order(report):
    """Indices into `report`: the flagged images first, the most foreign (then the least explained) first."""
    def key(n):
        item = report[n]
        return (not item['flags'], -(item['foreign_rank'] or 0.0), item['own'] if item['own'] is not None else 1.0, n)
    return sorted(range(len(report)), key=key)


def reason(item, classes):
    """One sentence on why an image is flagged (empty when it is not)."""
    parts = []
    own_class = classes[item['class']]
    if 'unlike its class' in item['flags']:
        text = (f'the rest of {own_class!r} explains {item["own"]:.0%} of it, no more than it explains '
                f'{item["foreign_rank"]:.0%} of the other classes\' images')
        if item['resembles'] is not None and item['resembles_explained'] > item['own']:
            text += f'; {classes[item["resembles"]]!r} explains more of it ({item["resembles_explained"]:.0%})'
        parts.append(text)
    if 'unhelpful' in item['flags']:
        parts.append(f'the {item["queries"]} queries predicted as {own_class!r} are rebuilt better without it '
                     f'(help {item["help"]:+.4f})')
    return '; '.join(parts)


def check_support(features, support, queries=None, flag_at=FLAG_AT, maps=None):
    """check_maps on image folders: support [(class name, [paths])] as deploy/predict.read_support gives,
    queries a list of paths or None; maps: their (support maps, query maps) when already computed (a result
    of deploy/predict.predict has them). Returns {'classes', 'images': the report with 'path' and 'reason'
    added, in suspicion order, 'flagged': how many are flagged, 'flag_at'}."""
    from deploy.predict import feature_maps
    support_maps, query_maps = maps or feature_maps(features, support, queries)
    report = check_maps(support_maps, features.alpha, features.beta, query_maps, flag_at)
    classes = [name for name, _ in support]
    for item in report:
        item['path'] = support[item['class']][1][item['image']]
        item['reason'] = reason(item, classes)
    ordered = [report[n] for n in suspicion_order(report)]
    ranks = [item['foreign_rank'] for item in report if item['foreign_rank'] is not None]
    return {'classes': classes, 'images': ordered, 'flagged': sum(bool(item['flags']) for item in ordered),
            'flag_at': flag_at, 'median_foreign_rank': float(np.median(ranks)) if ranks else None}


def as_text(check):
    """The report for people: flagged images with their reasons, then every image's numbers."""
    classes = check['classes']
    lines = [f'support check: {check["flagged"]} of {len(check["images"])} images flagged '
             f'(foreign rank >= {check["flag_at"]:g}, or negative help)']
    if check['median_foreign_rank'] is not None and check['median_foreign_rank'] >= check['flag_at']:
        lines.append(f'  note: this model barely tells these classes apart (median foreign rank '
                     f'{check["median_foreign_rank"]:.2f}), so its flags mean little')
    for item in check['images']:
        if item['flags']:
            lines.append(f'  FLAG {item["path"]}: {item["reason"]}')
    header = ['image', 'class', 'own', 'foreign_rank', 'resembles', 'help']
    rows = [[item['path'], classes[item['class']],
             '-' if item['own'] is None else f'{item["own"]:.3f}',
             '-' if item['foreign_rank'] is None else f'{item["foreign_rank"]:.2f}',
             '-' if item['resembles'] is None else f'{classes[item["resembles"]]} ({item["resembles_explained"]:.3f})',
             '-' if item['help'] is None else f'{item["help"]:+.4f}'] for item in check['images']]
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines += [''] + ['  '.join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header] + rows]
    return '\n'.join(lines)


def as_json(check):
    """The report as plain JSON-ready data."""
    classes = check['classes']
    return {'flag_at': check['flag_at'], 'flagged': check['flagged'],
            'median_foreign_rank': check['median_foreign_rank'],
            'images': [{'image': item['path'], 'class': classes[item['class']],
                        'own': item['own'], 'foreign_rank': item['foreign_rank'],
                        'resembles': None if item['resembles'] is None else classes[item['resembles']],
                        'resembles_explained': item['resembles_explained'], 'help': item['help'],
                        'queries': item['queries'], 'flags': item['flags'], 'reason': item['reason']}
                       for item in check['images']]}
