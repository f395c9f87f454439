"""W1 mlp_train: MLP 784-512-512-10, ReLU, softmax cross-entropy (mean), SGD lr 0.01; one full
training step with the parameters kept as state, in graphad and each peer.
"""

import time

import numpy as np

from .harness import Case

ID, TITLE = "W1", "mlp_train"
LR = 0.01


def config(mode):
    if mode == "tiny":
        return {"batch": 8, "sizes": (12, 16, 16, 10)}
    return {"batch": 256, "sizes": (784, 512, 512, 10)}


def make_data(cfg, seed=0):
    rng = np.random.default_rng(seed)
    b, sizes = cfg["batch"], cfg["sizes"]
    x = rng.standard_normal((b, sizes[0])).astype(np.float32)
    y = np.eye(sizes[-1], dtype=np.float32)[rng.integers(0, sizes[-1], b)]
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        params.append((rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)).astype(np.float32))
        params.append(np.zeros(n_out, np.float32))
    return x, y, params


def flops(cfg):
    """Floating-point operations of the GEMMs of one step (forward, dW, dX except layer 1)."""
    b, s = cfg["batch"], cfg["sizes"]
    fwd = sum(2 * b * i * o for i, o in zip(s[:-1], s[1:]))
    return 3 * fwd - 2 * b * s[0] * s[1]


def gemm_shapes(cfg):
    """(m, k, n) of every GEMM in a step: forward, then dW = Xᵀ·dY and dX = dY·Wᵀ."""
    b, s = cfg["batch"], cfg["sizes"]
    out = []
    for i, (n_in, n_out) in enumerate(zip(s[:-1], s[1:])):
        out.append((b, n_in, n_out))
        out.append((n_in, b, n_out))
        if i:
            out.append((b, n_out, n_in))
    return out


def sgemm_limit(cfg, repeat=20):
    """(seconds, GFLOP/s): numpy time of exactly this step's GEMMs (median of `repeat`, as
    every other figure; the best of them would flatter the machine on a loaded day)."""
    rng = np.random.default_rng(1)
    mats = [(rng.standard_normal((m, k)).astype(np.float32),
             rng.standard_normal((k, n)).astype(np.float32)) for m, k, n in gemm_shapes(cfg)]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for a, b in mats:
            a @ b
        times.append(time.perf_counter() - t0)
    med = float(np.median(times))
    return med, flops(cfg) / med / 1e9


# ---------------------------------------------------------------------------------------------


def graphad_model(cfg, name="w1_mlp"):
    """(graph, feeds, params, loss, train op) of the MLP step in graphad (W1 and W6 share it)."""
    import graphad as ga  # noqa: PLC0415

    x_np, y_np, p_np = make_data(cfg)
    g = ga.Graph(name)
    with g:
        x = ga.placeholder(x_np.shape, name="x")
        y = ga.placeholder(y_np.shape, name="y")
        params = [ga.Variable(p, name=f"p{i}") for i, p in enumerate(p_np)]
        h = x
        for i in range(0, len(params), 2):
            h = h @ params[i] + params[i + 1]
            if i + 2 < len(params):
                h = ga.relu(h)
        loss = -ga.mean(ga.sum(y * ga.log_softmax(h, axis=-1), axis=-1))
        train = ga.optimizers.SGD(LR).minimize(loss)
    return g, {x: x_np, y: y_np}, params, loss, train


def graphad(cfg):
    import graphad as ga  # noqa: PLC0415

    g, feeds, params, loss, train = graphad_model(cfg)
    with g:
        grads = ga.gradients(loss, params)
    sess = ga.Session(g)
    fetch_step, fetch_vg = [loss, train], [loss, grads]
    return Case(step=lambda: sess.run(fetch_step, feeds)[0],
                value=lambda: sess.run(loss, feeds),
                grad=lambda: sess.run(fetch_vg, feeds),
                check=lambda: _flat(ga.Session(g).run(fetch_vg, feeds)))  # initial values


def _flat(loss_grads):
    loss, grads = loss_grads
    return [np.asarray(loss)] + [np.asarray(g) for g in grads]


def numpy(cfg):
    x, y, params = make_data(cfg)

    def forward(ps):
        hs, zs, h = [x], [], x
        for i in range(0, len(ps), 2):
            z = h @ ps[i] + ps[i + 1]
            zs.append(z)
            h = np.maximum(z, 0) if i + 2 < len(ps) else z
            hs.append(h)
        m = h.max(axis=1, keepdims=True)
        e = np.exp(h - m)
        s = e.sum(axis=1, keepdims=True)
        loss = np.mean(np.log(s[:, 0]) + m[:, 0] - np.sum(y * h, axis=1))
        return loss, hs, zs, e / s

    def value_and_grad(ps):
        loss, hs, zs, p = forward(ps)
        dz = (p - y) / x.shape[0]
        grads = [None] * len(ps)
        for i in range(len(ps) - 2, -1, -2):
            layer = i // 2
            grads[i] = hs[layer].T @ dz
            grads[i + 1] = dz.sum(axis=0)
            if i:
                dz = (dz @ ps[i].T) * (zs[layer - 1] > 0)
        return loss, grads

    state = [p.copy() for p in params]

    def step():
        loss, grads = value_and_grad(state)
        for p, gr in zip(state, grads):
            p -= np.float32(LR) * gr
        return loss

    return Case(step=step, value=lambda: forward(state)[0], grad=lambda: value_and_grad(state),
                check=lambda: _flat(value_and_grad(params)))


def jax(cfg):
    import jax as jx  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    x_np, y_np, p_np = make_data(cfg)
    x, y = jnp.asarray(x_np), jnp.asarray(y_np)

    def loss_fn(ps, x, y):
        h = x
        for i in range(0, len(ps), 2):
            h = h @ ps[i] + ps[i + 1]
            if i + 2 < len(ps):
                h = jnp.maximum(h, 0)
        return -jnp.mean(jnp.sum(y * jx.nn.log_softmax(h, axis=-1), axis=-1))

    vg = jx.jit(jx.value_and_grad(loss_fn))
    value = jx.jit(loss_fn)

    @jx.jit
    def train(ps, x, y):
        loss, grads = jx.value_and_grad(loss_fn)(ps, x, y)
        return [p - LR * gr for p, gr in zip(ps, grads)], loss

    state = {"ps": [jnp.asarray(p) for p in p_np]}

    def step():
        state["ps"], loss = train(state["ps"], x, y)
        return loss.block_until_ready()

    init = [jnp.asarray(p) for p in p_np]
    return Case(step=step, value=lambda: value(state["ps"], x, y).block_until_ready(),
                grad=lambda: jx.block_until_ready(vg(state["ps"], x, y)),
                check=lambda: _flat(jx.device_get(vg(init, x, y))))


def torch(cfg):
    import torch as th  # noqa: PLC0415

    x_np, y_np, p_np = make_data(cfg)
    x, y = th.from_numpy(x_np), th.from_numpy(y_np)
    params = [th.tensor(p, requires_grad=True) for p in p_np]

    def loss_fn(ps):
        h = x
        for i in range(0, len(ps), 2):
            h = h @ ps[i] + ps[i + 1]
            if i + 2 < len(ps):
                h = th.relu(h)
        return -th.mean(th.sum(y * th.log_softmax(h, dim=-1), dim=-1))

    def vg(ps):
        loss = loss_fn(ps)
        return loss, th.autograd.grad(loss, ps)

    def step():
        loss, grads = vg(params)
        with th.no_grad():
            for p, gr in zip(params, grads):
                p.sub_(LR * gr)
        return loss.item()

    def value():
        with th.no_grad():
            return loss_fn(params).item()

    def check():
        fresh = [th.tensor(p, requires_grad=True) for p in p_np]
        loss, grads = vg(fresh)
        return [loss.detach().numpy()] + [gr.numpy() for gr in grads]

    return Case(step=step, value=value, grad=lambda: vg(params), check=check)


IMPLS = {"graphad": graphad, "jax": jax, "torch": torch, "numpy": numpy}


def extras(cfg, mode, result):
    """The sgemm limit: numpy's time for exactly this step's GEMMs on this machine."""
    lim, gflops = sgemm_limit(cfg, repeat=3 if mode == "tiny" else 30)
    out = {"step_gflop": round(flops(cfg) / 1e9, 4), "sgemm_gflops": round(gflops, 1),
           "sgemm_limit_s": lim}
    gd = result["systems"].get("graphad", {}).get("median_s")
    if gd:
        out["graphad_over_sgemm_limit"] = round(gd / lim, 3)
    return out
