"""Few-shot evaluation from cached feature maps: every image goes through the backbone once.

In eval mode BatchNorm uses its running statistics and the eval transform is fixed, so an
image's feature map does not depend on the episode it is drawn in. The per-episode
protocol (the official code's, and `--no_feature_cache`) runs the backbone on all
way * (shot + query) images of every episode: 10,000 x 80 forward passes for FRN's
10,000 5-way 1-shot test episodes on mini-ImageNet, where its 12,000 test images would
do. `FeatureCache` embeds each image the episodes use once and keeps its feature map;
engine/evaluation.py then runs each episode's head on the stored maps.

Exactness. The head gets the same numbers, in the same layout, through the same code
(the model's `episode_scores`, which `get_neg_l2_dist` calls) as on the per-episode path. Paddle's CPU convolution computes
the images of a batch one by one, so a feature map is bitwise the same in a batch of
distinct images as in its episode's batch. Distances, predictions and accuracies are
therefore identical, which tests/test_feature_cache.py asserts. On a GPU, cuDNN may pick
another algorithm for another batch size: maps may then differ in the last bits, and a
prediction only where two classes tie to within that.

Memory. Float32 maps, resolution x d x 4 bytes per image: 64,000 bytes for ResNet-12 at
84 px (25 positions x 640 channels), so 768 MB for mini-ImageNet's 12,000 test images,
and 77 MB with Conv-4 (25 x 64). Only images that the episodes use are embedded. When
the split's maps could exceed `max_cache_mb`, they go to a temporary memory-mapped file
instead (in `spill_dir`, else the system temp folder), deleted afterwards: each image is
still embedded once, and the OS keeps in RAM what fits.
"""
import os
import shutil
import tempfile
import time
import weakref

import numpy as np
import paddle

from data.datamgr import image_batches
from engine.log import progress
from methods.episode import episode_order

# Images per backbone pass while filling the cache. A feature map does not depend on the
# batch, so this is only about speed: small batches keep the activations in the CPU's cache
# (benchmarks/RESULTS.md); GPUs want more.
CPU_BATCH_SIZE, GPU_BATCH_SIZE = 16, 128
DEFAULT_MAX_CACHE_MB = 2048


def uncacheable_reason(loader):
    """Why the loader's episodes cannot be evaluated from cached maps, or None when they can."""
    dataset, sampler = getattr(loader, 'dataset', None), getattr(loader, 'batch_sampler', None)
    if not hasattr(sampler, 'episode') or not hasattr(dataset, 'image_indices'):
        return 'the loader gives no random access to its episodes'
    if not getattr(dataset.transform, 'deterministic', False):
        return 'its transform is random (augmentation), so an image has no single feature map'
    return None


class FeatureCache:
    """Feature maps of one split's images under one model and one fixed transform.

    Valid while the model's weights stay as they are: the trainer builds one per
    validation, test.py one for all its tasks. `dataset` is the loader's SetDataset.
    """

    def __init__(self, model, dataset, max_cache_mb=DEFAULT_MAX_CACHE_MB, batch_size=None, num_workers=0,
                 spill_dir=None):
        self.model, self.dataset = model, dataset
        self.max_bytes = float(max_cache_mb) * 1e6
        if batch_size is None:
            batch_size = CPU_BATCH_SIZE if paddle.device.get_device() == 'cpu' else GPU_BATCH_SIZE
        self.batch_size, self.num_workers, self.spill_dir = batch_size, num_workers, spill_dir
        self.cached = np.zeros(len(dataset.split), dtype=bool)
        self.maps = None        # [images of the split, resolution, d] float32; rows of cached images are filled
        self.spill_path = None  # the memory-mapped file, when the maps are on disk
        self.embed_seconds = 0.0

    @property
    def n_cached(self):
        return int(self.cached.sum())

    def image_bytes(self):
        return 0 if self.maps is None else self.maps[0].nbytes

    def describe(self):
        """One line for the log: how many maps, their size and where they are."""
        if self.maps is None:
            return 'feature cache: empty'
        _, resolution, d = self.maps.shape
        where = f'on disk in {self.spill_path}' if self.spill_path else 'in memory'
        return (f'feature cache: {self.n_cached} images x {resolution} x {d} float32 = '
                f'{self.n_cached * self.image_bytes() / 1e6:.0f} MB {where} '
                f'(embedded in {self.embed_seconds:.1f} s)')

    def _allocate(self, map_shape):
        shape = (len(self.cached),) + tuple(map_shape)
        nbytes = int(np.prod(shape)) * 4
        if nbytes <= self.max_bytes:
            # untouched pages of np.empty take no memory: only the rows written count
            self.maps = np.empty(shape, dtype=np.float32)
            return
        folder = tempfile.mkdtemp(prefix='frn-feature-cache-', dir=self.spill_dir)
        weakref.finalize(self, shutil.rmtree, folder, True)
        self.spill_path = os.path.join(folder, 'feature_maps.f32')
        self.maps = np.memmap(self.spill_path, dtype=np.float32, mode='w+', shape=shape)

    def ensure(self, indices, desc='embed'):
        """Embed the images among `indices` (positions in the split) that are not cached yet."""
        wanted = np.unique(np.asarray(indices, dtype=np.int64))
        missing = wanted[~self.cached[wanted]]
        if not len(missing):
            return
        start = time.perf_counter()
        batches = [missing[s:s + self.batch_size].tolist() for s in range(0, len(missing), self.batch_size)]
        images = image_batches(self.dataset.split, self.dataset.transform, batches, self.num_workers)
        self.model.eval()
        with paddle.no_grad():
            for batch, (x, _) in zip(batches, progress(images, desc=desc, total=len(batches))):
                feature_map = self.model.get_feature_map(x).numpy()  # B, resolution, d
                if self.maps is None:
                    self._allocate(feature_map.shape[1:])
                self.maps[batch] = feature_map
                self.cached[batch] = True
        self.embed_seconds += time.perf_counter() - start

    def episode_positions(self, episode):
        """Split positions of the images of one sampler episode."""
        return [i for cls, positions, _ in episode for i in self.dataset.image_indices(cls, positions)]

    def episode_feature_maps(self, episode, shot):
        """Maps of one sampler episode in the episode layout of methods/episode.py."""
        class_major = np.asarray(self.episode_positions(episode))  # way*(shot+query): each class's images
        way = len(episode)
        order = class_major[episode_order(way, shot, len(class_major) // way - shot)]
        if not self.cached[order].all():
            raise RuntimeError('episode images are not in the feature cache; call ensure() first')
        return self.maps[order]


def feature_cache_for(model, loader, max_cache_mb=DEFAULT_MAX_CACHE_MB, spill_dir=None):
    """A FeatureCache for the episodes of `loader`, or None when they must be evaluated per episode."""
    if uncacheable_reason(loader):
        return None
    return FeatureCache(model, loader.dataset, max_cache_mb, num_workers=loader.num_workers, spill_dir=spill_dir)
