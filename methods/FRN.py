"""Feature Map Reconstruction Networks (Wertheimer, Tang & Hariharan, CVPR 2021).

A query image's feature map (resolution r positions of d channels) is reconstructed,
position by position, from each class's pooled support feature maps by ridge
regression; the class whose reconstruction is closest wins (Section 3). Method and
parameter names mirror the official PyTorch code so its checkpoints load by name.
"""
import math

import paddle
import paddle.nn.functional as F

from methods.episode import split_episode
from methods.ridge import SOLVERS, neg_l2_dist, recon_dist
from network import build_backbone, rank_split


class FRN(paddle.nn.Layer):
    """FRN(way, shots=[shot, query_shot], backbone='ResNet12'|'Conv4', is_pretraining, num_cat).

    Keyword-only extras: `image_size` (square input side, sets `resolution` and the
    shape of `cat_mat`) and `solver` ('cholesky', the default, or 'inverse', the
    official d x d inverse kept for comparison).
    """

    def __init__(self, way=None, shots=None, backbone='ResNet12', is_pretraining=False, num_cat=None,
                 *, image_size=84, solver='cholesky'):
        super().__init__()
        if solver not in SOLVERS:
            raise ValueError(f'unknown solver {solver!r}; choose one of {SOLVERS}')
        if is_pretraining and not num_cat:
            raise ValueError('pretraining needs num_cat, the number of training classes')
        self.feature_extractor = build_backbone(backbone)
        self.backbone = backbone
        self.way = way
        self.shots = shots
        self.solver = solver
        self.is_pretraining = is_pretraining
        # d: channels of the feature map
        self.d = self.feature_extractor.out_channels
        # resolution r = H*W of the feature map (25 for 84x84 inputs); get_neg_l2_dist
        # reads the actual size of each batch, this one sizes cat_mat
        self.resolution = self.feature_extractor.output_size(image_size) ** 2
        # temperature gamma of the softmax
        self.scale = self.create_parameter([1], default_initializer=paddle.nn.initializer.Constant(1.0))
        # [alpha, beta]: lambda = (kr/d) e^alpha + 1e-6 and rho = e^beta; fixed at 0 while pretraining
        self.r = self.create_parameter([2], default_initializer=paddle.nn.initializer.Constant(0.0))
        self.r.stop_gradient = is_pretraining
        if is_pretraining:
            if backbone == 'Conv4':
                # unit-norm positions, hence flat first logits, as ResNet-12's division by sqrt(640) gives
                # (docs/development.md, "Against the official code"); an initialisation only
                self.feature_extractor.init_output_scale(1.0 / math.sqrt(self.d))
            self.num_cat = num_cat
            # one learned "support" feature map per training class: matrix M of Section 3.6
            self.cat_mat = self.create_parameter([num_cat, self.resolution, self.d],
                                                 default_initializer=paddle.nn.initializer.Normal(0.0, 1.0))

    def get_feature_map(self, x):
        """[N, 3, H, W] images -> [N, resolution, d] features, positions in row-major order."""
        feature_map = rank_split.embed(self.feature_extractor, x)  # N, d, h, w
        if self.backbone == 'ResNet12':
            feature_map = feature_map / math.sqrt(640)
        n, d, h, w = feature_map.shape
        return paddle.transpose(paddle.reshape(feature_map, [n, d, h * w]), [0, 2, 1])  # N, h*w, d

    def get_recon_dist(self, query, support, alpha, beta, solver=None, form=None):
        """query [M, d], support [way, kr, d] -> squared reconstruction distances [M, way].

        Equation 8 (kr x kr) and Equation 10 (d x d) give the same distances; see
        methods/ridge.py. `solver`/`form` override the model's choice. The scores
        (episode_scores, forward_pretrain) average these per image in ridge.neg_l2_dist.
        """
        return recon_dist(query, support, alpha, beta, solver=solver or self.solver, form=form)

    def episode_scores(self, feature_map, way, shot, query_shot, return_support=False):
        """The head alone, on precomputed maps [N, r, d] in the episode layout (methods/episode.py)
        -> [way*query_shot, way] mean negative reconstruction distances; a cache of maps can feed it."""
        support, query = split_episode(feature_map, way, shot, query_shot)  # way, shot, r, d; way*query_shot, r, d
        resolution, d = feature_map.shape[1], feature_map.shape[2]
        support = paddle.reshape(support, [way, shot * resolution, d])  # way, shot*r, d: S of each class
        scores = neg_l2_dist(query, support, self.r[0], self.r[1], solver=self.solver)  # way*query_shot, way
        if return_support:
            return scores, support
        return scores

    def get_neg_l2_dist(self, x, way, shot, query_shot, return_support=False):
        """Episode images [N, 3, H, W] in the episode layout (methods/episode.py) -> [way*query_shot, way]."""
        return self.episode_scores(self.get_feature_map(x), way, shot, query_shot, return_support=return_support)

    def log_probabilities(self, neg_l2_dist):
        """Scores [M, way] -> log-probabilities: the softmax at temperature `scale` that training uses."""
        return F.log_softmax(neg_l2_dist * self.scale, axis=1)

    def meta_test(self, x, way, shot, query_shot):
        """Predicted class index of every query."""
        return paddle.argmax(self.get_neg_l2_dist(x, way, shot, query_shot), axis=1)

    def forward_pretrain(self, x):
        """Batch of images -> log-probabilities over the num_cat pretraining classes."""
        if not self.is_pretraining:
            raise ValueError('forward_pretrain needs a model built with is_pretraining=True')
        # each image against every class matrix of cat_mat [num_cat, r, d], as against an episode's supports
        scores = neg_l2_dist(self.get_feature_map(x), self.cat_mat, self.r[0], self.r[1], solver=self.solver)
        return self.log_probabilities(scores)  # batch, num_cat

    def forward(self, x):
        """Meta-training episode -> (log-probabilities [way*query_shot, way], support [way, shot*r, d])."""
        scores, support = self.get_neg_l2_dist(x, self.way, self.shots[0], self.shots[1], return_support=True)
        return self.log_probabilities(scores), support


def auxrank(support):
    """Auxiliary loss that pushes the classes' supports apart (Section 3.5).

    The support [way, kr, d] is divided by its single Frobenius norm; the loss is
    0.03 * sum over class pairs i > j of ||S_i S_j^T||_F^2.
    """
    way, kr, d = support.shape
    support = support / paddle.sqrt(paddle.sum(paddle.square(support)))
    flat = paddle.reshape(support, [way * kr, d])
    gram = paddle.matmul(flat, flat, transpose_y=True)  # way*kr, way*kr
    block_frob = paddle.sum(paddle.reshape(paddle.square(gram), [way, kr, way, kr]), axis=[1, 3])  # way, way
    return 0.03 * paddle.sum(paddle.tril(block_frob, diagonal=-1))
