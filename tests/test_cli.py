"""The command line: python -m kdcourse compare / cache-benchmark."""

import json

from kdcourse.__main__ import main


def test_compare_writes_the_documented_json(tmp_path, capsys):
    out = tmp_path / "out.json"
    assert main(["compare", "--methods", "baseline,kd", "--seeds", "2", "--json", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "baseline" in printed and "kd" in printed and "+-" in printed
    results = json.loads(out.read_text())
    for method in ("baseline", "kd"):
        r = results[method]
        assert set(r) >= {"mean", "std", "runs"}
        assert len(r["runs"]) == 2 and all(0.0 <= a <= 1.0 for a in r["runs"])
        assert abs(r["mean"] - sum(r["runs"]) / 2) < 1e-9


def test_compare_rejects_unknown_method(capsys):
    assert main(["compare", "--methods", "baseline,magic", "--seeds", "1", "--quiet"]) == 2
    assert "unknown method" in capsys.readouterr().err
