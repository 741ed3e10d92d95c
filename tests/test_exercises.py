"""Unit tests of kdcourse.exercises: how a solution notebook becomes an exercise notebook."""

import ast
import copy
import string

import nbformat
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from kdcourse.exercises import expected_lessons, lesson_text, main, make_exercise

SOFTMAX = '''\
import torch

def softmax_with_temperature(logits, T):
    """Softened probabilities."""
    ### BEGIN SOLUTION implement softmax_with_temperature
    scaled = logits / T
    return torch.softmax(scaled, dim=-1)
    ### END SOLUTION

print("ready")'''


def notebook(*cells, **metadata):
    """A small solution notebook, its code cells executed (outputs, counts, timings)."""
    nb = new_notebook(cells=list(cells))
    nb.metadata.update(
        kernelspec={"display_name": "Python 3", "language": "python", "name": "python3"},
        language_info={"name": "python", "version": "3.11.9", "mimetype": "text/x-python"},
        widgets={"application/vnd.jupyter.widget-state+json": {"state": {}}},
        **metadata,
    )
    for count, cell in enumerate(nb.cells, start=1):
        cell.metadata["execution"] = {"iopub.status.busy": "2026-01-01T00:00:00Z"}
        if cell.cell_type == "code":
            cell.execution_count = count
            cell.outputs = [new_output("stream", name="stdout", text="12.3 s\n")]
    return nb


def sources(nb):
    return [cell.source for cell in nb.cells]


def test_region_becomes_indented_stub_with_hint():
    lesson = make_exercise(notebook(new_code_cell(SOFTMAX)))
    assert lesson.cells[0].source == '''\
import torch

def softmax_with_temperature(logits, T):
    """Softened probabilities."""
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: implement softmax_with_temperature")

print("ready")'''
    ast.parse(lesson.cells[0].source)


def test_several_regions_default_hint_and_trailing_newline():
    source = "a = 1\n### BEGIN SOLUTION\nb = 2\n### END SOLUTION\nif a:\n  ### BEGIN SOLUTION\n  c = 3\n  ### END SOLUTION\n"
    lesson = make_exercise(notebook(new_code_cell(source)))
    assert lesson.cells[0].source == (
        "a = 1\n"
        "# YOUR CODE HERE\n"
        'raise NotImplementedError("Exercise: replace this line with your code")\n'
        "if a:\n"
        "  # YOUR CODE HERE\n"
        '  raise NotImplementedError("Exercise: replace this line with your code")\n'
    )


def test_hint_with_quotes_stays_valid_python():
    source = '### BEGIN SOLUTION: call "kd_loss" with T\nx = 1\n### END SOLUTION'
    code = make_exercise(notebook(new_code_cell(source))).cells[0].source
    assert 'NotImplementedError("Exercise: call \\"kd_loss\\" with T")' in code
    ast.parse(code)


def test_solution_cell_marker_and_tag():
    marked = new_code_cell("# SOLUTION CELL compute the entropy\nh = -(p * p.log()).sum()")
    tagged = new_code_cell("h = 0", metadata={"tags": ["solution", "keep-me"]})
    lesson = make_exercise(notebook(marked, tagged))
    assert sources(lesson) == [
        '# YOUR CODE HERE\nraise NotImplementedError("Exercise: compute the entropy")',
        '# YOUR CODE HERE\nraise NotImplementedError("Exercise: replace this line with your code")',
    ]
    assert lesson.cells[1].metadata == {"tags": ["keep-me"]}


def test_outputs_counts_and_metadata_cleared():
    lesson = make_exercise(notebook(new_markdown_cell("# Title"), new_code_cell("x = 1")))
    code = lesson.cells[1]
    assert code.outputs == [] and code.execution_count is None
    assert all(cell.metadata == {} for cell in lesson.cells)
    assert lesson.metadata == {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    assert lesson.cells[0].source == "# Title"


def test_nbval_markers_removed_only_from_code():
    cells = [
        new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(1)", metadata={"tags": ["nbval-skip"]}),
        new_code_cell("x = 1  # NBVAL_IGNORE_OUTPUT is only a marker on its own line"),
        new_markdown_cell("Cells marked `# NBVAL_CHECK_OUTPUT` are compared."),
    ]
    lesson = make_exercise(notebook(*cells))
    assert sources(lesson) == [
        "print(1)",
        cells[1].source,
        cells[2].source,
    ]
    assert lesson.cells[0].metadata == {}


def test_input_notebook_is_not_modified():
    nb = notebook(new_code_cell(SOFTMAX))
    before = nbformat.writes(nb)
    make_exercise(nb)
    assert nbformat.writes(nb) == before


@pytest.mark.parametrize(
    "source, message",
    [
        ("### BEGIN SOLUTION\nx = 1", "never closed"),
        ("x = 1\n### END SOLUTION", "has no '### BEGIN SOLUTION'"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "cannot nest"),
    ],
)
def test_unbalanced_markers_name_notebook_and_cell(source, message):
    nb = notebook(new_markdown_cell("intro"), new_code_cell(source))
    with pytest.raises(ValueError, match=message) as error:
        make_exercise(nb, name="solutions/09_broken.ipynb")
    assert "solutions/09_broken.ipynb, cell 2" in str(error.value)


def test_output_is_deterministic_and_idempotent():
    first = notebook(new_code_cell(SOFTMAX), new_markdown_cell("text"))
    second = notebook(new_code_cell(SOFTMAX), new_markdown_cell("text"))
    second.metadata["language_info"]["version"] = "3.12.0"
    for cell, other in zip(first.cells, second.cells):
        other.id = cell.id
        other.metadata["execution"] = {"iopub.status.busy": "2030-12-31T23:59:59Z"}
    lesson = make_exercise(first)
    text = lesson_text(lesson)
    assert text == lesson_text(make_exercise(second))
    assert text == lesson_text(make_exercise(lesson))
    assert text.endswith("}\n")
    assert nbformat.reads(text, as_version=4).nbformat_minor == first.nbformat_minor


def test_cells_without_ids_get_stable_ones():
    nb = notebook(new_code_cell("x = 1"))
    del nb.cells[0]["id"]
    assert make_exercise(nb).cells[0].id == make_exercise(nb).cells[0].id == "cell-1"



def test_answer_key_cells_are_dropped_and_nothing_else_changes():
    questions = new_markdown_cell("## Questions\n\n1. Why does T not change the arg-max?")
    answer_key = new_markdown_cell("### Answer key (solutions only)\n\n1. SECRET: dividing by T > 0 keeps the order.",
                                   metadata={"tags": ["answer-key"]})
    tagged_code = new_code_cell("print('SECRET too')", metadata={"tags": ["answer-key", "nbval-skip"]})
    with_key = notebook(new_markdown_cell("# Title"), new_code_cell(SOFTMAX), questions, answer_key, tagged_code,
                        new_code_cell("print('the end')"))
    without_key = copy.deepcopy(with_key)
    del without_key.cells[3:5]

    lesson = make_exercise(with_key)
    assert [cell.source for cell in lesson.cells] == [cell.source for cell in make_exercise(without_key).cells]
    assert len(lesson.cells) == 4 and lesson.cells[2].source == questions.source
    text = lesson_text(lesson)
    assert "SECRET" not in text and "Answer key" not in text and "answer-key" not in text
    assert text == lesson_text(make_exercise(without_key))  # every other cell exactly as without the key
    assert "Answer key" in with_key.cells[3].source  # the solution keeps it


lines = st.lists(st.text(string.ascii_letters + " =+()", min_size=1), min_size=1, max_size=5)


@settings(max_examples=50, deadline=None)
@given(indent=st.sampled_from(["", "    ", "\t", "        "]), before=lines, body=lines, after=lines)
def test_any_region_is_replaced_by_exactly_the_stub(indent, before, body, after):
    body = [f"SECRET{i} {line}" for i, line in enumerate(body)]
    source = "\n".join(
        before + [f"{indent}### BEGIN SOLUTION"] + [indent + b for b in body]
        + [f"{indent}### END SOLUTION"] + after
    )
    result = make_exercise(notebook(new_code_cell(source))).cells[0].source.split("\n")
    assert result == before + [
        f"{indent}# YOUR CODE HERE",
        f'{indent}raise NotImplementedError("Exercise: replace this line with your code")',
    ] + after


def test_main_writes_then_checks(tmp_path, capsys):
    solutions, lessons = tmp_path / "solutions", tmp_path / "lessons"
    solutions.mkdir()
    nbformat.write(notebook(new_code_cell(SOFTMAX)), solutions / "01_softmax.ipynb")
    nbformat.write(notebook(new_code_cell("x = 1")), solutions / "scratch.ipynb")  # not NN_*
    args = ["--solutions", str(solutions), "--lessons", str(lessons)]

    assert main(args + ["--check"]) == 1
    assert "01_softmax.ipynb: missing" in capsys.readouterr().err

    assert main(args) == 0
    assert sorted(p.name for p in lessons.iterdir()) == ["01_softmax.ipynb"]
    expected = expected_lessons(solutions, lessons)
    assert (lessons / "01_softmax.ipynb").read_text(encoding="utf-8") == expected[lessons / "01_softmax.ipynb"]
    assert main(args + ["--check"]) == 0

    (lessons / "01_softmax.ipynb").write_text("{}", encoding="utf-8")
    (lessons / "02_orphan.ipynb").write_text("{}", encoding="utf-8")
    assert main(args + ["--check"]) == 1
    err = capsys.readouterr().err
    assert "01_softmax.ipynb: differs" in err
    assert "02_orphan.ipynb: no solution notebook generates it" in err


def test_main_reports_unbalanced_markers(tmp_path, capsys):
    (tmp_path / "solutions").mkdir()
    nbformat.write(notebook(new_code_cell("### BEGIN SOLUTION")), tmp_path / "solutions" / "01_x.ipynb")
    assert main(["--solutions", str(tmp_path / "solutions"), "--lessons", str(tmp_path / "lessons")]) == 2
    assert "01_x.ipynb, cell 1" in capsys.readouterr().err


def test_missing_solutions_folder_gives_no_lessons(tmp_path):
    assert expected_lessons(tmp_path / "nowhere") == {}


def test_an_answer_to_write_becomes_an_ellipsis_not_a_raise():
    """A region that is one string assignment (lesson 07's diagnosis) is an answer: its stub is `name = ...`,
    which check_diagnosis reads as not answered yet, so the unsolved lesson goes on."""
    from kdcourse.exercises import _strip_source

    source = '### BEGIN SOLUTION name the pitfall\ndiagnosis_a = "mean_reduction"\n### END SOLUTION'
    assert _strip_source(source, "test") == ("# YOUR ANSWER HERE: name the pitfall\n"
                                             "diagnosis_a = ...  # replace ... with your answer, a string")
    code = '### BEGIN SOLUTION write it\nx = "a" + "b"\n### END SOLUTION'  # code, not a string literal
    assert "raise NotImplementedError" in _strip_source(code, "test")


def test_an_unanswered_diagnosis_is_said_and_the_lesson_goes_on(capsys):
    from kdcourse.checks import check_diagnosis

    check_diagnosis("mystery_a", ...)
    out = capsys.readouterr().out
    assert "mystery_a is not answered yet" in out and "mean_reduction" not in out.split("(one of")[0]
