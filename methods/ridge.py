"""Ridge reconstruction of query features from class supports: the FRN head (paper Section 3.2).

For a class with support features S (kr x d) and a query feature row q (1 x d),

    q_bar = rho * q S^T (S S^T + lam I)^-1 S          (Equation 8, kr x kr form)
          = rho * q (S^T S + lam I)^-1 S^T S          (Equation 10, d x d form)

with lam = (kr / d) e^alpha + 1e-6 and rho = e^beta; the distance is ||q_bar - q||^2.

The official code always inverts the d x d matrix (640 x 640 per class for ResNet-12)
and forms a way x M x d tensor for the distances. `solver='cholesky'` (the default)
works with the smaller of the two matrices instead: it factors it as L L^T and uses
only L^-1, whose condition number is the square root of the matrix's; in the kr x kr
form it never forms anything of size way x M x d. `solver='inverse'` keeps the
official computation for comparison.

`neg_l2_dist` turns these distances into FRN's scores, the negative mean over a query map's
r positions; it is the one head of training, evaluation, pretraining, prediction and explanation.
"""
import paddle

SOLVERS = ('cholesky', 'inverse')
FORMS = ('kr', 'd')


def ridge_lambda(kr, d, alpha):
    """lam = (kr / d) e^alpha + 1e-6, the regulariser of Equations 8 and 10, at float32 precision.

    The official code scales a float32 identity by lam, so lam enters the matrix rounded
    to float32 even in a float64 model. We round the same way (a no-op in float32) so
    float64 runs reproduce it exactly; the gradient is that of the unrounded lam.
    """
    lam = (kr / d) * paddle.exp(alpha) + 1e-6
    if lam.dtype == paddle.float64:
        lam = lam + (paddle.cast(paddle.cast(lam, 'float32'), lam.dtype) - lam).detach()
    return lam


def recon_dist(query, support, alpha, beta, solver='cholesky', form=None):
    """Squared reconstruction distance of every query row under every class.

    query: [M, d]; support: [way, kr, d]; alpha, beta: scalar tensors.
    solver: 'cholesky' (default) or 'inverse' (the official explicit inverse).
    form: 'kr' or 'd'; None picks the smaller matrix for 'cholesky' and the official
    d x d form for 'inverse'. Returns [M, way] in the dtype of `query`.
    """
    if solver not in SOLVERS:
        raise ValueError(f'unknown ridge solver {solver!r}; choose one of {SOLVERS}')
    form = _pick_form(support, solver, form)
    lam = ridge_lambda(support.shape[1], support.shape[2], alpha)
    rho = paddle.exp(beta)
    if solver == 'inverse':
        return _inverse_dist(query, support, lam, rho, form)
    dist, _ = _cholesky_parts(query, support, lam, rho, form, with_weights=False)
    return paddle.cast(dist, query.dtype)


def recon_explain(query, support, alpha, beta, form=None, reconstruct=False):
    """What recon_dist computes, and the ridge weights that make each reconstruction.

    Returns (dist [M, way], weights [way, M, kr]), both in the dtype of `query`. Row m of
    weights[c] is W = rho q S^T (S S^T + lam I)^-1 of Equation 8, so q_bar = W S and
    dist[m, c] = ||W S - q||^2. Both come from one Cholesky solve, the one recon_dist uses
    (form chosen the same way), so `dist` is bitwise recon_dist's.
    reconstruct=True adds a third output, the reconstructions themselves, rho * q_bar = W S
    [way, M, d], multiplied out in float64 from the same weights (tools/visualize.py decodes them).
    """
    form = _pick_form(support, 'cholesky', form)
    lam = ridge_lambda(support.shape[1], support.shape[2], alpha)
    rho = paddle.exp(beta)
    dist, weights = _cholesky_parts(query, support, lam, rho, form)
    out = (paddle.cast(dist, query.dtype), paddle.cast(weights, query.dtype))
    if reconstruct:  # way, M, kr x way, kr, d -> way, M, d
        out += (paddle.cast(paddle.matmul(weights, paddle.cast(support, 'float64')), query.dtype),)
    return out


def neg_l2_dist(query_maps, support, alpha, beta, solver='cholesky', explain=False, reconstruct=False):
    """FRN's scores: each query map's negative mean squared reconstruction distance under each class.

    The one head of training, evaluation, pretraining, prediction and explanation.
    query_maps: [Q, r, d]. support: [way, kr, d], every class solved at once (an episode's
    supports, or pretraining's class matrices); or a list of one [kr_c, d] (or [k_c, r, d])
    per class, each solved alone, for classes of different sizes (lam depends on kr_c).
    Returns scores [Q, way] (Q = number of query maps). explain=True returns
    {'scores', 'dist' [Q, r, way] per position, 'weights': one [Q, r, kr_c] per class (see
    recon_explain)} from the same solves, so the scores are the same bits; reconstruct=True
    adds 'reconstructions' [Q, way, r, d], rho * q_bar = W S.
    """
    n_query, resolution, d = query_maps.shape
    query = paddle.reshape(query_maps, [n_query * resolution, d])  # Q*r, d
    if isinstance(support, (list, tuple)):
        groups = [paddle.reshape(s, [1, -1, d]) for s in support]  # each 1, kr_c, d: a class alone
    else:
        groups = [support]  # way, kr, d: all classes at once
    if explain:
        if solver != 'cholesky':
            raise ValueError(f'the explanation comes from the Cholesky solve only, not solver {solver!r}')
        parts = [recon_explain(query, s, alpha, beta, reconstruct=reconstruct) for s in groups]
    else:
        parts = [(recon_dist(query, s, alpha, beta, solver=solver),) for s in groups]
    dist = paddle.reshape(_concat([p[0] for p in parts], axis=1), [n_query, resolution, -1])  # Q, r, way
    scores = -paddle.mean(dist, axis=1)  # Q, way
    if not explain:
        return scores
    weights = [paddle.reshape(w, [n_query, resolution, -1]) for p in parts for w in p[1]]  # way x [Q, r, kr_c]
    out = {'scores': scores, 'dist': dist, 'weights': weights}
    if reconstruct:
        rebuilt = paddle.reshape(_concat([p[2] for p in parts], axis=0), [-1, n_query, resolution, d])  # way, Q, r, d
        out['reconstructions'] = paddle.transpose(rebuilt, [1, 0, 2, 3])  # Q, way, r, d
    return out


def _concat(tensors, axis):
    """paddle.concat, without a copy for a single tensor."""
    return tensors[0] if len(tensors) == 1 else paddle.concat(tensors, axis=axis)


def _pick_form(support, solver, form):
    """'kr' or 'd': as given, else the smaller matrix for 'cholesky' and the official d x d for 'inverse'."""
    way, kr, d = support.shape
    if form is None:
        form = ('kr' if kr < d else 'd') if solver == 'cholesky' else 'd'
    if form not in FORMS:
        raise ValueError(f'unknown ridge form {form!r}; choose one of {FORMS}')
    return form


def _cholesky_parts(query, support, lam, rho, form, with_weights=True):
    """(dist [M, way], ridge weights W [way, M, kr] or None) in float64, through the Cholesky solver of `form`.

    float64 throughout: both forms expand the squared residual into terms that cancel
    when the reconstruction is good; float64 keeps a float32 model's distances exact to
    float32 rounding at little cost, as the matrices are small.
    """
    query, support, lam, rho = (paddle.cast(t, 'float64') for t in (query, support, lam, rho))
    return (_cholesky_kr_dist if form == 'kr' else _cholesky_d_dist)(query, support, lam, rho, with_weights)


def _inverse_dist(query, support, lam, rho, form):
    """The official computation: explicit inverse, then ||rho q hat - q||^2 formed in d dimensions."""
    st = paddle.transpose(support, [0, 2, 1])  # way, d, kr
    if form == 'd':
        sts = paddle.matmul(st, support)  # way, d, d
        eye = paddle.eye(sts.shape[-1], dtype=sts.dtype)
        hat = paddle.matmul(paddle.linalg.inv(sts + lam * eye), sts)  # way, d, d
    else:
        sst = paddle.matmul(support, st)  # way, kr, kr
        eye = paddle.eye(sst.shape[-1], dtype=sst.dtype)
        hat = paddle.matmul(paddle.matmul(st, paddle.linalg.inv(sst + lam * eye)), support)  # way, d, d
    q_bar = paddle.matmul(query, hat) * rho  # way, M, d
    dist = paddle.sum(paddle.square(q_bar - query), axis=2)  # way, M
    return paddle.transpose(dist, [1, 0])  # M, way


def _inverse_cholesky_factor(gram, lam):
    """L^-1 for the Cholesky factor L of gram + lam I (batched), so that (gram + lam I)^-1 = L^-T L^-1.

    L^-1 comes from a triangular solve against the identity and is then applied by
    matrix products: Paddle's batched triangular_solve with thousands of right-hand
    sides is several times slower than a matrix product. The identity asks for a
    gradient because Paddle 3.3.1's triangular_solve returns a wrong gradient for its
    matrix when the right-hand side does not need one.
    """
    n = gram.shape[-1]
    chol = paddle.linalg.cholesky(gram + lam * paddle.eye(n, dtype=gram.dtype))  # lower
    eye = paddle.eye(n, dtype=gram.dtype)
    eye.stop_gradient = False
    return paddle.linalg.triangular_solve(chol, paddle.expand_as(eye, gram), upper=False)


def _cholesky_kr_dist(query, support, lam, rho, with_weights=True):
    """kr x kr form, expanded so that nothing of size way x M x d is formed.

    With A = S S^T + lam I = L L^T, c = q S^T, t = c A^-1 c^T and w = c A^-1:
    ||rho w S - q||^2 = ||q||^2 - (2 rho - rho^2) t - rho^2 lam ||w||^2,
    because w S S^T w^T = w A w^T - lam ||w||^2 = t - lam ||w||^2.
    Returns (dist [M, way], ridge weights rho w [way, M, kr]).
    """
    way, kr, d = support.shape
    linv = _inverse_cholesky_factor(paddle.matmul(support, support, transpose_y=True), lam)  # way, kr, kr
    c = paddle.matmul(query, paddle.reshape(support, [-1, d]), transpose_y=True)  # M, way*kr
    c = paddle.transpose(paddle.reshape(c, [0, -1, kr]), [1, 0, 2])  # way, M, kr: q S^T per class
    z = paddle.matmul(c, linv, transpose_y=True)  # way, M, kr: c L^-T, so t = ||z||^2
    w = paddle.matmul(z, linv)  # way, M, kr: c L^-T L^-1 = c A^-1
    t = paddle.sum(paddle.square(z), axis=2)  # way, M
    w2 = paddle.sum(paddle.square(w), axis=2)  # way, M
    q2 = paddle.sum(paddle.square(query), axis=1)  # M
    dist = q2 - (2 * rho - paddle.square(rho)) * t - paddle.square(rho) * lam * w2  # way, M
    return paddle.transpose(dist, [1, 0]), (rho * w if with_weights else None)  # M, way; way, M, kr


def _cholesky_d_dist(query, support, lam, rho, with_weights=True):
    """d x d form, expanded as the kr x kr form is, so that nothing of size way x M x d is added or scaled.

    With B = S^T S + lam I = L L^T, hat = I - lam B^-1, so rho q hat - q = (rho - 1) q - rho lam w with
    w = q B^-1. With z = q L^-T (so t = ||z||^2 = q B^-1 q^T = q w^T) the squared residual is
    (rho - 1)^2 ||q||^2 - 2 (rho - 1) rho lam t + rho^2 lam^2 ||w||^2.
    Returns (dist [M, way], ridge weights [way, M, kr] or None): W = rho q S^T A^-1 = rho w S^T, so
    that W S = rho q (I - lam B^-1) is the reconstruction whose residual `dist` sums.
    """
    linv = _inverse_cholesky_factor(paddle.matmul(support, support, transpose_x=True), lam)  # way, d, d
    z = paddle.matmul(query, linv, transpose_y=True)  # way, M, d: q L^-T
    w = paddle.matmul(z, linv)  # way, M, d: q B^-1
    t = paddle.sum(paddle.square(z), axis=2)  # way, M
    w2 = paddle.sum(paddle.square(w), axis=2)  # way, M
    q2 = paddle.sum(paddle.square(query), axis=1)  # M
    dist = (paddle.square(rho - 1) * q2 - 2 * (rho - 1) * rho * lam * t
            + paddle.square(rho * lam) * w2)  # way, M
    weights = rho * paddle.matmul(w, support, transpose_y=True) if with_weights else None  # way, M, kr
    return paddle.transpose(dist, [1, 0]), weights  # M, way; way, M, kr
