"""See what FRN sees: per-class reconstruction-error maps and support correspondences, one PNG per query.

    python tools/visualize.py --support DIR --query PATH --model_path best_model.pdparams --image_size 32 --out viz/
    python tools/visualize.py --support DIR --query PATH --inference_dir inference/ --out viz/ [--json] [--top K]
    python tools/visualize.py ... --inverter results/tinyimagenet32_84/inverter/inverter.pdparams

Same inputs as tools/infer.py. Top row of each figure: the query as the model sees it
(resized and centre-cropped), then every class's per-position squared reconstruction error
over it, all on one colour scale, titled with the class's score (minus the mean error) and
probability. Bottom row: a few of the query's best- (solid) and worst-reconstructed (dashed)
positions under the predicted class, and on that class's support images, boxes of the same
colour around the support positions with the largest ridge weights for each.

With --inverter (a decoder of tools/train_inverter.py, trained on this model's feature maps),
the same PNG gets a third row, under the top row's columns: the decoder's image of the query's
own feature map, then of its reconstruction rho * q_bar = W S under each class (the maps whose
errors the heat maps above show, from methods/ridge.recon_explain), as in the FRN paper's figures.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import utils  # noqa: E402
from deploy.prediction_flags import (add_prediction_flags, check_prediction_flags,  # noqa: E402
                                     load_prediction_inputs, query_names)
from runtime.command import cli_main, new_parser  # noqa: E402

import numpy as np  # noqa: E402

COLOURS = ['#e41a1c', '#377eb8', '#4daf4a', '#ff7f00', '#984ea3', '#a65628']
PANEL = 2.2  # inches per image panel
DPI = 100
MAX_SUPPORT_SHOWN = 6


def parse_args(argv=None):
    parser = new_parser(__doc__.split('\n')[0])
    add_prediction_flags(parser)
    parser.add_argument('--out', required=True, help='folder for the PNGs (one per query, named after it)')
    parser.add_argument('--json', action='store_true', help='print the numbers as JSON instead of a summary')
    parser.add_argument('--top', type=int, default=3, help='support positions shown per query position')
    parser.add_argument('--positions', type=int, default=2,
                        help='best- and as many worst-reconstructed query positions to trace')
    parser.add_argument('--inverter', default=None,
                        help='a decoder checkpoint of tools/train_inverter.py (inverter.pdparams) trained on this '
                             'model: adds a row of decoded images, the query\'s map and its reconstruction under '
                             'each class')
    args = check_prediction_flags(parser.parse_args(argv))
    if args.top < 1 or args.positions < 1:
        raise utils.FRNError(f'--top and --positions must be at least 1 (got {args.top} and {args.positions})')
    return args


def figure_size(way, n_support, rows=2):
    """(width, height) in pixels of the figure for `way` classes and `n_support` support panels (3 rows with
    --inverter)."""
    columns = 1 + max(way, n_support)
    return int(round((columns * PANEL + 0.8) * DPI)), int(round(rows * (PANEL + 0.5) * DPI))


def shown_support(matches):
    """Support image indices the correspondences point at, in order of first appearance (at most MAX_SUPPORT_SHOWN)."""
    seen = []
    for match in matches:
        for s in match['support']:
            if s['image'] not in seen:
                seen.append(s['image'])
    return seen[:MAX_SUPPORT_SHOWN]


def draw_cell(ax, row, col, cell, colour, k, dashed=False, width=2.5):
    """A box around feature position (row, col), inset a little more for each traced position k so boxes that
    fall on the same cell stay visible."""
    from matplotlib.patches import Rectangle
    inset = cell * 0.04 * (k + 1)
    ax.add_patch(Rectangle((col * cell + inset, row * cell + inset), cell - 2 * inset, cell - 2 * inset, fill=False,
                           edgecolor=colour, linewidth=width, linestyle='--' if dashed else '-'))


def inverter_inputs(result, i):
    """The maps decoded for query i: its own [r, d], then its reconstruction rho * q_bar under each class:
    [1 + way, r, d]."""
    return np.concatenate([result['query_maps'][i][None], result['reconstructions'][i]], axis=0)


def render(result, i, query_view, support_views, size, decoded=None):
    """The figure of query i: a matplotlib Figure on its own Agg canvas (the global backend is left alone).

    decoded: uint8 [1 + way, S, S, 3], the decoder's images of inverter_inputs(result, i), as a third row."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    classes, errors = result['classes'], result['errors'][i]  # errors: way, h, w
    predicted, matches = result['predicted'][i], result['correspondences'][i]
    shown = shown_support(matches)
    rows = 2 if decoded is None else 3
    width, height = figure_size(len(classes), len(shown), rows)
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    columns = 1 + max(len(classes), len(shown))
    grid = fig.add_gridspec(rows, columns + 1, width_ratios=[1] * columns + [0.12], left=0.02, right=0.95,
                            top=1 - 0.32 / rows, bottom=0.03, wspace=0.15, hspace=0.45)
    extent = (0, size, size, 0)
    cell = size / errors.shape[-1]
    vmin, vmax = float(errors.min()), float(errors.max())  # one colour scale for all classes

    ax = fig.add_subplot(grid[0, 0])
    ax.imshow(query_view, extent=extent)
    ax.set_title('query', fontsize=9)
    heat = None
    for c, name in enumerate(classes):
        ax = fig.add_subplot(grid[0, 1 + c])
        ax.imshow(query_view, extent=extent)
        heat = ax.imshow(errors[c], extent=extent, cmap='magma_r', vmin=vmin, vmax=vmax, alpha=0.6,
                         interpolation='nearest')
        mark = ' (predicted)' if c == predicted else ''
        ax.set_title(f'{name}{mark}\nscore {result["scores"][i, c]:.3f}  p {result["probabilities"][i, c]:.3f}',
                     fontsize=8, fontweight='bold' if c == predicted else 'normal')
    bar = fig.colorbar(heat, cax=fig.add_subplot(grid[0, columns]))
    bar.set_label('squared reconstruction error', fontsize=7)
    bar.ax.tick_params(labelsize=7)

    ax = fig.add_subplot(grid[1, 0])
    ax.imshow(query_view, extent=extent)
    ax.set_title('positions traced', fontsize=9)
    for k, match in enumerate(matches):
        draw_cell(ax, match['row'], match['col'], cell, COLOURS[k % len(COLOURS)], k, match['kind'] == 'worst')
    for n, image in enumerate(shown):
        ax = fig.add_subplot(grid[1, 1 + n])
        ax.imshow(support_views[image], extent=extent)
        ax.set_title(f'{classes[predicted]} support {image + 1}', fontsize=8)
        for k, match in enumerate(matches):
            for rank, s in enumerate(match['support']):
                if s['image'] == image:  # thicker for the larger weights
                    draw_cell(ax, s['row'], s['col'], cell, COLOURS[k % len(COLOURS)], k, match['kind'] == 'worst',
                              width=3.0 - 0.8 * min(rank, 2))
    if decoded is not None:
        for c, image in enumerate(decoded):
            ax = fig.add_subplot(grid[2, c])
            ax.imshow(image, extent=extent)
            ax.set_title('decoded: query\'s map' if c == 0 else f'decoded: its rebuild\nfrom {classes[c - 1]}',
                         fontsize=8, fontweight='bold' if c - 1 == predicted else 'normal')
    for ax in fig.axes:
        if ax is not bar.ax:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f'{result["names"][i]}: predicted {classes[predicted]}\nsolid: best-, dashed: worst-reconstructed '
                 f'positions; boxes of their colour: the support positions with the largest ridge weights', fontsize=8)
    return fig


def output_names(names):
    """One PNG name per query, all distinct (also on a case-insensitive file system): its file name without the
    extension; where two queries share that, the file name with its dots as underscores; where that is taken
    too, a number after it."""
    stems = [os.path.splitext(os.path.basename(n))[0] for n in names]
    counts = {}
    for stem in stems:
        counts[stem.casefold()] = counts.get(stem.casefold(), 0) + 1
    chosen = [stem if counts[stem.casefold()] == 1 else None for stem in stems]
    taken = {c.casefold() for c in chosen if c is not None}
    for i, name in enumerate(names):
        if chosen[i] is None:
            base = candidate = os.path.basename(name).replace('.', '_')
            k = 1
            while candidate.casefold() in taken:
                k += 1
                candidate = f'{base}-{k}'
            chosen[i] = candidate
            taken.add(candidate.casefold())
    return [c + '.png' for c in chosen]


def summary(result, i):
    classes = result['classes']
    scores = '  '.join(f'{c} {result["scores"][i, k]:.3f} (p {result["probabilities"][i, k]:.3f})'
                       for k, c in enumerate(classes))
    lines = [f'{result["names"][i]}: {result["predictions"][i]}   {scores}']
    for match in result['correspondences'][i]:
        top = ', '.join(f'support {s["image"] + 1} ({s["row"]},{s["col"]}) w {s["weight"]:.2f}'
                        for s in match['support'])
        lines.append(f'  {match["kind"]:5s} ({match["row"]},{match["col"]}) error {match["error"]:.3f} <- {top}')
    return '\n'.join(lines)


def as_json(result, i, png):
    return {'query': result['names'][i], 'png': png, 'prediction': result['predictions'][i],
            'scores': {c: float(result['scores'][i, k]) for k, c in enumerate(result['classes'])},
            'probabilities': {c: float(result['probabilities'][i, k]) for k, c in enumerate(result['classes'])},
            'errors': {c: result['errors'][i, k].tolist() for k, c in enumerate(result['classes'])},
            'correspondences': result['correspondences'][i]}


@cli_main
def main(argv=None):
    args = parse_args(argv)
    support, queries, _, features = load_prediction_inputs(args)
    from data.images import load_image
    from deploy import inverter
    from deploy.explain import explain, model_view
    if args.inverter:
        decoder, record = inverter.load(args.inverter)
        inverter.check_matches(record, features, args.inverter)
    result = explain(features, support, queries, top=args.top, positions=args.positions,
                     reconstruct=bool(args.inverter))
    result['names'] = query_names(queries, args.query)
    size = features.image_size
    records = []
    for i, png in enumerate(output_names(result['names'])):
        images = support[result['predicted'][i]][1]
        view = lambda path: model_view(load_image(path), size, features.preprocess)  # noqa: E731
        decoded = inverter.decode(decoder, inverter_inputs(result, i), record['preprocess']) if args.inverter else None
        fig = render(result, i, view(queries[i]),
                     {k: view(images[k]) for k in shown_support(result['correspondences'][i])}, size, decoded)
        path = os.path.join(args.out, png)
        utils.atomic_write(path, lambda tmp: fig.savefig(tmp, format='png', dpi=DPI))
        records.append(as_json(result, i, path))
        if not args.json:
            print(summary(result, i))
    if args.json:
        print(json.dumps({'model': features.source, 'backbone': features.backbone, 'image_size': size,
                          'inverter': args.inverter, 'classes': result['classes'], 'support': result['support'],
                          'queries': records}, indent=2))
    else:
        print(f'wrote {len(records)} figure(s) to {args.out}')


if __name__ == '__main__':
    main()
