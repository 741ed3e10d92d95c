"""One catalogue of mistakes (kdcourse/mistakes/), read by the checkers, lesson 07's pitfalls and its diagnosis."""

import re
from pathlib import Path

import pytest

import kdcourse.pitfalls as P
from kdcourse import checks, mistakes
from kdcourse.checks import EXERCISES, check_diagnosis, check_distillation_loss, check_kd_loss
from kdcourse.checks.training import _variants


def _named_by_checkers() -> set[str]:
    ids = {m for exercise in EXERCISES.values() for v in exercise.variants() for m in v.mistakes}
    return ids | {name for name, _, _ in _variants(4.0, 0.9)[1:]} | _read_by_hand()


def _read_by_hand() -> set[str]:
    """The ids the checkers' own code says: ``engine.fail("id", ...)``, ``engine.mistake(...)``,
    ``catalogue.message(...)``."""
    source = "\n".join(p.read_text() for p in sorted(Path(checks.__file__).parent.glob("*.py")))
    return set(re.findall(r"(?:\b(?:mistake|fail)|catalogue\.message)\(\s*[\"']([\w.]+)[\"']", source))


def test_every_entry_is_read_and_every_name_read_is_an_entry():
    named = _named_by_checkers() | set(mistakes.pitfalls())
    assert named == set(mistakes.CATALOGUE)


def test_lesson_07_lists_the_catalogues_pitfalls():
    assert P.PITFALLS == mistakes.pitfalls()
    assert list(P.PITFALLS) == ["missing_t_squared", "reversed_kl", "mean_reduction", "softmax_student",
                                "swapped_alpha", "teacher_train_mode", "teacher_not_frozen"]


@pytest.mark.parametrize("mistake_id", sorted(mistakes.CATALOGUE))
def test_every_placeholder_is_filled(mistake_id):
    fields = {f: f"<{f}>" for f in mistakes.placeholders(mistake_id)}  # what the checker fills in
    text = mistakes.message(mistake_id, T=4.0, C=10, B=32, alpha=0.9, moved="bn1.running_mean", **fields)
    assert "{" not in text and "}" not in text, text
    bare = mistakes.message(mistake_id, **fields)  # without numbers: the symbols
    assert "{" not in bare, bare
    if fields:
        with pytest.raises(KeyError, match=next(iter(fields))):
            mistakes.message(mistake_id)  # a field the checker forgot is an error, not a "{name}" in the message


def _prefix(mistake_id: str) -> str:
    """The catalogue's text up to its first number, as a pattern."""
    return re.escape(re.split(r"\{", mistakes.CATALOGUE[mistake_id].fix)[0][:50])


@pytest.mark.parametrize("mistake_id, broken", [
    ("missing_t_squared", P.kd_loss_missing_t_squared),
    ("reversed_kl", P.kd_loss_reversed_kl),
    ("mean_reduction", P.kd_loss_mean_reduction),
    ("softmax_student", P.kd_loss_softmax_student),
])
def test_lesson_07s_broken_losses_get_the_catalogues_message_from_the_checker(mistake_id, broken):
    with pytest.raises(AssertionError, match=_prefix(mistake_id)):
        check_kd_loss(broken)


def test_lesson_07s_swapped_alpha_gets_its_message_from_the_distillation_loss_checker():
    def swapped(s, t, y, T, alpha):
        return sum(term.weight * term.fn({"logits": s}, {"logits": t}, y) for term in P.swapped_alpha_terms(T, alpha))

    with pytest.raises(AssertionError, match=_prefix("swapped_alpha")):
        check_distillation_loss(swapped)


@pytest.mark.parametrize("pitfall", sorted(mistakes.pitfalls()))
def test_the_diagnosis_accepts_every_spelling_the_catalogue_lists(pitfall):
    for spelling in (pitfall, *mistakes.CATALOGUE[pitfall].aliases, pitfall.replace("_", " ").upper()):
        assert mistakes.resolve(spelling) == pitfall, spelling
    truth = {"mystery_a": "mean_reduction", "mystery_b": "teacher_train_mode"}
    for mystery, answer in truth.items():
        if answer == pitfall:
            check_diagnosis(mystery, mistakes.CATALOGUE[pitfall].aliases[0])



def test_a_glossary_block_must_be_an_id_then_its_fix_indented():
    from kdcourse.mistakes.entry import entries

    (entry,) = entries("x.y\n    it does this;\n    do that.\n")
    assert (entry.id, entry.fix) == ("x.y", "it does this; do that.")
    with pytest.raises(ValueError, match="indented by 4"):
        entries("x.y\nit does this.")
