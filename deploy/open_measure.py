"""What open-set rejection, the support check and the classifier export do on held-out classes: the
measurement behind docs/deploy.md (tools/measure_openset.py writes it as JSON, and the docs' tables from it).

- Rejection: thresholds calibrated on one split's classes (validation) at a target false-accept rate,
  applied to open-set episodes of another split's classes (test): AUROC of known against unknown
  queries, the false-accept rate reached, and the known queries accepted and classified right, for
  FRN's explained fraction, FRN's raw score and the maximum softmax probability (the baseline).
- Support check: support sets of the test classes with one image of another class planted into one
  class (of a class in the support, or of a class outside it), and clean support sets: how often the
  planted image is flagged and flagged first, and how often a clean class has a flag.
- Classifier export: classifier.* run through paddle.inference on test episodes of unequal shots,
  against the dygraph scores of deploy/predict.
"""
import os
import tempfile

import numpy as np
import paddle

from deploy import openset, support_check

FORMAT = 'frn-paddle openset measurement 1'


def rejection(features, val, test, shots, way, unknown_way, n_query, episodes, rate, seed):
    """Per number of support images: per confidence, the val threshold and what it does on test episodes."""
    head = (features.scale, features.alpha, features.beta)
    out = {}
    for shot in shots:
        cal = openset.run_episodes(*val, head, way, shot, n_query, unknown_way, episodes, seed + shot)
        run = openset.run_episodes(*test, head, way, shot, n_query, unknown_way, episodes, seed + 1000 + shot)
        out[str(shot)] = {}
        for kind in openset.KINDS:
            threshold = openset.threshold_at(cal['unknown'][kind], rate)
            out[str(shot)][kind] = dict(openset.rates(run, kind, threshold), threshold=threshold,
                                        val_false_accept=float(np.mean(cal['unknown'][kind] >= threshold)))
    return out


def planted_trials(features, maps, members, way, shot, n_query, trials, seed, where):
    """Support sets of `way` test classes with `shot` images each; `where` is 'none' (clean), 'inside' (one
    image of support class 1 planted into class 0) or 'outside' (of a class outside the support)."""
    rng = np.random.RandomState(seed)
    eligible = [c for c, m in enumerate(members) if len(m) >= shot + n_query + 1]
    first = flagged = clean_flag = own_class_flag = 0
    images = flags = 0
    for _ in range(trials):
        classes = rng.choice(eligible, way + 1, replace=False)
        picks = [rng.choice(members[c], shot + n_query + 1, replace=False) for c in classes]
        support = [maps[p[:shot]] for p in picks[:way]]
        queries = np.concatenate([maps[p[shot:shot + n_query]] for p in picks[:way]])
        if where != 'none':
            source = picks[1] if where == 'inside' else picks[way]
            support[0] = np.concatenate([support[0], maps[source[-1:]]])  # the planted image: class 0's last
        report = support_check.check_maps(support, features.alpha, features.beta, queries)
        planted = len(support[0]) - 1
        is_flagged = [bool(item['flags']) for item in report]
        images += len(report)
        flags += sum(is_flagged)
        if where == 'none':
            clean_flag += any(is_flagged)
            continue
        first += support_check.suspicion_order(report)[0] == planted and is_flagged[planted]
        flagged += is_flagged[planted]
        clean_flag += any(f for item, f in zip(report, is_flagged) if item['class'] != 0)
        own_class_flag += any(is_flagged[:planted])
    out = {'trials': trials, 'way': way, 'shot': shot, 'queries_per_class': n_query,
           'images_flagged': flags / images}
    if where == 'none':
        out['sets_with_a_flag'] = clean_flag / trials
    else:
        out.update(planted_flagged=flagged / trials, planted_flagged_first=first / trials,
                   clean_class_flagged=clean_flag / trials, own_classmate_flagged=own_class_flag / trials)
    return out


def export_agreement(model_path, features, maps_images, members, episodes, seed, threads):
    """Max relative score difference of classifier.* (paddle.inference) from dygraph over test episodes of 5
    classes with 1..5 support images (maps_images: a function from indices to preprocessed images)."""
    from deploy.classifier_export import ExportedClassifier, compare_with_dygraph, extras
    from deploy.export import export_model, read_head
    rng = np.random.RandomState(seed)
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        save_dir = os.path.join(tmp, 'export')
        export_model(model_path, features.backbone, save_dir, extra=extras(model_path, True, 5))
        exported = ExportedClassifier(save_dir, read_head(save_dir), threads)
        for _ in range(episodes):
            classes = rng.choice(len(members), 5, replace=False)
            shots = rng.randint(1, 6, size=5)
            picks = [rng.choice(members[c], k + 2, replace=False) for c, k in zip(classes, shots)]
            queries = maps_images(np.concatenate([p[k:] for p, k in zip(picks, shots)]))
            support = [maps_images(p[:k]) for p, k in zip(picks, shots)]
            worst = max(worst, compare_with_dygraph(features, exported, queries, support)[0])
        backend = exported.backend
    return {'episodes': episodes, 'max_relative_difference': worst, 'backend': backend, 'paddle': paddle.__version__}


def table(record):
    """The docs' markdown tables of a measurement record."""
    r = record['rejection']
    lines = [f'Rejection, {record["setup"]["way"]}-way with {record["setup"]["unknown_way"]} unknown classes per '
             f'episode, threshold at a false-accept rate of {record["setup"]["rate"]:g} on the validation classes, '
             f'measured on the test classes ({record["setup"]["episodes"]} episodes, '
             f'{record["setup"]["queries_per_class"]} queries per class):', '',
             '| support images per class | confidence | AUROC | false accepts (test) | known accepted | '
             'known accepted and right | closed-set accuracy |', '|---|---|---|---|---|---|---|']
    names = {'explained': 'FRN explained fraction', 'score': 'FRN score', 'msp': 'max softmax probability'}
    for shot, kinds in r.items():
        for kind in openset.KINDS:
            m = kinds[kind]
            lines.append(f'| {shot} | {names[kind]} | {m["auroc"]:.3f} | {m["false_accept"]:.1%} | '
                         f'{m["known_accept"]:.1%} | {m["known_correct_accept"]:.1%} | {m["closed_accuracy"]:.1%} |')
    lines += ['', 'Support check on the test classes (one image of another class planted into one class):', '',
              '| planted | trials | planted flagged | planted flagged first | a clean class flagged | '
              'a classmate of the planted image flagged | images flagged |', '|---|---|---|---|---|---|---|']
    for where, m in record['support_check'].items():
        if where == 'none':
            lines.append(f'| nothing (clean sets) | {m["trials"]} | - | - | {m["sets_with_a_flag"]:.0%} | - | '
                         f'{m["images_flagged"]:.1%} |')
        else:
            lines.append(f'| from a {"support" if where == "inside" else "non-support"} class | {m["trials"]} | '
                         f'{m["planted_flagged"]:.0%} | {m["planted_flagged_first"]:.0%} | '
                         f'{m["clean_class_flagged"]:.0%} | {m["own_classmate_flagged"]:.0%} | '
                         f'{m["images_flagged"]:.1%} |')
    if record.get('export'):
        e = record['export']
        lines += ['', f'Classifier export ({e["backend"]}, Paddle {e["paddle"]}) against dygraph on {e["episodes"]} '
                      f'test episodes of 5 classes with 1 to 5 support images: largest score difference '
                      f'{e["max_relative_difference"]:.2g} of the largest score.']
    return '\n'.join(lines)


def replace_section(text, name, body):
    """`text` with the lines between <!-- openset:NAME --> and <!-- /openset:NAME --> replaced by `body`."""
    start, end = f'<!-- openset:{name} -->', f'<!-- /openset:{name} -->'
    if start not in text or end not in text:
        return text.rstrip('\n') + f'\n\n{start}\n{body}\n{end}\n'
    head, rest = text.split(start, 1)
    return head + start + '\n' + body + '\n' + end + rest.split(end, 1)[1]
