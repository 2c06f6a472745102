"""Prototypical Networks (Snell et al. 2017) as two classifiers over the same backbones as FRN.

- `Proto` is the official FRN repository's ProtoNet baseline (Tsingularity/FRN,
  `models/Proto.py`), the model behind every ProtoNet row of FRN's fine-grained tables:
  trained on its own, with the official names and maths, so official Proto checkpoints
  load by name and tests/test_proto_official.py holds it to the official outputs.
- `PrototypeClassifier` is a head swap: FRN's trained backbone, scored by the nearest
  class mean instead of FRN's reconstruction. It isolates FRN's head on a fixed backbone.

Both expose FRN's episode interface (`get_feature_map`, `episode_scores`,
`log_probabilities`, `get_neg_l2_dist`, `meta_test`), so the evaluation code can embed
each image once and run any of the three heads on the cached maps.
"""
import paddle
import paddle.nn.functional as F

from methods.episode import split_episode
from network import build_backbone, rank_split


def neg_sq_dist_to_class_means(support, query):
    """support [way, shot, dim], query [M, dim] vectors -> [M, way] -||q - c||^2 to the class means c.

    Expanded as ||q||^2 + ||c||^2 - 2 q c^T, in the official order of operations.
    """
    way = support.shape[0]
    centroid = paddle.mean(support, axis=1)  # way, dim
    query_norm = paddle.sum(paddle.square(query), axis=1, keepdim=True)  # M, 1
    centroid_norm = paddle.reshape(paddle.sum(paddle.square(centroid), axis=1), [1, way])  # 1, way
    return -(query_norm + centroid_norm - 2.0 * paddle.matmul(query, centroid, transpose_y=True))  # M, way


class Proto(paddle.nn.Layer):
    """Proto(way, shots=[shot, query_shot], backbone='ResNet12'|'Conv4'): the official ProtoNet baseline.

    An image is one vector: Conv-4's whole map flattened (dim = 64 x 5 x 5 at 84 px),
    ResNet-12's map averaged over positions (dim = 640). Logits are -||q - c||^2 / dim * scale.
    """

    def __init__(self, way=None, shots=None, backbone='ResNet12', *, image_size=84):
        super().__init__()
        self.feature_extractor = build_backbone(backbone)
        self.backbone = backbone
        self.way = way
        self.shots = shots
        # d: channels of the feature map; resolution r = H*W of the map (25 at 84 px)
        self.d = self.feature_extractor.out_channels
        self.resolution = self.feature_extractor.output_size(image_size) ** 2
        # dim: length of the feature vector; the official code divides the distances by it
        self.dim = self.d * self.resolution if backbone == 'Conv4' else self.d
        # temperature gamma of the softmax
        self.scale = self.create_parameter([1], default_initializer=paddle.nn.initializer.Constant(1.0))

    def get_feature_map(self, x):
        """[N, 3, H, W] images -> [N, resolution, d], positions row-major; unlike FRN, ResNet-12's map is not scaled."""
        feature_map = rank_split.embed(self.feature_extractor, x)  # N, d, h, w
        n, d, h, w = feature_map.shape
        return paddle.transpose(paddle.reshape(feature_map, [n, d, h * w]), [0, 2, 1])  # N, h*w, d

    def feature_vectors(self, feature_map):
        """[N, r, d] maps -> [N, dim] vectors: Conv-4 flattens channel-major as the official
        view(N, 64*5*5) of an [N, 64, 5, 5] map does; ResNet-12 averages the positions."""
        n, r, d = feature_map.shape
        if self.backbone == 'Conv4':
            return paddle.reshape(paddle.transpose(feature_map, [0, 2, 1]), [n, d * r])  # N, d*r
        return paddle.mean(feature_map, axis=1)  # N, d

    def get_feature_vector(self, x):
        """[N, 3, H, W] images -> [N, dim] feature vectors."""
        return self.feature_vectors(self.get_feature_map(x))

    def episode_scores(self, feature_map, way, shot, query_shot):
        """The head alone, on precomputed maps [N, r, d] in the episode layout (methods/episode.py)
        -> [way*query_shot, way] negative squared distances to the class means."""
        return neg_sq_dist_to_class_means(*split_episode(self.feature_vectors(feature_map), way, shot, query_shot))

    def get_neg_l2_dist(self, x, way, shot, query_shot):
        """Episode images -> [way*query_shot, way] negative squared distances."""
        return self.episode_scores(self.get_feature_map(x), way, shot, query_shot)

    def meta_test(self, x, way, shot, query_shot):
        """Predicted class index of every query."""
        return paddle.argmax(self.get_neg_l2_dist(x, way, shot, query_shot), axis=1)

    def log_probabilities(self, neg_l2_dist):
        """Scores [M, way] -> log-probabilities; dividing by dim keeps the logits' scale independent of dim."""
        return F.log_softmax(neg_l2_dist / self.dim * self.scale, axis=1)

    def forward(self, x):
        """Meta-training episode -> log-probabilities [way*query_shot, way]; the loss is their NLL alone."""
        return self.log_probabilities(self.get_neg_l2_dist(x, self.way, self.shots[0], self.shots[1]))


class PrototypeClassifier(paddle.nn.Layer):
    """A head swap, not the official ProtoNet (that is `Proto`): an FRN-trained backbone whose
    maps are averaged over positions and scored by the nearest class mean. Comparing it with
    FRN on the same backbone isolates FRN's reconstruction head."""

    def __init__(self, frn):
        super().__init__()
        self.frn = frn
        self.scale = paddle.ones([1], dtype='float32')  # scores are used as they are

    def get_feature_map(self, x):
        return self.frn.get_feature_map(x)

    def episode_scores(self, feature_map, way, shot, query_shot):
        """[N, r, d] maps of an episode -> [way * query_shot, way] negative squared distances."""
        embedding = paddle.mean(feature_map, axis=1)  # N, d: average over positions
        support, query = split_episode(embedding, way, shot, query_shot)  # way, shot, d; way * query_shot, d
        prototypes = paddle.mean(support, axis=1)  # way, d
        query = paddle.unsqueeze(query, 1)  # way * query_shot, 1, d
        return -paddle.sum(paddle.square(query - prototypes), axis=2)  # way * query_shot, way

    def get_neg_l2_dist(self, x, way, shot, query_shot, return_support=False):
        """Episode images (supports grouped by class, then queries) -> [way * query_shot, way] scores."""
        return self.episode_scores(self.get_feature_map(x), way, shot, query_shot)

    def meta_test(self, x, way, shot, query_shot):
        """Predicted class index of every query."""
        return paddle.argmax(self.get_neg_l2_dist(x, way, shot, query_shot), axis=1)

    def log_probabilities(self, neg_l2_dist):
        """Scores -> log-probabilities at the classifier's (unit) temperature."""
        return F.log_softmax(neg_l2_dist * self.scale, axis=1)
