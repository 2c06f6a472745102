"""See what FRN sees: per-class reconstruction-error maps and support correspondences, one PNG per query.

    python tools/visualize.py --support DIR --query PATH --model_path best_model.pdparams --image_size 32 --out viz/
    python tools/visualize.py --support DIR --query PATH --inference_dir inference/ --out viz/ [--json] [--top K]
    python tools/visualize.py ... --inverter results/tinyimagenet32_84/inverter/inverter.pdparams

Same inputs as tools/infer.py. Each figure: the query as the model sees it (resized and
centre-cropped), then every class's map of per-position squared reconstruction errors, drawn
alone (not over the photo, so its colours read off the colour bar) on one colour scale, classes
wrapped into rows of at most 5, titled with the class's name (long names shortened in the
middle), "(predicted)" on a line of its own, its probability and its mean error (minus its
score). Under them: the query's best- (solid) and worst-reconstructed (dashed) positions under
the predicted class (2 of each, 1 on maps under 16 positions; --positions), and that class's
support images in their order, with boxes of the same colour around the support positions with
the largest ridge weights for each. Example figures: docs/visualize_5_classes.png and
docs/visualize_10_classes.png.

With --inverter (a decoder of tools/train_inverter.py, trained on this model's feature maps),
the same PNG gets more rows at the bottom: the decoder's image of the query's own feature map,
then of its reconstruction rho * q_bar = W S under each class (the maps whose errors the heat
maps show, from methods/ridge.recon_explain), as in the FRN paper's figures.
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
PANEL = 1.9  # inches per image panel
TITLE = 0.75  # inches above each row of panels for its titles (three lines)
DPI = 100
MAX_PER_ROW = 5  # class panels per row; more classes wrap into rows of equal length
MAX_SUPPORT_SHOWN = 5
NAME_CHARS = 24  # a class name longer than this is shortened in the middle ('...')


def parse_args(argv=None):
    parser = new_parser(__doc__.split('\n')[0])
    add_prediction_flags(parser)
    parser.add_argument('--out', required=True, help='folder for the PNGs (one per query, named after it)')
    parser.add_argument('--json', action='store_true', help='print the numbers as JSON instead of a summary')
    parser.add_argument('--top', type=int, default=3, help='support positions shown per query position')
    parser.add_argument('--positions', type=int, default=None,
                        help='best- and as many worst-reconstructed query positions to trace (default 2, and 1 on '
                             'maps of under 16 positions; at most half of the positions)')
    parser.add_argument('--inverter', default=None,
                        help='a decoder checkpoint of tools/train_inverter.py (inverter.pdparams) trained on this '
                             'model: adds a row of decoded images, the query\'s map and its reconstruction under '
                             'each class')
    args = check_prediction_flags(parser.parse_args(argv))
    if args.top < 1 or (args.positions is not None and args.positions < 1):
        raise utils.FRNError(f'--top and --positions must be at least 1 (got {args.top} and {args.positions})')
    return args


def layout(way):
    """(rows, classes per row) of the class panels: rows of at most MAX_PER_ROW, as even as can be (7 -> 4 + 3)."""
    rows = -(-way // MAX_PER_ROW)
    return rows, -(-way // rows)


LEFT, RIGHT, WSPACE, BAR = 0.15, 0.8, 0.12, 0.1  # inches at the left and right; gaps and the colour bar, in panels
HEAD, FOOT = TITLE + 0.5, 0.35  # inches above the panels (their titles, the figure's title) and below them (the legend)


def figure_size(way, n_support, inverter=False):
    """(width, height) in pixels of the figure for `way` classes and `n_support` support panels: square panels of
    PANEL inches, each row with TITLE inches above it."""
    rows, per_row = layout(way)
    columns = 1 + max(per_row, n_support)
    rows += 1 + (rows if inverter else 0)
    width = LEFT + RIGHT + PANEL * (columns + BAR + WSPACE * columns)
    return int(round(width * DPI)), int(round((HEAD + FOOT + rows * PANEL + (rows - 1) * TITLE) * DPI))


def shown_support(matches, n_images=None):
    """Support images shown, by index, in their order: all `n_images` of the predicted class when they fit
    (MAX_SUPPORT_SHOWN), else those the correspondences point at (at most MAX_SUPPORT_SHOWN)."""
    if n_images is not None and n_images <= MAX_SUPPORT_SHOWN:
        return list(range(n_images))
    seen = sorted({s['image'] for match in matches for s in match['support']})
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


def class_title(name, predicted, probability, error):
    """A class panel's title: its name (shortened to NAME_CHARS), "(predicted)" on a line of its own, then its
    probability and mean error; always three lines, so that the rows line up."""
    from deploy.report import shorten
    return f'{shorten(name, NAME_CHARS)}\n{"(predicted)" if predicted else ""}\np {probability:.3f}  error {error:.3f}'


def render(result, i, query_view, support_views, size, decoded=None):
    """The figure of query i: a matplotlib Figure on its own Agg canvas (the global backend is left alone).

    The query, then each class's map of squared reconstruction errors on its own (no photo under it, so its
    colours are those of the colour bar), classes wrapped into rows; under them the query with the traced
    positions and the predicted class's support images in their order, boxes on the positions that rebuild them.
    decoded: uint8 [1 + way, S, S, 3], the decoder's images of inverter_inputs(result, i), as rows of their own."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from deploy.report import shorten
    classes, errors = result['classes'], result['errors'][i]  # errors: way, h, w
    predicted, matches = result['predicted'][i], result['correspondences'][i]
    shown = sorted(support_views)
    class_rows, per_row = layout(len(classes))
    columns = 1 + max(per_row, len(shown))
    rows = class_rows + 1 + (class_rows if decoded is not None else 0)
    width, height = figure_size(len(classes), len(shown), decoded is not None)
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    w, h = width / DPI, height / DPI
    grid = fig.add_gridspec(rows, columns + 1, width_ratios=[1] * columns + [BAR], left=LEFT / w, right=1 - RIGHT / w,
                            top=1 - HEAD / h, bottom=FOOT / h, wspace=WSPACE, hspace=TITLE / PANEL)
    extent = (0, size, size, 0)
    cell = size / errors.shape[-1]
    vmin, vmax = float(errors.min()), float(errors.max())  # one colour scale for all classes
    font = 8

    def panel(row, col, image, title, bold=False):
        ax = fig.add_subplot(grid[row, col])
        ax.imshow(image, extent=extent)
        ax.set_title(title, fontsize=font, fontweight='bold' if bold else 'normal')
        ax.set_xticks([])
        ax.set_yticks([])
        return ax

    panel(0, 0, query_view, 'query')
    heat = None
    for c, name in enumerate(classes):
        row, col = divmod(c, per_row)
        ax = fig.add_subplot(grid[row, 1 + col])
        heat = ax.imshow(errors[c], extent=extent, cmap='magma_r', vmin=vmin, vmax=vmax, interpolation='nearest')
        ax.set_title(class_title(name, c == predicted, result['probabilities'][i, c], -result['scores'][i, c]),
                     fontsize=font, fontweight='bold' if c == predicted else 'normal')
        ax.set_xticks([])
        ax.set_yticks([])
        if c == predicted:
            for spine in ax.spines.values():
                spine.set(linewidth=2.5, edgecolor='black')
    bar = fig.colorbar(heat, cax=fig.add_subplot(grid[0:class_rows, columns]))
    bar.set_label('squared reconstruction error\n(dark: poorly rebuilt)', fontsize=font, labelpad=6)
    bar.ax.tick_params(labelsize=font - 1)

    below = class_rows
    ax = panel(below, 0, query_view, 'query: positions traced')
    for k, match in enumerate(matches):
        draw_cell(ax, match['row'], match['col'], cell, COLOURS[k % len(COLOURS)], k, match['kind'] == 'worst')
    for n, image in enumerate(shown):
        ax = panel(below, 1 + n, support_views[image],
                   f'{shorten(classes[predicted], NAME_CHARS)}\nsupport {image + 1}')
        for k, match in enumerate(matches):
            for rank, s in enumerate(match['support']):
                if s['image'] == image:  # thicker for the larger weights
                    draw_cell(ax, s['row'], s['col'], cell, COLOURS[k % len(COLOURS)], k, match['kind'] == 'worst',
                              width=3.0 - 0.8 * min(rank, 2))
    if decoded is not None:
        panel(below + 1, 0, decoded[0], 'decoded:\nthe query\'s map')
        for c, image in enumerate(decoded[1:]):
            row, col = divmod(c, per_row)
            panel(below + 1 + row, 1 + col, image, f'decoded: rebuilt from\n{shorten(classes[c], NAME_CHARS)}',
                  bold=c == predicted)
    handles = [Line2D([], [], color='0.2', linewidth=2, linestyle=style) for style in ('-', '--')]
    fig.legend(handles, ['best-reconstructed position', 'worst-reconstructed position'], loc='lower right',
               fontsize=font, frameon=False, ncol=2)
    fig.suptitle(f'{shorten(result["names"][i], 60)}: predicted {shorten(classes[predicted], 40)} '
                 f'(p {result["probabilities"][i, predicted]:.3f})\nboxes of a position\'s colour on the support: '
                 f'the support positions with the largest ridge weights in its reconstruction', fontsize=font + 1)
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
                     {k: view(images[k]) for k in shown_support(result['correspondences'][i], len(images))}, size,
                     decoded)
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
