"""The mistakes of relation distillation (lesson 06): RKD's distances and angles, SP's similarity matrices.

A glossary: each mistake's id (``exercise.mistake``), then, indented, what a checker says of it.
"""

from __future__ import annotations

from .entry import entries

ENTRIES = entries("""
rkd_distance_loss.pairs_only
    it averages the Huber loss over the b(b-1) pairs i != j only, so the loss is b/(b-1) times the reference
    implementations' (5/4 for a batch of 5): the RKD authors' code, RepDistiller and mdistiller take
    F.smooth_l1_loss over the whole b x b matrices, the b zeros of the diagonal included (each example's
    distance to itself; their weights 25 and 50 go with that average). Pass the whole normalised matrices,
    F.smooth_l1_loss(d_s / mu_s, d_t / mu_t), without selecting the pairs; the mean distance mu stays over the
    pairs i != j.

rkd_distance_loss.sum
    it sums over the pairs; average instead (the default reduction of F.smooth_l1_loss, over all b^2 entries of
    the matrices), so that the loss does not grow with the batch size.

rkd_distance_loss.mse
    it uses the squared error; RKD uses the Huber loss (F.smooth_l1_loss), which is less sensitive to a few
    pairs that disagree a lot.

rkd_distance_loss.l1
    it uses the absolute error; RKD uses the Huber loss (F.smooth_l1_loss).

rkd_distance_loss.not_normalised
    the distances are not normalised by their mean: divide each network's distances by its own mean distance
    over the pairs i != j (psi_D = ||t_i - t_j|| / mu). Without it the loss depends on the embeddings' scales,
    which differ between teacher and student.

rkd_distance_loss.mu_with_diagonal
    the mean distance mu includes the zeros of the diagonal (each example's distance to itself): take mu over
    the pairs i != j only, e.g. d[d > 0].mean() or with an off-diagonal mask (the Huber loss itself is then
    averaged over the whole matrices).

rkd_distance_loss.teacher_mean
    the student's distances are divided by the TEACHER's mean distance: normalise each network by its own mean,
    so that only the relative distances are compared.

rkd_distance_loss.student_mean
    the teacher's distances are divided by the STUDENT's mean distance: normalise each network by its own mean,
    so that only the relative distances are compared.

rkd_distance_loss.squared
    it compares SQUARED distances; RKD uses the Euclidean distances ||t_i - t_j||_2 (take the square root, e.g.
    torch.cdist).

relations.scale_dependent
    {name} changes when {label} embedding is multiplied by a constant ({base} -> {scaled}). {what}

rkd_angles.vertex_first
    it computes the angle at t_i, the first point; the vertex is the middle point t_j: A[i, j, k] = <e_ij, e_kj>
    with e_ij = (t_i - t_j) / ||t_i - t_j||. (Summed over all triplets the loss would not notice, since every
    angle appears at some index; but psi_A(t_i, t_j, t_k) puts the vertex at the middle point, and the tensor
    should mean what the paper says.)

rkd_angles.vertex_last
    it computes the angle at t_k, the last point; the vertex is the middle point t_j: A[i, j, k] = <e_ij, e_kj>
    with e_ij = (t_i - t_j) / ||t_i - t_j||. (Summed over all triplets the loss would not notice, since every
    angle appears at some index; but psi_A(t_i, t_j, t_k) puts the vertex at the middle point, and the tensor
    should mean what the paper says.)

rkd_angles.wrong_direction
    one of the two vectors points the wrong way (the result is minus the cosine): both must start at the vertex
    t_j, e_ij = t_i - t_j and e_kj = t_k - t_j, before normalising.

rkd_angles.not_normalised
    the difference vectors are not normalised, so it returns dot products, not cosines: divide each t_i - t_j by
    its norm (F.normalize(diff, dim=-1)). Cosines do not change when the embedding is scaled; dot products do.

rkd_angles.acos
    it returns the angles themselves (acos of the cosine); RKD compares the cosines <e_ij, e_kj> directly.

rkd_angles.normalised_over_dim0
    the difference vectors are normalised over the wrong dimension (dim=0): diff[i, j] = t_i - t_j has shape (N,
    N, D) and each vector lies along the LAST dimension, so normalise over it, F.normalize(diff, dim=-1). Over
    dim=0 each entry is divided by a norm taken across examples, and the dot products are not the cosines of the
    angles.

rkd_angles.normalised_over_dim1
    the difference vectors are normalised over the wrong dimension (dim=1): diff[i, j] = t_i - t_j has shape (N,
    N, D) and each vector lies along the LAST dimension, so normalise over it, F.normalize(diff, dim=-1). Over
    dim=1 each entry is divided by a norm taken across examples, and the dot products are not the cosines of the
    angles.

rkd_angles.unit_points
    it normalises the embeddings (the points), then takes their differences: normalise the difference vectors
    instead, e_ij = (t_i - t_j) / ||t_i - t_j|| (F.normalize(diff, dim=-1) on diff = e[:, None, :] - e[None, :,
    :]).

rkd_angles.nan_where_points_coincide
    {name}({shown}) returned NaN where two points coincide (i == j or k == j): t_i - t_j is the zero vector there
    and dividing it by its norm is 0 / 0. Use F.normalize(diff, dim=-1), which adds a small eps (those entries are
    then 0).

rkd_angles.unexplained
    {name} does not match the reference: for the points t_0, t_1, t_2 of {points}, A[0, 1, 2] should be {expected}
    (the cosine of the angle at t_1), got {got}. No classic mistake explains this; compare with A[i, j, k] = <e_ij,
    e_kj>, e_ij = (t_i - t_j) / ||t_i - t_j||.

rkd_angles.one_value_per_pair
    One value per TRIPLET (i, j, k): the result is (N, N, N).

rkd_angle_loss.sum
    it sums over the triplets; average instead (F.smooth_l1_loss's default), so that the loss does not grow like
    N^3 with the batch size.

rkd_angle_loss.not_normalised
    the difference vectors are not normalised, so it compares dot products, not cosines, and the loss depends on
    the embeddings' scales: divide each t_i - t_j by its norm (F.normalize(diff, dim=-1)) in rkd_angles.

rkd_angle_loss.compared_with_itself
    it compares each embedding's angles with themselves or with the wrong network: compare
    rkd_angles(student_embedding) with rkd_angles(teacher_embedding).

rkd_angle_loss.normalised_over_dim0
    the difference vectors of rkd_angles are normalised over the wrong dimension (dim=0): diff[i, j] = t_i - t_j
    has shape (N, N, D) and each vector lies along the LAST dimension, so normalise over it, F.normalize(diff,
    dim=-1). Over dim=0 each entry is divided by a norm taken across examples, and the dot products are not the
    cosines of the angles.

rkd_angle_loss.normalised_over_dim1
    the difference vectors of rkd_angles are normalised over the wrong dimension (dim=1): diff[i, j] = t_i - t_j
    has shape (N, N, D) and each vector lies along the LAST dimension, so normalise over it, F.normalize(diff,
    dim=-1). Over dim=1 each entry is divided by a norm taken across examples, and the dot products are not the
    cosines of the angles.

similarity_matrix.rows_not_normalised
    the rows of G = Q Q^T are not normalised: divide each row by its L2 norm (F.normalize(G, dim=1)), eq. 2.
    Without it the matrix's scale depends on the features' scale, which differs between teacher and student.

similarity_matrix.features_normalised
    it normalises the features before the product (a cosine-similarity matrix); SP computes G = Q Q^T first and
    then normalises each ROW of G (F.normalize(G, dim=1)).

similarity_matrix.columns
    it normalises the columns (dim=0); SP normalises each row: F.normalize(G, dim=1).

similarity_matrix.l1_rows
    it normalises the rows with the L1 norm (their sum); SP uses the L2 norm: F.normalize(G, p=2, dim=1).

similarity_matrix.softmax
    it applies a softmax to the rows; SP divides each row by its L2 norm: F.normalize(G, dim=1).

similarity_matrix.one_norm
    it divides the whole matrix by one norm; SP normalises each row separately: F.normalize(G, dim=1).

similarity_matrix.pooled
    it averages each feature map over its positions (global pooling) before the product, so only the channels'
    means are compared; SP flattens each example's whole (C, H, W) feature into one vector, Q =
    feature.flatten(1), then G = Q Q^T.

similarity_matrix.not_flattened
    The features here are 4-D (N, C, H, W): flatten each example to one vector first, Q = feature.flatten(1) (or
    feature.view(len(feature), -1)), so that G = Q @ Q.T is (b, b).

similarity_matrix.gram_of_dimensions
    That is the Gram matrix of the features' dimensions (Q^T Q); SP compares EXAMPLES: G = Q Q^T is (b, b).

similarity_matrix.channel_gram
    Flatten each example first: Q = feature.flatten(1), then G = Q @ Q.T is (b, b).

similarity_matrix.flatten_any_feature
    similarity_matrix(feature) should do it, for any (b, ...) feature.

similarity_preserving_loss.no_b2
    the 1/b^2 is missing: divide the squared Frobenius norm by b^2 (b = batch size), so that the loss does not
    grow with the batch.

similarity_preserving_loss.divided_by_b
    it divides by b, not b^2 (b = batch size): L_SP = ||G_T - G_S||_F^2 / b^2.

similarity_preserving_loss.norm_not_square
    it uses the Frobenius norm, not its square: L_SP = ||G_T - G_S||_F^2 / b^2.

similarity_preserving_loss.norm_not_square_no_b2
    it uses the Frobenius norm, not its square, and the 1/b^2 is missing: L_SP = ||G_T - G_S||_F^2 / b^2.

similarity_preserving_loss.absolute
    it uses absolute differences; SP uses the squared Frobenius norm: (G_T - G_S).pow(2).sum() / b^2.

similarity_preserving_loss.not_row_normalised
    the similarity matrices are not row-normalised (use similarity_matrix, eq. 2): raw Q Q^T matrices have the
    features' scales, which differ between teacher and student.

similarity_preserving_loss.not_row_normalised_no_b2
    the similarity matrices are not row-normalised (use similarity_matrix, eq. 2), and the 1/b^2 is missing.

similarity_preserving_loss.ratio_one_over_b2
    The ratio is 1/b^2: is the 1/b^2 missing?

similarity_preserving_loss.unexplained
    {name}({pair}) returned {out}, expected {expected}{ratio}.{hint} No classic mistake explains this; compare with
    (similarity_matrix(t) - similarity_matrix(s)).pow(2).sum() / b**2.
""")
