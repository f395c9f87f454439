"""onnxruntime micro-measurements behind benchmarks/PROFILE.md (per-call costs, thread pool cost
per node, the slow MatMul with a 1-D right operand). CPU time of this thread, best of repeats, so
that a loaded machine disturbs them less. `python -m benchmarks.ort_facts`
"""

import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper


def cpu_us(fn, reps=7, inner=200, clock=time.thread_time):
    """Best per-call time of `fn` (µs, CPU time of this thread unless `clock` says otherwise)
    over `reps` batches of `inner` calls."""
    for _ in range(min(inner, 50)):
        fn()
    best = float("inf")
    for _ in range(reps):
        t0 = clock()
        for _ in range(inner):
            fn()
        best = min(best, clock() - t0)
    return best / inner * 1e6


def session(nodes, inputs, outputs, threads=1):
    g = helper.make_graph(
        nodes, "m", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def matmul_vector_rhs():
    rng = np.random.default_rng(0)
    print("MatMul with a 1-D right operand versus the same product as (k, 1), 1 thread:")
    for n in (64, 512):
        w = rng.standard_normal((n, n)).astype(np.float32)
        x = rng.standard_normal(n).astype(np.float32)
        node = [helper.make_node("MatMul", ["w", "x"], ["y"])]
        s1 = session(node, [("w", [n, n]), ("x", [n])], ["y"])
        s2 = session(node, [("w", [n, n]), ("x", [n, 1])], ["y"])
        s3 = session([helper.make_node("MatMul", ["x", "w"], ["y"])], [("w", [n, n]), ("x", [n])],
                     ["y"])
        t1 = cpu_us(lambda: s1.run(None, {"w": w, "x": x}))
        t2 = cpu_us(lambda: s2.run(None, {"w": w, "x": x[:, None]}))
        t3 = cpu_us(lambda: s3.run(None, {"w": w, "x": x}))
        print(f"  ({n},{n}) @ ({n},): {t1:8.1f} µs   ({n},{n}) @ ({n},1): {t2:6.1f} µs   "
              f"({n},) @ ({n},{n}): {t3:6.1f} µs")


def chain_per_node():
    """Per-node cost of a chain of tiny elementwise nodes with 1 thread and with the pool (wall
    clock: the pool's cost is waiting, which the calling thread's CPU time does not show)."""
    x = np.ones((4, 3), np.float32)
    print("A chain of N tiny Mul nodes (4x3), run(numpy), best wall-clock time:")
    for threads in (1, 0):
        times = {}
        for n in (1, 33):
            nodes = [helper.make_node("Mul", ["x" if i == 0 else f"t{i - 1}", "x"], [f"t{i}"])
                     for i in range(n)]
            s = session(nodes, [("x", [4, 3])], [f"t{n - 1}"], threads=threads)
            times[n] = cpu_us(lambda s=s, n=n: s.run([f"t{n - 1}"], {"x": x}), reps=15,
                              clock=time.perf_counter)
        per = (times[33] - times[1]) / 32
        label = "1 thread" if threads == 1 else "default threads"
        print(f"  {label:16s}: 1 node {times[1]:.1f} µs, 33 nodes {times[33]:.1f} µs, "
              f"{per:.2f} µs/node")


def binding_costs():
    x = np.ones((4, 3), np.float32)
    s = session([helper.make_node("Neg", ["x"], ["y"])], [("x", [4, 3])], ["y"])
    io = s.io_binding()._iobinding
    dev = ort.OrtDevice.make("cpu", 0)._get_c_device()
    io.bind_input("x", x)
    io.bind_output("y", dev)
    ov = ort.OrtValue.ortvalue_from_shape_and_type((4, 3), np.float32, "cpu", 0)._ortvalue
    c_sess = s._sess
    print("Per-call pieces on a 1-node graph (µs):")
    rows = [
        ("InferenceSession.run(numpy) (Python wrapper)", lambda: s.run(None, {"x": x})),
        ("C session.run(names, feeds)", lambda: c_sess.run(["y"], {"x": x}, None)),
        ("C run_with_iobinding, all prebound", lambda: c_sess.run_with_iobinding(io, None)),
        ("bind_input(name, ndarray)", lambda: io.bind_input("x", x)),
        ("OrtValue.update_inplace(ndarray)", lambda: ov.update_inplace(x)),
        ("bind_ortvalue_input", lambda: io.bind_ortvalue_input("x", ov)),
        ("copy_outputs_to_cpu (1 output)", io.copy_outputs_to_cpu),
        ("bind_output(name, device)", lambda: io.bind_output("y", dev)),
    ]
    for label, fn in rows:
        print(f"  {label:46s} {cpu_us(fn):6.2f}")


def main():
    print(f"onnxruntime {ort.__version__}")
    binding_costs()
    chain_per_node()
    matmul_vector_rhs()


if __name__ == "__main__":
    main()
