"""The mistakes of training (lessons 03 and 04): counting parameters, measuring accuracy, and one step of
knowledge distillation (the teacher frozen in eval mode, the student in train mode, zero_grad, backward, step).

A glossary: each mistake's id (``exercise.mistake``), then, indented, what a checker says of it; ``{name}`` and the
other placeholders are filled in by the checker (:func:`kdcourse.mistakes.message`). An ``.unexplained`` entry is
what the checker says when no known mistake explains the answer.
"""

from __future__ import annotations

from .entry import entries

ENTRIES = entries("""
count_parameters.tensors
    it counts the parameter TENSORS (len(list(model.parameters()))), not the scalars inside them: add up
    p.numel() for every p in model.parameters().

count_parameters.with_buffers
    it adds the buffers: the BatchNorm running statistics (model.buffers(), part of state_dict()) are not
    parameters. Use model.parameters().

count_parameters.weights_only
    it counts only the weights. Biases (and BatchNorm's weight and bias) are parameters too; add up p.numel() for
    every p in model.parameters().

count_parameters.no_batchnorm
    the BatchNorm layers' scale and shift are missing. They are learned parameters: count everything in
    model.parameters().

count_parameters.trainable_only
    it counts only the parameters with requires_grad, so a frozen copy of the network (requires_grad=False,
    like a teacher) has 0. A frozen model still has its size: do not filter on p.requires_grad.

count_parameters.returned_tensor
    {name} returned a tensor; return a Python int (e.g. int(...) or sum of p.numel()).

count_parameters.not_an_int
    {name} should return an int, got {type} ({out}).

count_parameters.raised
    Loop over model.parameters() and add up p.numel() for each tensor p.

accuracy.count
    it returns the number of correct predictions; divide by the number of examples (12 in the first case) to get
    a fraction.

accuracy.percentage
    it returns a percentage; return the fraction in [0, 1].

accuracy.error_rate
    it returns the error rate (the share of wrong predictions), not the accuracy.

accuracy.over_batch
    it takes the arg-max over dim 0, the examples; take it over the classes, logits.argmax(dim=1) (each row is one
    example).

accuracy.tensor_of_matches
    {name} returned a tensor of shape {out_shape}: reduce the matches to one number with .float().mean(), then
    return it as a float.

accuracy.returned_tensor
    {name} returned a tensor; return a Python float (float(...) or .item()), so it prints and compares like a
    number.

accuracy.not_a_float
    {name} should return a float, got {type} ({out}).

accuracy.argmax_over_batch_error
    Logits have shape (examples, classes): take the arg-max over the classes, logits.argmax(dim=1), not dim=0.

accuracy.raised
    Compare logits.argmax(dim=1) with the labels and take the mean of the matches.

accuracy.unexplained_square
    On a 5 x 5 batch where every prediction is right you returned {out}. Take the arg-max over the classes, dim=1
    (each row is one example).

accuracy.unexplained
    {name} returned {out} on 12 test rows where 9 arg-maxes match the labels (expected {expected}). Use
    (logits.argmax(dim=1) == labels).float().mean().

kd_training_step.student_without_graph
    loss.backward() found no graph: the student's forward pass must build one. Put only the teacher's forward pass
    under torch.no_grad(), not the student's, and do not .detach() the student's logits.

kd_training_step.backward_twice
    Call loss.backward() once per step.

kd_training_step.student_train_mode
    The student must be in train mode while it trains: there its dropout is active and its BatchNorm normalises with
    the batch's own statistics and updates its running averages. A student with BatchNorm or dropout (DigitsCNN has
    BatchNorm) computes other logits and gradients in eval mode, and its running statistics never learn the data.
    Only the teacher goes in eval mode; the training loop calls student.train() before its steps.

kd_training_step.student_eval_before_forward
    The student ran its forward pass in eval mode: the step calls student.eval() (or student.train(False)) before
    it. {why} Remove student.eval() from the step.

kd_training_step.student_left_in_eval
    The step leaves the student in eval mode (student.eval() after its forward pass): the next steps of the loop
    would then train it in eval mode. {why} Remove student.eval() from the step; switch to eval mode only to
    evaluate, after training.

kd_training_step.teacher_trained
    The teacher's weights changed: only the student may be trained. Give the optimizer only the student's parameters
    and run the teacher under torch.no_grad().

kd_training_step.student_eval_not_teacher
    The step puts the STUDENT in eval mode and leaves the teacher in train mode: student.eval() where teacher.eval()
    was meant? The teacher's BatchNorm running statistics changed ({moved}) and its dropout was active, so
    its soft targets were noisy; and the student, which is the one being trained, was put in eval mode. {why} Call
    teacher.eval() before the teacher's forward pass, and leave the student as it is.

kd_training_step.zero_grad_after_backward
    The student did not change: loss.backward() computed its gradients, but they were erased (optimizer.zero_grad())
    before optimizer.step() ran, so the step had nothing to apply and the student learned nothing. zero_grad()
    clears the OLD gradients, so it goes before loss.backward(): optimizer.zero_grad(), then loss.backward(), then
    optimizer.step().

kd_training_step.no_backward
    The student did not change and has no gradients: call loss.backward() before optimizer.step().

kd_training_step.gradients_erased
    The student did not change: loss.backward() computed its gradients, but they were erased (zero_grad())
    afterwards and optimizer.step() (the optimizer passed in) never applied them. The order is
    optimizer.zero_grad(), loss.backward(), optimizer.step().

kd_training_step.no_step
    The student did not change although gradients were computed: call optimizer.step() (the optimizer passed in)
    after loss.backward().

kd_training_step.unexplained
    The student's update after one step does not match the reference alpha * T^2 * KL(p_t || p_s) + (1 - alpha) *
    CE(y, p_s), nor any of the usual mistakes. Check that you use the optimizer passed in (no new optimizer), the T
    and alpha passed in, and that the teacher's logits come from the same x.

kd_training_step.returned_tensor
    kd_training_step returned a tensor: return loss.item() (a float), so that the graph is not kept alive and the
    values can be averaged and printed.

kd_training_step.not_a_float
    kd_training_step should return the loss as a float, got {type} ({returned}).

kd_training_step.returned_other_loss
    kd_training_step returned {returned}, but the loss of this batch (before the update) is {expected_loss1}. Return
    loss.item() of the loss you back-propagated.

kd_training_step.gradients_accumulate
    The first step was right, but the second one used the sum of this batch's and the previous batch's gradients:
    PyTorch accumulates gradients in .grad, so call optimizer.zero_grad() before loss.backward() in every step.

kd_training_step.state_between_calls
    The first step was right but the second one was not: does your function keep state between calls, or change T,
    alpha or the optimizer?
""")
