"""The lesson 08b checker (paired attention transfer): the learner's errors with a dict of layer
pairs get a hint naming the likely cause; the checker's own frames stay out of the traceback."""


import pytest

from checker_frames import fails_with as shared_fails_with
from checker_frames import shown_checker_frames
from kdcourse.checks import check_paired_attention_loss
from kdcourse.losses import attention_map
from kdcourse.methods import paired_attention_loss


def fails_with(fn, *patterns):
    return shared_fails_with(check_paired_attention_loss, fn, *patterns)


def sum_over_pairs(pairs, pair_loss):
    return sum(pair_loss(s, t) for s, t in pairs)


def test_reference_passes(capsys):
    check_paired_attention_loss(paired_attention_loss)
    assert "✓" in capsys.readouterr().out


def test_student_layer_name_used_on_the_teacher_is_named():
    def loss(student_out, teacher_out, pairs):
        return sum_over_pairs(pairs.items(), lambda s, t: (attention_map(student_out[s])
                                                             - attention_map(teacher_out[s])).pow(2).mean())

    fails_with(loss, "KeyError: 'layer2'", "teacher_out has no layer 'layer2'", "STUDENT's layer name",
               "teacher_out\\[teacher_name\\]", "pairs.items\\(\\)")


def test_teacher_layer_name_used_on_the_student_is_named():
    def loss(student_out, teacher_out, pairs):
        return sum_over_pairs(pairs.items(), lambda s, t: (attention_map(student_out[t])
                                                             - attention_map(teacher_out[t])).pow(2).mean())

    fails_with(loss, "student_out has no layer 'block3'", "TEACHER's layer name")


def test_iterating_over_the_dict_of_pairs_is_named():
    def loss(student_out, teacher_out, pairs):
        total = 0.0
        for s, t in pairs:  # the keys only: each name is unpacked into two variables
            total = total + (attention_map(student_out[s]) - attention_map(teacher_out[t])).pow(2).mean()
        return total

    fails_with(loss, "values to unpack", "gives its KEYS only", "for student_name, teacher_name in pairs.items\\(\\)")


def test_tracebacks_hide_the_checkers_frames():
    def loss(student_out, teacher_out, pairs):
        return sum_over_pairs(pairs, lambda s, t: 0.0)

    with pytest.raises(AssertionError, match="values to unpack") as info:
        check_paired_attention_loss(loss)
    assert shown_checker_frames(info.value) == []
