"""python -m kdcourse grade: learners' notebooks run in fresh kernels, checkers' verdicts tabulated.

Kernels are what cost here (about 2 s to start, a few more to import torch), so the tests run few
of them: two notebooks on the real checkers, and three small ones without torch whose checkers
are defined in the notebook itself.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from kdcourse.__main__ import main
from kdcourse.exercises import make_exercise
from kdcourse.grade import find_exercises, grade_notebook

ROOT = Path(__file__).resolve().parent.parent

IMPORTS = "import torch\nimport torch.nn.functional as F\nfrom kdcourse.checks import check_distillation_loss, check_kd_loss"
KD_LOSS = '''def kd_loss(student_logits, teacher_logits, T):
    log_p_student = F.log_softmax(student_logits / T, dim=1)
    p_teacher = F.softmax(teacher_logits / T, dim=1)
    return F.kl_div(log_p_student, p_teacher, reduction="batchmean") * T**2'''
DISTILLATION_LOSS = '''def distillation_loss(student_logits, teacher_logits, targets, T, alpha):
    return alpha * kd_loss(student_logits, teacher_logits, T) + (1 - alpha) * F.cross_entropy(student_logits, targets)'''
STUB = '''def distillation_loss(student_logits, teacher_logits, targets, T, alpha):
    # YOUR CODE HERE
    raise NotImplementedError("Exercise: implement the alpha mix")'''


def write(path: Path, *sources: str) -> Path:
    nbformat.write(new_notebook(cells=[new_code_cell(s) for s in sources]), path)
    return path


def results(grade) -> dict:
    return {e.exercise: e.shown() for e in grade.exercises}


def test_every_exercise_of_every_lesson_has_a_checker_the_grader_finds():
    for lesson in sorted((ROOT / "lessons").glob("*.ipynb")):
        nb = nbformat.read(lesson, as_version=4)
        stubs = [i + 1 for i, c in enumerate(nb.cells) if 'raise NotImplementedError("Exercise:' in c.source]
        checks = [e.cell for e in find_exercises(nb)]
        for stub, next_stub in zip(stubs, [*stubs[1:], len(nb.cells) + 1]):
            assert any(stub <= cell < next_stub for cell in checks), f"{lesson.name}: no check after the stub in cell {stub}"
        names = [e.exercise for e in find_exercises(nb)]
        assert "#" not in "".join(names), f"{lesson.name}: two checks of one name: {names}"
    names = [e.exercise for e in find_exercises(nbformat.read(ROOT / "lessons/02_distillation_loss.ipynb", as_version=4))]
    assert names == ["kd_loss", "distillation_loss"]


def test_exercises_are_top_level_checker_calls_named_after_what_they_check():
    nb = new_notebook(cells=[
        new_markdown_cell("check_kd_loss(kd_loss) in markdown is not an exercise"),
        new_code_cell("def helper(f):\n    check_kd_loss(f)  # inside a def: not an exercise"),
        new_code_cell('check_diagnosis("mystery_a", diagnosis_a)\ncheck_diagnosis("mystery_b", "teacher_train_mode")'),
        new_code_cell("kdcourse.checks.check_kd_loss(\n    kd_loss,\n)"),
        new_code_cell("%matplotlib inline\ncheck_entropy(entropy)"),
        new_code_cell("check_paired_gain(lambda a, b: 0.0)"),
    ])
    found = [(e.exercise, e.checker, e.cell, e.lines) for e in find_exercises(nb)]
    assert found == [
        ("diagnosis_a", "check_diagnosis", 3, (1, 1)),
        ("mystery_b", "check_diagnosis", 3, (2, 2)),
        ("kd_loss", "check_kd_loss", 4, (1, 3)),
        ("entropy", "check_entropy", 5, (2, 2)),
        ("paired_gain", "check_paired_gain", 6, (1, 1)),
    ]


def test_unreadable_notebook_is_reported_without_a_kernel(tmp_path):
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{ not json", encoding="utf-8")
    grade = grade_notebook(broken)
    assert grade.status == "error" and "cannot read the notebook" in grade.detail and grade.exercises == []


def test_missing_notebook_is_a_usage_error(tmp_path, capsys):
    assert main(["grade", str(tmp_path / "nowhere.ipynb")]) == 2
    err = capsys.readouterr().err
    assert "nowhere.ipynb: no such file" in err and "Nothing was graded" in err


def test_grade_table_and_json_on_the_real_checkers(tmp_path, capsys):
    right = write(tmp_path / "right.ipynb", IMPORTS, KD_LOSS, "check_kd_loss(kd_loss)", DISTILLATION_LOSS,
                  "check_distillation_loss(distillation_loss)")
    wrong = write(tmp_path / "wrong.ipynb", IMPORTS, KD_LOSS.replace(" * T**2", ""), "check_kd_loss(kd_loss)", STUB,
                  "check_distillation_loss(distillation_loss)", "print(distillation_loss(None, None, None, 4, 0.9))")
    out = tmp_path / "grades.json"
    assert main(["grade", str(right), str(wrong), "--json", str(out), "--timeout", "120"]) == 0
    table = capsys.readouterr().out
    rows = [line.split(None, 2) for line in table.splitlines()]
    assert [str(right), "kd_loss", "pass"] in rows and [str(right), "distillation_loss", "pass"] in rows
    assert [str(wrong), "distillation_loss", "not done"] in rows
    fail = next(r for r in rows if r[:2] == [str(wrong), "kd_loss"])[2]
    assert fail.startswith("fail: kd_loss: the soft term is off by a factor T^2 (= 16 at T=4)"), fail
    assert f"{right}: 2 of 2 pass" in table and f"{wrong}: 0 of 2 pass" in table

    grades = json.loads(out.read_text(encoding="utf-8"))["notebooks"]
    assert [(g["notebook"], g["status"], g["score"]) for g in grades] == [
        (str(right), "graded", "2 of 2 pass"), (str(wrong), "graded", "0 of 2 pass")]
    kd, mix = grades[1]["exercises"]
    assert (kd["exercise"], kd["checker"], kd["cell"], kd["result"]) == ("kd_loss", "check_kd_loss", 3, "fail")
    assert kd["message"] in fail and "got 0.135096, expected 2.16154" in kd["details"]
    assert mix["result"] == "not done" and "is not written yet" in mix["details"]  # the lesson went on with the reference


CHECKERS = '''def check_answer(x):
    assert x == 42, "the answer is wrong: it should be 42\\n(more detail)"
    print("✓ right")


def check_positive(x):
    assert x > 0, "x must be positive"
    print("✓ positive")'''


def test_endless_and_dying_notebooks_are_stopped_and_the_next_one_graded(tmp_path):
    loop = write(tmp_path / "loop.ipynb", CHECKERS, "answer = 42", "check_answer(answer)", "while True:\n    pass",
                 "check_answer(answer + 0)")
    died = write(tmp_path / "died.ipynb", CHECKERS, "import os\nos._exit(1)", "check_answer(42)")
    plain = write(
        tmp_path / "plain.ipynb", CHECKERS,
        "check_answer(41)",
        "check_positive(1)\ncheck_positive(-1)\ncheck_answer(42)",
        '# YOUR CODE HERE\nraise NotImplementedError("Exercise: name it")',
        "check_answer(diagnosis_a)",
        "check_answer(undefined_thing)",
        "check_positive([1])",
    )
    from kdcourse.grade import grade

    g_loop, g_died, g_plain = grade([loop, died, plain], timeout=10)
    assert g_loop.status == "timeout" and "in cell 4" in g_loop.detail
    assert results(g_loop) == {"answer": "pass", "answer#2": "timeout"}
    assert g_died.status == "error" and results(g_died) == {"answer": "error: the kernel died in cell 2"}
    assert g_plain.status == "graded"
    assert results(g_plain) == {
        "answer": "fail: the answer is wrong: it should be 42",
        "positive": "pass",
        "positive#2": "fail: x must be positive",
        "answer#2": "error: not run: line 2 of the cell raised AssertionError",
        "diagnosis_a": "not done",
        "undefined_thing": "error: NameError: name 'undefined_thing' is not defined",
        "positive#3": "error: TypeError: '>' not supported between instances of 'list' and 'int'",
    }


# ------------------------------------------------------------------ nbgrader export


def test_nbgrader_export_marks_solution_and_autograded_test_cells(tmp_path, capsys):
    assert main(["nbgrader-export", str(tmp_path), "--solutions", str(ROOT / "solutions"), "--points", "2"]) == 0
    assert "nbgrader generate_assignment" in capsys.readouterr().out
    assert "c.Execute.timeout" in (tmp_path / "nbgrader_config.py").read_text(encoding="utf-8")
    for solution in sorted((ROOT / "solutions").glob("[0-9][0-9]*_*.ipynb")):
        nb = nbformat.read(tmp_path / "source" / solution.stem / solution.name, as_version=4)
        meta = [c.metadata["nbgrader"] for c in nb.cells if "nbgrader" in c.metadata]
        assert all(m["schema_version"] == 3 for m in meta)
        assert len({m["grade_id"] for m in meta}) == len(meta), solution.name
        tests = [m for m in meta if m["grade"]]
        assert all(m["locked"] and not m["solution"] and m["points"] == 2 for m in tests)
        assert len(tests) == len(find_exercises(nbformat.read(solution, as_version=4))), solution.name
        assert not any("answer-key" in c.metadata.get("tags", []) or c.source.startswith("### Answer key")
                       for c in nb.cells), f"{solution.name}: the answer key must stay with the teacher"
        for cell in nb.cells:
            assert "NBVAL_" not in cell.source and cell.get("outputs", []) == []
            is_solution = "nbgrader" in cell.metadata and cell.metadata["nbgrader"]["solution"]
            assert ("### BEGIN SOLUTION" in cell.source) == is_solution
    nb = nbformat.read(tmp_path / "source/02_distillation_loss/02_distillation_loss.ipynb", as_version=4)
    graded = [(c.metadata["nbgrader"]["grade_id"], c.source.splitlines()[-1].strip())
              for c in nb.cells if "nbgrader" in c.metadata]
    assert graded == [("kd_loss", "### END SOLUTION"), ("check_kd_loss", "check_kd_loss(kd_loss)"),
                      ("distillation_loss", "### END SOLUTION"),
                      ("check_distillation_loss", "check_distillation_loss(distillation_loss)")]
    assert "    # Exercise: implement kd_loss with F.kl_div" in nb.cells[4].source


def _stubs_alike(source: str) -> str:
    """nbgrader's stub and ours, written the same way (ours carries the hint in its message)."""
    source = re.sub(r"^\s*# Exercise: .*\n(?=\s*# YOUR CODE HERE)", "", source, flags=re.MULTILINE)
    return re.sub(r"raise NotImplementedError\((\"Exercise: .*\")?\)", "raise NotImplementedError", source)


def _nbgrader_env() -> dict | None:
    """An environment in which ``python -m nbgrader`` runs: this one when nbgrader is installed
    (``pip install 'kdcourse[nbgrader]'``), or with ``KDCOURSE_NBGRADER_PATH`` (where ``make test``
    installs it aside) on the path; None when neither has it."""
    import importlib.util
    import os

    if importlib.util.find_spec("nbgrader") is not None:
        return dict(os.environ)
    aside = os.environ.get("KDCOURSE_NBGRADER_PATH")
    if aside and (Path(aside) / "nbgrader").is_dir():
        return {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(aside).resolve()), os.environ.get("PYTHONPATH", "")])}
    return None


def test_nbgrader_generate_assignment_releases_the_lesson(tmp_path):
    env = _nbgrader_env()
    if env is None:
        pytest.skip("nbgrader is not installed: `make test` installs it aside, or pip install 'kdcourse[nbgrader]'")
    lesson = "02_distillation_loss"
    assert main(["nbgrader-export", str(tmp_path), "--solutions", str(ROOT / "solutions")]) == 0
    run = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", lesson, "--no-db", "--force"],
                         check=False, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    released = nbformat.read(tmp_path / "release" / lesson / f"{lesson}.ipynb", as_version=4)
    ours = make_exercise(nbformat.read(ROOT / "solutions" / f"{lesson}.ipynb", as_version=4))  # = lessons/02_...
    assert [(c.cell_type, _stubs_alike(c.source)) for c in released.cells] == [
        (c.cell_type, _stubs_alike(c.source)) for c in ours.cells]
    assert all(c.metadata["nbgrader"]["checksum"] for c in released.cells if "nbgrader" in c.metadata)
