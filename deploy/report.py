"""What a person reads of a prediction: accuracy on labelled queries, and a table that fits a terminal.

With queries in class folders (query/<class>/img.jpg, see deploy/predict.read_queries) each
query has a true class, and the accuracy is the share of queries whose prediction is it (a
query that --reject answered "unknown" counts as wrong), overall and per class. The table
shows every class's probability while its lines fit WIDTH characters; otherwise one line per
query (its prediction, that probability, its true class and right or wrong). The full scores
are always in --json.
"""
WIDTH = 119  # characters a printed line may take: under 120, a terminal's width and more
UNKNOWN = '(unknown)'  # a query --reject turned away; "prediction": null in the JSON


def accuracy(predictions, truths, classes):
    """{'right', 'total', 'accuracy' (%), 'way', 'chance' (%), 'per_class': {class: {'right', 'total', 'accuracy'}}} of
    predictions (a class name or None per query) against their true classes; classes without queries left out."""
    def share(pairs):
        right = sum(p == t for p, t in pairs)
        return {'right': right, 'total': len(pairs), 'accuracy': round(100.0 * right / len(pairs), 2)}
    pairs = list(zip(predictions, truths))
    per_class = {c: share([(p, t) for p, t in pairs if t == c]) for c in classes if c in truths}
    return {**share(pairs), 'way': len(classes), 'chance': round(100.0 / len(classes), 2), 'per_class': per_class}


def shorten(text, width):
    """`text` cut to `width` characters, its middle replaced by '...' (so that the distinct end of a file name or
    of a long class name stays visible)."""
    text = str(text)
    if len(text) <= width:
        return text
    head = (width - 3 + 1) // 2
    return text[:head] + '...' + text[len(text) - (width - 3 - head):]


def wrapped(text, width=WIDTH):
    """A long line as lines of at most `width` characters, the later ones indented."""
    import textwrap
    return textwrap.wrap(text, width, subsequent_indent='    ', break_on_hyphens=False) or ['']


def _aligned(rows):
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return ['  '.join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip() for cells in rows]


def prediction_lines(classes, names, predictions, probabilities, truths=None, width=WIDTH):
    """The predictions as lines of at most `width` characters: a table of every class's probability when it fits,
    else one line per query ("query  prediction  p  [true class  right/wrong]")."""
    shown = [UNKNOWN if p is None else p for p in predictions]
    marks = [] if truths is None else [['right' if p == t else 'wrong', t] for p, t in zip(predictions, truths)]
    extra_header = [] if truths is None else ['', 'true class']
    table = _aligned([['query', 'prediction'] + extra_header + classes] +
                     [[n, s] + (marks[i] if marks else []) + [f'{v:.3f}' for v in probs]
                      for i, (n, s, probs) in enumerate(zip(names, shown, probabilities))])
    if max(len(line) for line in table) <= width:
        return table
    best = [f'{max(probs):.3f}' for probs in probabilities]
    # the query and class columns share what the fixed columns leave: the query name at most 40 characters
    fixed = len('0.000') + len('wrong') + 4 * 2
    columns = 3 if truths is None else 4
    room = width - fixed
    name_width = min(max(len(n) for n in names), 40, room // 2)
    class_width = max(8, (room - name_width) // (columns - 2))
    rows = [['query', 'prediction', 'p'] + (['', 'true class'] if marks else [])]
    for i, name in enumerate(names):
        rows.append([shorten(name, name_width), shorten(shown[i], class_width), best[i]] +
                    ([marks[i][0], shorten(marks[i][1], class_width)] if marks else []))
    return _aligned(rows) + ['(one line per query: the probabilities of all classes are in --json)']


def accuracy_lines(result, width=WIDTH):
    """'accuracy: 14 of 20 queries right, 70.0% (10 classes, chance 10.0%)', then one line per class."""
    lines = [f'accuracy: {result["right"]} of {result["total"]} queries right, {result["accuracy"]:.1f}% '
             f'({result["way"]} classes, chance {result["chance"]:.1f}%)']
    name_width = min(max(len(c) for c in result['per_class']), width - 30)
    lines += _aligned([[f'  {shorten(c, name_width)}', f'{v["right"]}/{v["total"]}', f'{v["accuracy"]:.1f}%']
                       for c, v in result['per_class'].items()])
    return lines
