"""A nearest-prototype classifier on FRN's feature maps: the simple baseline of README "Results".

Each image's feature map is averaged over its positions; a class's prototype is the mean
of its supports; a query scores -||q - prototype||^2 (Prototypical Networks' classifier,
Snell et al. 2017). It has FRN's episode interface, so test.py and the feature cache run
it unchanged: comparing the two on the same backbone isolates FRN's reconstruction head.
"""
import paddle


class PrototypeClassifier(paddle.nn.Layer):
    def __init__(self, frn):
        super().__init__()
        self.frn = frn
        self.scale = paddle.ones([1], dtype='float32')  # scores are used as they are

    def get_feature_map(self, x):
        return self.frn.get_feature_map(x)

    def get_neg_l2_dist(self, x, way, shot, query_shot, return_support=False):
        """Episode images (supports grouped by class, then queries) -> [way * query_shot, way] scores."""
        embedding = paddle.mean(self.get_feature_map(x), axis=1)  # N, d: average over positions
        d = embedding.shape[1]
        prototypes = paddle.mean(paddle.reshape(embedding[:way * shot], [way, shot, d]), axis=1)  # way, d
        query = paddle.unsqueeze(embedding[way * shot:], 1)  # way * query_shot, 1, d
        return -paddle.sum(paddle.square(query - prototypes), axis=2)  # way * query_shot, way
