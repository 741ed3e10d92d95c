"""The mistakes of feature distillation (lessons 05 and 08b): FitNets' hint loss, attention maps and attention
transfer, between one pair of layers or several.

A glossary: each mistake's id (``exercise.mistake``), then, indented, what a checker says of it.
"""

from __future__ import annotations

from .entry import entries

ENTRIES = entries("""
make_regressor.linear
    The regressor is an nn.Linear, which acts on the LAST dimension of its input (the width W = {width} of a feature
    map (N, C, H, W)), not on the channels. For feature maps use a 1x1 convolution, nn.Conv2d(c_student, c_teacher,
    kernel_size=1): the same linear map of the channels at every position.

make_regressor.returned_tensor
    {name}({shown}) returned a tensor; return the layer itself (an nn.Module such as nn.Conv2d(...)), which the loss
    then applies to the student's features.

make_regressor.not_a_module
    {name}({shown}) returned a {type}; return an nn.Module (e.g. a 1x1 nn.Conv2d) so that its parameters can be
    handed to the optimizer.

make_regressor.not_trainable
    {name}({shown}) returned {type}, which has no trainable parameters. The regressor must LEARN how to map the
    student's channels onto the teacher's: use nn.Conv2d(c_student, c_teacher, kernel_size=1).

make_regressor.teacher_to_student
    {name}({shown}): the regressor maps the TEACHER's {c_teacher} channels to the student's {c_student}, the wrong
    way round. It is applied to the student's features: nn.Conv2d(c_student, c_teacher, 1), with c = shape[1].

make_regressor.fails_on_student
    {name}({shown}): applying the regressor to a student feature map of shape {s_shape} raised {type}: {error}

make_regressor.spatial_size_changed
    the channels are right but the spatial size changed: use kernel_size=1 (or padding that keeps H x W), since hint
    layers are chosen with the same spatial size.

make_regressor.wrong_out_channels
    it should output the teacher's channel count, {c_teacher} (teacher_shape[1]).

make_regressor.wrong_output
    {name}({shown}): the regressor turns a student feature map {s_shape} into {got}, expected the teacher's
    {t_shape}: {hint}

make_regressor.other_error_on_sizes
    {name}(student 8x8, teacher 4x4) raised {type}; raise a ValueError that says the layers must share their spatial
    size.

make_regressor.accepts_other_sizes
    {name}(student_shape=(4, 8, 8, 8), teacher_shape=(4, 32, 4, 4)) returned a regressor, but a 1x1 convolution
    cannot turn 8x8 maps into 4x4 ones: raise a ValueError asking for layers with the same spatial size (keep the
    check at the top of the function).

make_regressor.compare_shapes
    compare it with the teacher's shape.

make_regressor.channels_from_batch
    The regressor's {which} shape[0], the batch size N. Feature maps are (N, C, H, W): the channel count is shape[1]
    ({counts}), so use nn.Conv2d(student_shape[1], teacher_shape[1], kernel_size=1).

hint_loss.sum
    it sums the squared errors; average them over all elements (F.mse_loss), so that one weight suits layers of
    any size (the paper's 1/2 goes into the weight too).

hint_loss.per_example_norm
    it sums over channels and positions and averages over the batch only (the paper's per-example norm); this
    course averages over all elements (F.mse_loss), so that one weight suits layers of any size.

hint_loss.half
    it multiplies by the paper's 1/2; in this course that constant is folded into the term's weight: return
    F.mse_loss(regressor(student_feature), teacher_feature).

hint_loss.norm_not_square
    it returns the norm of the difference, not its square: use the mean SQUARED error.

hint_loss.l1
    it uses the mean absolute error (L1); FitNets uses the squared error (F.mse_loss).

hint_loss.regressor_on_teacher
    the arguments are reversed: the regressor is applied to the TEACHER's features. It maps the student's
    features to the teacher's shape: mse(regressor(student_feature), teacher_feature).

hint_loss.no_regressor
    the regressor is never applied: the student's features are compared with the teacher's directly, which fails
    whenever their channel counts differ. Use regressor(student_feature).

hint_loss.regressor_on_both
    the regressor is applied to both features; apply it to the student's only.

hint_loss.regressor_not_trained
    {name}: no gradient reaches the regressor's weights: apply the regressor inside the loss, without
    torch.no_grad(), so that it is trained too.

hint_loss.unexplained
    {name}(student {student}, teacher {teacher}) returned {out}, expected {expected}. No classic mistake explains
    this; compare your code with F.mse_loss(regressor(student_feature), teacher_feature).

hint_loss.shapes_do_not_line_up
    The shapes do not line up: the regressor takes the STUDENT's channels and outputs the teacher's, so apply it to
    student_feature, then compare with teacher_feature.

hint_term.not_a_loss_term
    {name}({shown}) returned a {type}; return a LossTerm(name, weight, fn, features=(feature,), module=regressor).

hint_term.weight_not_passed
    {name}: the term's weight is {term_weight}, expected the weight passed in ({weight}). train() multiplies fn's
    value by term.weight: pass it through, don't hard-code it.

hint_term.wrong_features
    {name}: the term reads {term_student_features} from the student and {term_teacher_features} from the teacher;
    name the hint layer, features=({feature},), so that train() pulls that layer from both networks with the feature
    extractor.

hint_term.no_module
    {name}: the regressor's parameters are left out of the optimizer. train() optimises the student's parameters and
    each term's `module`; without module=regressor the regressor stays at its random initialisation and the student
    chases a random projection of the teacher. Pass module=regressor to the LossTerm.

hint_term.module_not_trainable
    {name}: term.module has no trainable parameters; it should be the regressor.

hint_term.key_error
    student_out and teacher_out are dicts keyed by layer name; each holds 'logits' and the layers of the term's
    features, here {feature}: read student_out[feature] and teacher_out[feature] with the `feature` passed in (not a
    name of your own).

hint_term.wrong_layer_shapes
    The student's {feature} features are {s_shape}, the teacher's {t_shape}: the regressor maps the student's
    channels (shape[1]) onto the teacher's, so apply it to student_out[feature].

hint_term.weight_twice
    {name}: fn returns weight x the hint loss; train() multiplies by term.weight already, so the weight would count
    twice. Return the plain hint loss from fn.

hint_term.other_regressor_in_fn
    {name}: fn returned {value}, but hint_loss(student_out[{feature}], teacher_out[{feature}], term.module) is
    {expected}. Does fn use the same regressor that you pass as module? Build ONE regressor and use it in both
    places.

hint_term.module_not_used
    {name}: fn's value does not depend on term.module's parameters: the regressor handed to the optimizer is not the
    one used in the loss. Build ONE regressor, use it in fn and pass it as module.

hint_term.module_not_a_regressor
    {name}: term.module cannot map the student's {feature} features {s_shape} onto the teacher's {t_shape} ({type}:
    {error}). {hint}

hint_term.one_regressor
    Build ONE regressor from the two shapes (make_regressor(student_shape, teacher_shape)), use it in fn and pass it
    as module.

attention_map.ignores_p
    it ignores p and always squares: use feature.abs().pow(p).

attention_map.no_abs
    it raises A to the power p without the absolute value: use feature.abs().pow(p) (|A|^p).

attention_map.not_normalised
    the map is not normalised: divide each example's map by its L2 norm (F.normalize(q, dim=1)). Without it the
    map's scale depends on the network's width and activations, and teacher and student maps cannot be compared.

attention_map.l1_norm
    it normalises with the L1 norm (the sum); attention transfer uses the L2 norm: F.normalize(q, p=2, dim=1).

attention_map.batch_norm
    it normalises over the whole batch at once: normalise each example's map separately (F.normalize(q, dim=1)
    on the (N, H*W) maps).

attention_map.normalised_over_batch
    it normalises over the batch (dim=0): normalise each example's map, over its H*W positions (dim=1).

attention_map.softmax
    it uses a softmax; attention transfer divides by the L2 norm: F.normalize(q, dim=1).

attention_map.max
    it divides by the maximum; attention transfer divides by the L2 norm: F.normalize(q, dim=1).

attention_map.reduced_over_batch
    It reduced over dim 0, the batch (shape[0] is the batch size N): the channels are dim 1, so reduce over dim=1
    and keep one map per example.

attention_map.not_flattened
    Flatten the positions: the map of one example is a vector of H*W values (q.flatten(1)), normalised as a whole.

attention_map.reduced_over_positions
    It reduced over the positions; reduce over the CHANNELS (dim=1) and keep one value per position.

attention_map.not_reduced
    Reduce over the channels (dim=1): one value per position.

attention_map.no_batch_dimension
    Keep the batch dimension: one map per example, shape (N, H*W).

attention_transfer_loss.sum
    it sums over the batch and the positions; average instead (.pow(2).mean()), as in the authors' code: the
    paper's weight beta = 1000 assumes the mean.

attention_transfer_loss.sum_over_positions
    it sums over the positions and averages over the batch; this course (like the authors' code) averages over
    the positions too: diff.pow(2).mean().

attention_transfer_loss.norm_not_square
    it takes each example's norm of the difference, not its square (eq. 2 written literally); the authors' code
    and this course use the squared difference, averaged: diff.pow(2).mean().

attention_transfer_loss.l1
    it uses the absolute difference (L1); use the squared difference: diff.pow(2).mean().

attention_transfer_loss.not_normalised
    the attention maps are compared without normalising them (divide each by its L2 norm, as attention_map
    does): the raw maps' scales depend on each network's width and activations, so the loss would push the
    student's scale instead of its spatial pattern.

attention_transfer_loss.ignores_p
    it ignores p: pass p on to attention_map(feature, p).

attention_transfer_loss.ignores_p_in_power
    it ignores p: use feature.abs().pow(p).

attention_transfer_loss.unexplained
    {name}(student {student}, teacher {teacher}, p={p}) returned {out}, expected {expected}{ratio}. No classic
    mistake explains this; compare with (attention_map(s, p) - attention_map(t, p)).pow(2).mean(). If your check of
    attention_map passed, call that function here.

attention_transfer_loss.maps_not_features
    Teacher and student have different channel counts ({c_student} vs {c_teacher}): compare their attention MAPS,
    attention_map(student_feature, p) and attention_map(teacher_feature, p), which have one value per position
    whatever the width.

paired_attention_loss.mean_over_pairs
    it averages the pairs' losses; add them up (the sum over the pairs), as the authors' code, RepDistiller and
    mdistiller do: the term's weight carries the scale (500 here: the paper's beta/2, beta = 1000).

paired_attention_loss.per_example_norm
    it sums the squared differences over positions (the paper's per-example norm) and averages over the batch
    only; this course averages over batch AND positions (`.pow(2).mean()`), as the authors' code does (the
    paper's beta/2 goes into the weight).

paired_attention_loss.sum
    it sums the squared differences over everything; average them (`.pow(2).mean()`).

paired_attention_loss.norm_not_square
    it returns the norm of the difference (per example), not its square: use the mean of the squared
    differences.

paired_attention_loss.student_not_normalised
    the student's attention maps are not normalised: use attention_map(...), which divides each map by its L2
    norm, so that only WHERE a network looks matters, not how strongly.

paired_attention_loss.not_normalised
    the attention maps are not normalised: use attention_map(...) (unit L2 norm per example).

paired_attention_loss.p_one
    it compares the feature maps' absolute values (p = 1); attention transfer squares them (attention_map's
    default p = 2).

paired_attention_loss.student_name_on_teacher
    teacher_out has no layer {key}: that is the STUDENT's layer name, and the teacher's layers have their own names
    here ({teacher_layers}); reading both dicts under the same name only works while the two networks happen to
    share their names (and even then it pairs layers of different resolutions). `pairs` maps a student layer to the
    teacher layer it learns from: read student_out[student_name] and teacher_out[teacher_name], {items}

paired_attention_loss.teacher_name_on_student
    student_out has no layer {key}: that is the TEACHER's layer name. `pairs` maps student layer -> teacher layer:
    read student_out[student_name] and teacher_out[teacher_name], {items}

paired_attention_loss.missing_layer
    A layer name is missing from one of the dicts: `pairs` maps a STUDENT layer to a TEACHER layer, so read
    student_out[student_name] and teacher_out[teacher_name] (`for student_name, teacher_name in pairs.items()`).

paired_attention_loss.iterating_over_keys
    Iterating over a dict gives its KEYS only (the student's layer names, strings), so `for s, t in pairs:` tries to
    unpack each name into two variables. Use {items}, which gives (student layer, teacher layer) pairs.

paired_attention_loss.maps_differ
    The two maps have different sizes: did you read both sides under the same name, or the pair the wrong way round?
    `pairs` maps student layer -> teacher layer of the SAME resolution: student_out[student_name] with
    teacher_out[teacher_name].

paired_attention_loss.unexplained
    {name}({shown}) returned {out}, expected {expected}. No classic mistake explains this; for each pair compute
    attention_map(student_out[s]) and attention_map(teacher_out[t]), take the mean squared difference, and add up
    the pairs' losses.
""")
