"""A gallery for the exported classifier: each class's support maps stored once, classes added or removed
without exporting again, queries classified against the stored classes (as PaddleClas's PP-ShiTu keeps a
gallery of features).

The gallery is one .npz file: the maps of every class (from the export's feature program, model.*) and
a JSON record of the classes, their source images and the model they were embedded with. Queries go
through the export's classifier program (classifier.*, deploy/classifier_export.py), FRN's ridge head
included, so a C++ or Paddle Lite program can do the same with the two programs and the stored maps.
Every change rewrites the file atomically.
"""
import json
import os

import numpy as np

from deploy.export import FORMAT as FEATURE_FORMAT
from deploy.openset import _same_model, apply, model_identity
from utils import FRNError, atomic_write

FORMAT = 'frn-paddle gallery 1'


class Gallery:
    """Classes and their support maps. `classes`: names in order; `maps[name]`: [k, r, d] float32."""

    def __init__(self, path, model, classes=(), maps=None, sources=None):
        self.path, self.model = path, model
        self.classes = list(classes)
        self.maps = dict(maps or {})
        self.sources = dict(sources or {})

    @classmethod
    def open(cls, path, features, create=False):
        """The gallery in `path` (made for `features`' model), or a new empty one when `create` and there is none."""
        if not os.path.exists(path):
            if create:
                return cls(path, model_identity(features))
            raise FRNError(f'no gallery {path!r}: add classes first with `tools/gallery.py --gallery {path} ... add`')
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(bytes(data['meta']).decode('utf-8'))
                arrays = {k: data[k] for k in data.files if k != 'meta'}
        except (OSError, ValueError, KeyError) as err:
            raise FRNError(f'{path!r} is not a gallery this code can read ({type(err).__name__}: {err}); '
                           f'make it again with tools/gallery.py add') from None
        if not isinstance(meta, dict) or meta.get('format') != FORMAT:
            raise FRNError(f'{path!r} is not a gallery (format {meta.get("format") if isinstance(meta, dict) else None!r}'
                           f', expected {FORMAT!r}); make it again with tools/gallery.py add')
        want = model_identity(features)
        if not _same_model(want, meta['model']):
            raise FRNError(f'{path!r} holds maps of another model ({meta["model"]}), not of {features.source}; '
                           f'make a gallery for this model, or use the model it was made with')
        classes = [c['name'] for c in meta['classes']]
        maps = {c['name']: arrays[f'class{i}'] for i, c in enumerate(meta['classes'])}
        return cls(path, meta['model'], classes, maps, {c['name']: c['images'] for c in meta['classes']})

    def add(self, name, image_paths, features):
        """Embed `image_paths` as class `name` (replacing a class of that name)."""
        from deploy.predict import load_images
        if not image_paths:
            raise FRNError(f'class {name!r} needs at least one image')
        self.maps[name] = features(load_images(image_paths, features.image_size, features.preprocess))
        self.sources[name] = [os.path.abspath(p) for p in image_paths]
        if name not in self.classes:
            self.classes.append(name)

    def remove(self, name):
        if name not in self.classes:
            raise FRNError(f'the gallery {self.path!r} has no class {name!r}; its classes: {", ".join(self.classes)}')
        self.classes.remove(name)
        del self.maps[name], self.sources[name]

    def save(self):
        meta = {'format': FORMAT, 'feature_format': FEATURE_FORMAT, 'model': self.model,
                'classes': [{'name': c, 'images': self.sources[c], 'shots': len(self.maps[c])} for c in self.classes]}
        arrays = {f'class{i}': self.maps[c] for i, c in enumerate(self.classes)}

        def write(tmp):
            with open(tmp, 'wb') as f:
                np.savez(f, meta=np.frombuffer(json.dumps(meta).encode('utf-8'), dtype=np.uint8), **arrays)
        atomic_write(self.path, write)

    def classify(self, query_paths, features, classifier, calibration=None):
        """A result like deploy/predict.predict's ('classes', 'support', 'queries', 'scores', 'probabilities',
        'predictions', 'explained'), from the exported classifier; with a calibration, 'open_set' too and
        None for the rejected predictions."""
        from deploy.predict import load_images
        if len(self.classes) < 2:
            raise FRNError(f'the gallery {self.path!r} holds {len(self.classes)} class(es); add at least 2')
        images = load_images(query_paths, features.image_size, features.preprocess)
        out = classifier(images, [self.maps[c] for c in self.classes])
        result = {'classes': list(self.classes), 'support': {c: len(self.maps[c]) for c in self.classes},
                  'queries': list(query_paths), 'scores': out['scores'], 'probabilities': out['probabilities'],
                  'explained': out['explained'],
                  'predictions': [self.classes[i] for i in out['scores'].argmax(axis=1)]}
        if calibration is not None:
            apply(result, calibration, out['explained'])
        return result
