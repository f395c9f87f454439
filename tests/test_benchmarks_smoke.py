"""Smoke test of benchmarks/: every workload runs once at a tiny size in graphad and in each
installed peer, and graphad's results agree with the peers'. No timing is asserted."""

import json
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import harness, run  # noqa: E402

GENERIC = [m for m in run.workload_modules() if hasattr(m, "IMPLS") and not hasattr(m, "run")]
PEERS = ("graphad", "numpy", "jax", "torch", "pytensor")


def _case_ids():
    return [(m, p) for m in GENERIC for p in PEERS if p in m.IMPLS]


@pytest.mark.parametrize("mod,peer", _case_ids(), ids=lambda x: getattr(x, "ID", x))
def test_workload_runs_and_agrees(mod, peer):
    if not harness.installed(peer):
        pytest.skip(f"{peer} is not installed")
    cfg = mod.config("tiny")
    case = mod.IMPLS[peer](cfg)
    case.step()
    for fn in (case.value, case.grad):
        if fn is not None:
            fn()
    if case.check is None:
        return
    got = case.check()
    ref = mod.IMPLS["numpy"](cfg).check()
    assert len(got) == len(ref)
    for a, b in zip(got, ref):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                                   rtol=2e-4, atol=2e-5 * max(1.0, float(np.max(np.abs(b)))))


def test_timing_protocol_and_memory_helpers():
    calls = []
    med, n = harness.median_time(lambda: calls.append(1), harness.TINY)
    assert med >= 0 and n >= 1 and len(calls) >= n + harness.TINY.warmup
    with harness.PeakDelta() as m:
        np.ones(1 << 16).sum()
    assert m.mib is None or m.mib >= 0


def test_runner_end_to_end_tiny(tmp_path, capsys):
    out = tmp_path / "bench.json"
    results = run.main(["--tiny", "--only", "W2,W5", "--peers", "graphad,numpy",
                        "--json", str(out)])
    text = capsys.readouterr().out
    assert "W2 tiny_grad" in text and "targets" in text
    data = json.loads(out.read_text())
    ids = [w["id"] for w in data["workloads"]]
    assert ids == ["W2", "W5", "W5-hess"] == [r["id"] for r in results]
    w2 = data["workloads"][0]
    assert w2["systems"]["graphad"]["median_s"] > 0
    assert "numpy" in w2["ratios"]
    assert w2["systems"]["graphad"]["check_error"] < 1e-3


def test_compile_workload_tiny():
    from benchmarks import w4_compile  # noqa: PLC0415

    res = w4_compile.run("tiny", harness.TINY, ("graphad",))
    row = res["sizes"]["20"]["graphad"]
    assert "error" not in row, row
    assert row["median_s"] > 0 and row["phases"]


def test_gpu_workload_skips_without_cuda():
    from benchmarks import w6_gpu  # noqa: PLC0415
    from graphad.devices import cuda_problem  # noqa: PLC0415

    if cuda_problem() is None:
        pytest.skip("a CUDA provider is usable here")
    res = w6_gpu.run("tiny", harness.TINY, ("graphad",))
    assert "skipped" in res["note"]
