"""The README's demo runs end to end (short)."""

from graphad import demo


def test_demo_runs(tmp_path, capsys):
    demo.main(["--steps", "30", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "max |difference| vs Session = 0.00e+00" in out
    assert "bit for bit: True" in out
    assert (tmp_path / "spirals.onnx").exists() and (tmp_path / "spirals_train_step.onnx").exists()
