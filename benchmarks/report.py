"""Printing: one table per workload (medians, ratios graphad/peer, extras) and the target summary
of shared/BENCHMARKS.md."""


def fmt_time(s):
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1.0:
        return f"{s * 1e3:.3f} ms"
    return f"{s:.2f} s"


def _fmt_mib(m):
    return "-" if m is None else f"{m:.1f} MiB"


def print_workload(res):
    cfg = ", ".join(f"{k}={v}" for k, v in res.get("config", {}).items())
    print(f"\n== {res['id']} {res['title']} ({cfg})")
    if res.get("note"):
        print(f"   {res['note']}")
    if "rows" in res:  # custom layout (W4)
        for line in res["rows"]:
            print("   " + line)
    else:
        _print_systems(res)
    for peer, why in res.get("skipped", {}).items():
        print(f"   {peer}: skipped ({why})")
    for k, v in res.get("extras", {}).items():
        print(f"   {k}: {v}")


def _print_systems(res):
    head = (f"   {'system':9s} {'build':>10s} {'first call':>11s} {'median':>11s} "
            f"{'graphad/x':>9s} {'calls':>7s} {'check err':>9s}")
    print(head)
    for peer, row in res["systems"].items():
        if "error" in row:
            print(f"   {peer:9s} ERROR {row['error'][:150]}")
            continue
        ratio = res["ratios"].get(peer)
        err = row.get("check_error")
        print(f"   {peer:9s} {fmt_time(row['build_s']):>10s} {fmt_time(row['first_call_s']):>11s} "
              f"{fmt_time(row['median_s']):>11s} {'' if ratio is None else f'{ratio:.2f}':>9s} "
              f"{row['calls']:>7d} {'' if err is None else f'{err:.1e}':>9s}")
    for peer, row in res["systems"].items():
        if "cheap_gradient_ratio" in row:
            print(f"   cheap-gradient ratio {peer}: time(value and grad) "
                  f"{fmt_time(row['grad_median_s'])} / time(value) "
                  f"{fmt_time(row['value_median_s'])} = {row['cheap_gradient_ratio']:.2f}")
        if "steady_peak_mib" in row:
            print(f"   memory {peer}: peak RSS growth over the first call (compile + run) "
                  f"{_fmt_mib(row['first_call_peak_mib'])}, over the timed calls "
                  f"{_fmt_mib(row['steady_peak_mib'])}")


# id -> (description, function(result) -> (measured text, met: bool | None))
def _best_ratio(res):
    ratios = res.get("ratios", {})
    if not ratios:
        return None, None
    peer = max(ratios, key=ratios.get)
    return peer, ratios[peer]


def _t_best(limit):
    def check(res):
        peer, r = _best_ratio(res)
        if r is None:
            return "no peer measured", None
        return f"{r:.2f} vs best peer ({peer})", r <= limit

    return check


def _t_w1(res):
    text, met = _t_best(1.0)(res)
    gd = res["systems"].get("graphad", {}).get("median_s")
    lim = res.get("extras", {}).get("sgemm_limit_s")
    if gd and lim:
        text += f"; {gd / lim:.2f}x the sgemm limit"
        met = (met is not False) and gd / lim <= 1.15
    return text, met


def _t_w3(res):
    ratios = res.get("ratios", {})
    parts, met = [], None
    for peer, r in sorted(ratios.items()):
        limit = 2.0 if peer == "jax" else 1.0
        parts.append(f"{r:.2f} vs {peer} (<= {limit})")
        met = (met is not False) and r <= limit
    return "; ".join(parts) or "no peer measured", met


def _t_w4(res):
    return res.get("target_text", "not measured"), res.get("target_met")


TARGETS = {
    "W1": ("<= 1.0 vs best peer and <= 1.15x sgemm limit", _t_w1),
    "W2": ("<= 1.5 vs best peer", _t_best(1.5)),
    "W3": ("<= 2.0 vs JAX, <= 1.0 vs every other peer", _t_w3),
    "W4": ("<= 0.5 vs JAX at 500 layers; 50,000 layers complete", _t_w4),
    "W5": ("<= 1.5 vs best peer", _t_best(1.5)),
    "W5-hess": ("<= 1.5 vs best peer", _t_best(1.5)),
    "W6": (">= 0.9x JAX-GPU throughput (ratio <= 1.11)", _t_best(1 / 0.9)),
}


def target_summary(results):
    lines = ["\n== targets (graphad / peer, this run; lower is better)"]
    for res in results:
        spec = TARGETS.get(res["id"])
        if spec is None:
            continue
        text, met = spec[1](res)
        mark = {True: "met", False: "MISSED", None: "n/a"}[met]
        lines.append(f"   {res['id']:8s} {mark:6s} {text}   [target {spec[0]}]")
    return "\n".join(lines)
