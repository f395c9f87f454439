"""Timing protocol shared by every workload: build/compile timed once, 3 warm-up calls, then the
median of repeated calls over a minimum duration (interleaved across systems, so that a shared
machine's changing load hits them alike); peak-RSS deltas; which peers are installed.
"""

import gc
import importlib.util
import os
import statistics
import time

PEERS = ("graphad", "jax", "torch", "numpy", "pytensor")
_MODULE_OF = {"jax": "jax", "torch": "torch", "pytensor": "pytensor", "numpy": "numpy",
              "graphad": "graphad"}


def preimport(peer):
    """Import the peer's package now, so that its import time is not counted as build time."""
    importlib.import_module(_MODULE_OF[peer])
    if peer == "jax":
        import jax  # noqa: PLC0415

        jax.numpy.zeros(1).block_until_ready()  # backend start-up


def installed(peer):
    """True when the peer's package can be imported here."""
    return importlib.util.find_spec(_MODULE_OF[peer]) is not None


class Case:
    """One system's implementation of a workload, ready to run.

    `step()` is the timed call; `value()` and `grad()` (optional) the forward-only call and the
    value-and-gradient call of the cheap-gradient ratio time(grad) / time(value); `check()`
    (optional, called first, on the initial state) returns numpy arrays compared across systems.
    """

    def __init__(self, step, value=None, grad=None, check=None, note=""):
        self.step, self.value, self.grad, self.check, self.note = step, value, grad, check, note


class Budget:
    """How long to measure: `min_time` seconds of repeated calls (at least `min_calls`)."""

    def __init__(self, min_time=2.0, min_calls=5, warmup=3, max_calls=1_000_000):
        self.min_time, self.min_calls, self.warmup, self.max_calls = (
            min_time, min_calls, warmup, max_calls)


FULL = Budget(2.0, 5)
QUICK = Budget(0.3, 3)
TINY = Budget(0.0, 1, warmup=1, max_calls=1)


def median_time(fn, budget):
    """(median seconds, number of calls) of `fn()` after `budget.warmup` warm-up calls.

    Calls are timed one by one; a batch is used only when one call is under 20 µs, where the
    clock's own cost would show (then the median is over batches, divided by the batch size).
    """
    for _ in range(budget.warmup):
        fn()
    t0 = time.perf_counter()
    fn()
    one = time.perf_counter() - t0
    batch = 1 if one > 20e-6 else 50
    samples = []
    start = time.perf_counter()
    gc_was = gc.isenabled()
    gc.disable()
    try:
        while (len(samples) < budget.min_calls
               or time.perf_counter() - start < budget.min_time):
            t0 = time.perf_counter()
            for _ in range(batch):
                fn()
            samples.append((time.perf_counter() - t0) / batch)
            if len(samples) * batch >= budget.max_calls:
                break
    finally:
        if gc_was:
            gc.enable()
    return statistics.median(samples), len(samples) * batch


class Series:
    """One timed callable inside an interleaved measurement (see `interleaved`)."""

    def __init__(self, label, fn):
        self.label, self.fn, self.samples, self.batch = label, fn, [], 1

    def warm(self, budget):
        for _ in range(budget.warmup):
            self.fn()
        t0 = time.perf_counter()
        self.fn()
        self.batch = 1 if time.perf_counter() - t0 > 20e-6 else 50

    def collect(self, seconds, min_samples):
        fn, batch, got = self.fn, self.batch, []
        start = time.perf_counter()
        while len(got) < min_samples or time.perf_counter() - start < seconds:
            t0 = time.perf_counter()
            for _ in range(batch):
                fn()
            got.append((time.perf_counter() - t0) / batch)
        self.samples.extend(got)

    @property
    def median(self):
        return statistics.median(self.samples)

    @property
    def calls(self):
        return len(self.samples) * self.batch


def interleaved(series, budget, rounds=None):
    """Measure several callables side by side: `rounds` rounds, each giving every series an
    equal slice of `budget.min_time`, so that a shared machine's load changes hit all systems
    alike (absolute times drift 2x between minutes on these machines). Each series gets at
    least `budget.min_time` seconds and `budget.min_calls` samples in all."""
    rounds = rounds or (8 if budget.min_time >= 1.0 else 3 if budget.min_time > 0 else 1)
    for s in series:
        s.warm(budget)
    per_round = max(1, -(-budget.min_calls // rounds))
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(rounds):
            for s in series:
                s.collect(budget.min_time / rounds, per_round)
    finally:
        if gc_was:
            gc.enable()
    return series


def timed(fn):
    """(result, seconds) of one call."""
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


# ---------------------------------------------------------------------------------------------
# Memory: Linux only (VmHWM can be reset through /proc/self/clear_refs since Linux 4.0)


def _status_kib(field):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mib():
    kib = _status_kib("VmRSS")
    return None if kib is None else kib / 1024


def reset_peak():
    """Reset the process's peak RSS to its current RSS; False where the kernel does not allow."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_mib():
    kib = _status_kib("VmHWM")
    return None if kib is None else kib / 1024


class PeakDelta:
    """`with PeakDelta() as m: ...` then `m.mib`: peak RSS reached inside the block minus RSS at
    its start (None where it cannot be measured)."""

    def __enter__(self):
        gc.collect()
        self.ok = reset_peak()
        self.start = rss_mib()
        self.mib = None
        return self

    def __exit__(self, *exc):
        peak = peak_mib()
        if self.ok and peak is not None and self.start is not None:
            self.mib = max(0.0, peak - self.start)
        return False


def env_summary():
    """Versions and thread settings printed at the top of a run."""
    import platform  # noqa: PLC0415

    info = {"python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count()}
    for peer in ("numpy", "onnxruntime", "jax", "torch", "pytensor"):
        if importlib.util.find_spec(peer) is not None:
            try:
                mod = importlib.import_module(peer)
                info[peer] = getattr(mod, "__version__", "?")
            except Exception as e:  # a broken install is reported, not fatal
                info[peer] = f"import failed: {e}"
    return info

