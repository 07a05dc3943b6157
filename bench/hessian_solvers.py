"""Benchmark: the pipeline's Lanczos top-5 vs a plain re-implementation of PyHessian's power iteration.

Same model (a ~0.25M-parameter conv net with BatchNorm, eval mode), same random batches, same gradient
graph reuse. Prints, per batch, CPU time and HVP count of both and their relative error against a tight
Lanczos reference; the cost of one HVP in gradient evaluations; and the accuracy of both against the exact
Hessian (torch.func.hessian) of a ~1.7k-parameter MLP. Target: pipeline top-5 at the same accuracy in at
most a third of PyHessian's time. Times are CPU seconds of this process (one torch thread, one BLAS
thread), since the machines are shared; wall time follows them when the machine is idle.
Run: PYTHONPATH=src python bench/hessian_solvers.py [--batches 3]
"""

from __future__ import annotations

import os

# ARPACK's vector work goes through OpenBLAS, whose idle threads spin and steal CPU from torch
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.func import functional_call, hessian  # noqa: E402

from vitwork.hessian import HessianOperator, batch_spectrum, lanczos, power_iteration, regularised_loss  # noqa: E402

WD = 5e-4


def conv_net(classes: int = 100) -> torch.nn.Module:
    """A small CIFAR-style conv net with BatchNorm (~0.2M parameters)."""
    def block(cin, cout, stride):
        """Conv-BN-ReLU."""
        return [torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False), torch.nn.BatchNorm2d(cout), torch.nn.ReLU()]
    return torch.nn.Sequential(*block(3, 32, 1), *block(32, 64, 2), *block(64, 96, 2), *block(96, 128, 2),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(128, classes))


def random_batches(count: int, batch: int, classes: int, size: int, seed: int):
    """Random normalised images with label-smoothed/mixed soft targets."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        x = torch.randn(batch, 3, size, size, generator=gen)
        a, b = torch.randint(0, classes, (2, batch), generator=gen)
        lam = torch.rand(batch, 1, generator=gen)
        t = lam * F.one_hot(a, classes) + (1 - lam) * F.one_hot(b, classes)
        out.append((x, 0.9 * t + 0.1 / classes))
    return out


def warm_up(model, batches, steps: int = 30):
    """A few SGD steps so the spectrum looks like a partly trained model's, then running BN stats."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for step in range(steps):
        x, t = batches[step % len(batches)]
        opt.zero_grad()
        F.cross_entropy(model(x), t).backward()
        opt.step()
    return model.eval()


# --- plain PyHessian procedure (list-of-tensors style), written here as the baseline -------------------
def pyhessian_top_k(model, x, t, weight_decay, k=5, tol=1e-3, max_iter=100, seed=0):
    """PyHessian's eigenvalues(): deflated power iteration with a relative-change stop, graph reused."""
    params = [p for p in model.parameters() if p.requires_grad]
    loss = regularised_loss(model, x, t, weight_decay)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    gen = torch.Generator().manual_seed(seed)

    def dot(xs, ys):
        """Sum of elementwise products over the parameter list."""
        return sum((a * b).sum() for a, b in zip(xs, ys))

    def normalise(vs):
        """Unit vector over the parameter list."""
        norm = dot(vs, vs).sqrt()
        return [v / (norm + 1e-6) for v in vs]

    eigenvalues, eigenvectors, hvps = [], [], 0
    for _ in range(k):
        v = normalise([torch.randn(p.shape, generator=gen) for p in params])
        eigenvalue = None
        for _ in range(max_iter):
            for u in eigenvectors:
                c = dot(v, u)
                v = [a - c * b for a, b in zip(v, u)]
            v = normalise(v)
            hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
            hvps += 1
            tmp = dot(hv, v).item()
            v = normalise(hv)
            if eigenvalue is not None and abs(eigenvalue - tmp) / (abs(eigenvalue) + 1e-6) < tol:
                eigenvalue = tmp
                break
            eigenvalue = tmp
        eigenvalues.append(eigenvalue)
        eigenvectors.append(v)
    return np.asarray(eigenvalues), hvps
# ------------------------------------------------------------------------------------------------------


def gradient_seconds(model, x, t, repeats: int = 5) -> float:
    """Median wall time of one plain gradient evaluation (forward + backward)."""
    params = [p for p in model.parameters() if p.requires_grad]
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        torch.autograd.grad(regularised_loss(model, x, t, WD), params)
        times.append(time.process_time() - t0)
    return statistics.median(times)


def hvp_seconds(model, x, t, repeats: int = 10) -> tuple[float, float]:
    """(graph build time, median time of one HVP through the reused graph)."""
    t0 = time.process_time()
    op = HessianOperator(model, x, t, weight_decay=WD)
    build = time.process_time() - t0
    v = torch.randn(op.size)
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        op.hvp(v)
        times.append(time.process_time() - t0)
    return build, statistics.median(times)


def rel_err(values, reference) -> float:
    """Largest relative error of sorted-by-magnitude values against the reference."""
    order = lambda a: np.asarray(a)[np.argsort(-np.abs(a))]  # noqa: E731
    return float(np.max(np.abs(order(values) - order(reference)) / np.abs(order(reference))))


def time_pipeline(model, x, t, k, ncv):
    """The pipeline's top-k: build the operator and run Lanczos; (values, hvps, seconds, converged)."""
    t0 = time.process_time()
    op = HessianOperator(model, x, t, weight_decay=WD)
    result = lanczos(op, "top_magnitude", k=k, tol=1e-3, ncv=ncv)
    return result.eigenvalues, result.hvps, time.process_time() - t0, result.converged


def time_pyhessian(model, x, t, k, tol=1e-3):
    """PyHessian's top-k including its graph build; (values, hvps, seconds)."""
    t0 = time.process_time()
    values, hvps = pyhessian_top_k(model, x, t, WD, k=k, tol=tol, max_iter=1000)
    return values, hvps, time.process_time() - t0


def exact_accuracy(k: int = 5, seeds=(0, 1, 2)):
    """Relative errors of both solvers against torch.func.hessian on a tiny float64 MLP."""
    rows = []
    for seed in seeds:
        torch.manual_seed(seed)
        mlp = torch.nn.Sequential(torch.nn.Linear(12, 32), torch.nn.GELU(), torch.nn.Linear(32, 32),
                                  torch.nn.Tanh(), torch.nn.Linear(32, 6)).double().eval()
        x = torch.randn(24, 12, dtype=torch.float64)
        t = torch.softmax(2 * torch.randn(24, 6, dtype=torch.float64), dim=1)
        names, shapes = zip(*[(n, p.shape) for n, p in mlp.named_parameters()])

        def loss(flat):
            """Loss as a function of the flat parameters."""
            ps = dict(zip(names, [c.view(s) for c, s in zip(flat.split([s.numel() for s in shapes]), shapes)]))
            reg = 0.5 * WD * sum(p.pow(2).sum() for p in ps.values() if p.ndim > 1)
            return F.cross_entropy(functional_call(mlp, ps, (x,)), t) + reg

        flat = torch.cat([p.detach().reshape(-1) for p in mlp.parameters()])
        exact = np.linalg.eigvalsh(hessian(loss)(flat).numpy())
        top = exact[np.argsort(-np.abs(exact))][:k]
        op = HessianOperator(mlp, x, t, weight_decay=WD)
        lz = lanczos(op, "top_magnitude", k=k, tol=1e-3)
        pw = power_iteration(op, k=k, tol=1e-3, seed=seed)
        ends = lanczos(op, "most_negative", k=1, tol=1e-3, ncv=20)
        rows.append((seed, rel_err(lz.eigenvalues, top), lz.hvps, rel_err(pw.eigenvalues, top), pw.hvps,
                     abs(ends.eigenvalues[0] - exact[0]) / abs(exact[0]), ends.hvps))
    return rows


def main():
    """Run the benchmark and print the side-by-side table and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--ncv", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    batches = random_batches(args.batches, args.batch_size, 100, args.image_size, seed=0)
    model = warm_up(conv_net(), random_batches(4, args.batch_size, 100, args.image_size, seed=1))
    print(f"model: conv net, {sum(p.numel() for p in model.parameters())} params, eval mode, "
          f"batch {args.batch_size} x 3 x {args.image_size}^2, k={args.k}, tol=1e-3, threads=1")

    x, t = batches[0]
    grad_s = gradient_seconds(model, x, t)
    build_s, hvp_s = hvp_seconds(model, x, t)
    print(f"one gradient {grad_s * 1e3:.1f} ms; graph build {build_s * 1e3:.1f} ms "
          f"({build_s / grad_s:.2f} grads); one HVP (graph reused) {hvp_s * 1e3:.1f} ms = {hvp_s / grad_s:.2f} grads")

    print("time ratio = lanczos / pyhessian(tol 1e-3); the last column: lanczos / pyhessian(tol 1e-5), which "
          "is what power iteration needs to approach Lanczos' accuracy")
    print(f"{'batch':>5} | {'pyhessian s':>11} {'hvps':>5} {'rel err':>8} | {'lanczos s':>9} {'hvps':>5} "
          f"{'rel err':>8} {'conv':>5} | {'time ratio':>10} {'hvp ratio':>9} | {'pyh 1e-5 s':>10} {'hvps':>5} "
          f"{'rel err':>8} {'ratio':>6}")
    ratios = []
    for i, (x, t) in enumerate(batches):
        reference = lanczos(HessianOperator(model, x, t, weight_decay=WD), "top_magnitude", k=args.k,
                            tol=1e-9, ncv=3 * args.k).eigenvalues
        ph_vals, ph_hvps, ph_s = time_pyhessian(model, x, t, args.k)
        lz_vals, lz_hvps, lz_s, lz_conv = time_pipeline(model, x, t, args.k, args.ncv)
        tight_vals, tight_hvps, tight_s = time_pyhessian(model, x, t, args.k, tol=1e-5)
        ratios.append((lz_s / ph_s, lz_hvps / ph_hvps, lz_s / tight_s))
        print(f"{i:>5} | {ph_s:>11.2f} {ph_hvps:>5} {rel_err(ph_vals, reference):>8.1e} | {lz_s:>9.2f} "
              f"{lz_hvps:>5} {rel_err(lz_vals, reference):>8.1e} {str(lz_conv):>5} | "
              f"{lz_s / ph_s:>10.3f} {lz_hvps / ph_hvps:>9.3f} | {tight_s:>10.2f} {tight_hvps:>5} "
              f"{rel_err(tight_vals, reference):>8.1e} {lz_s / tight_s:>6.3f}")
    time_ratio = statistics.mean(r[0] for r in ratios)
    print(f"pipeline / pyhessian(1e-3): time {time_ratio:.3f}, HVPs {statistics.mean(r[1] for r in ratios):.3f} "
          f"(target time <= 0.333: {'met' if time_ratio <= 1 / 3 else 'NOT met'}); "
          f"pipeline / pyhessian(1e-5): time {statistics.mean(r[2] for r in ratios):.3f}")

    t0 = time.process_time()
    rows = batch_spectrum(model, *batches[0], weight_decay=WD, k=args.k, max_hvps=300)
    ends = {r["which"]: r for r in rows if r["which"] != "top_magnitude"}
    print(f"full batch_spectrum (top-{args.k} + largest + most negative): {time.process_time() - t0:.2f} s, "
          f"{rows[0]['hvps_total']} HVPs; most negative {ends['most_negative']['value']:.3e} "
          f"(converged {ends['most_negative']['converged']}, {ends['most_negative']['hvps']} HVPs), "
          f"largest {ends['largest']['value']:.3e}")

    print("exact-Hessian check (1.7k-param MLP, float64): max rel err of top-5 | most negative")
    for seed, lz_err, lz_h, pw_err, pw_h, neg_err, neg_h in exact_accuracy(args.k):
        print(f"  seed {seed}: lanczos {lz_err:.1e} ({lz_h} HVPs)  power {pw_err:.1e} ({pw_h} HVPs)  "
              f"SA lanczos {neg_err:.1e} ({neg_h} HVPs)")


if __name__ == "__main__":
    main()
