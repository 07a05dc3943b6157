"""Hessian eigen-spectra of the training objective through Hessian-vector products (HVPs).

The objective is the paper's: cross-entropy of the logits against the soft targets of an augmented batch
(mixup/cutmix/label smoothing), the NLL part, plus the weight-decay term ``0.5 * wd * sum ||p||^2`` over the
decayed parameters (the recipe's decay set, `vitwork.objective`: every parameter by default, as the authors).
Both parts are reported (``part``: ``objective`` and ``nll``; the trace also ``regulariser``), because with AdamW's
wd = 0.05 the regulariser is most of the objective's trace and hides the NLL's curvature.

The two parts share one gradient graph (the NLL's): the weight-decay term's Hessian is ``wd * diag(mask)`` (mask
1 on decayed coordinates), added exactly. With the default decay set ``all`` (mask = 1) the objective's Hessian is
the NLL's plus ``wd * I``: same eigenvectors, every eigenvalue shifted by exactly wd, and a Krylov space is the same
for both, so one solve on the NLL serves both parts (the largest and smallest eigenvalues by the shift; the top-k
by magnitude too whenever the shift cannot reorder them, checked by `shifted_top_magnitude`, else by its own
solve). The Hutchinson trace with Rademacher probes shifts by exactly ``wd * n_decayed`` for any decay set
(``z_i^2 = 1``). With ``matrices`` the parts have different eigenvectors and each is solved on its own (twice
the HVPs).

The model is evaluated in eval mode. In train mode BatchNorm normalises with the batch's own statistics,
so the loss of one example depends on every other example in the batch: the Hessian then describes the
batch composition as much as the weights and its spectrum changes by orders of magnitude; train-mode BN
also updates its running statistics in place, which breaks torch.func transforms. Dropout and drop-path
are off in eval mode too, so the loss is a deterministic function of the weights.

Fused scaled_dot_product_attention kernels have no double-backward (nor forward-mode) derivative, so every
forward pass here runs under ``sdpa_kernel(SDPBackend.MATH)``.

Measured on CPU (~0.5M parameters, batch 64): one HVP by double backward through a reused gradient graph
costs ~2.3 gradient evaluations (rebuilding the graph ~3.3, forward-over-reverse 3-4), so the operator
builds the graph once per mini-batch. Float32 HVPs agree with float64 to ~1e-6.

Solvers, selectable by name (``SOLVERS``):

- ``"power"``: the paper's (PyHessian's) top-k by magnitude, deflated power iteration that stops when the
  eigenvalue's relative change is below ``tol``; kept for comparability. That stop rule leaves a relative
  error of ~5e-4..5e-3 at tol=1e-3 (12-52 HVPs per eigenvalue).
- ``"lanczos"``: implicitly restarted Lanczos (``scipy.sparse.linalg.eigsh``, ARPACK) on a
  ``LinearOperator`` of HVPs; ARPACK's ``tol`` bounds the relative error of each Ritz value. It gives the
  top-k by magnitude (``which="LM"``), the largest (``"LA"``) and the smallest (``"SA"``) eigenvalue.
  `batch_spectrum` solves all three from one Krylov space (`krylov_spectrum`: Lanczos with full
  reorthogonalisation and ARPACK's convergence test after every HVP) whenever that space fits in
  ``KRYLOV_BASIS_BYTES``. ARPACK tests convergence only after each pass of ``ncv`` vectors (on the demo's
  checkpoints its values came out ~1e-6 accurate where ``tol`` asked for 1e-3) and serves one end per call: on
  16 batches of the demo's checkpoints the separate solves took 1.0-2.2x the HVPs (1.5x in all) for the same
  values (within 1e-5). Larger spaces (paper-scale models at their HVP budget) keep ARPACK's restarted solves,
  which hold ``ncv`` vectors only.

Every eigenvalue row is defined: ``smallest`` is the smallest eigenvalue, negative or not (column ``sign``), and
a solve that runs out of its HVP budget keeps its best estimates, marked ``converged=False`` per value. ARPACK
returns only the Ritz values that converged, so the Lanczos solver keeps the last ``2 * ncv`` vectors it was
asked to multiply and, on no convergence, fills the missing ranks with Rayleigh-Ritz values on their span
(`KrylovWindow`; for the largest or smallest eigenvalue a Ritz value is a one-sided bound). Shifted power
iteration for the smallest eigenvalue is deliberately absent: with a relative-change stop rule it stops early
at wrong values, often of the wrong sign. When the negative eigenvalues are tiny next to the largest, the
smallest can take hundreds of HVPs even for Lanczos, hence the budget.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

import numpy as np
import scipy.linalg
import scipy.sparse.linalg as sla
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from vitwork.objective import decayed_parameter_names, soft_cross_entropy, weight_decay_term

PARTS = ("objective", "nll")
ENDS = ("largest", "smallest")


def decayed_names(model: torch.nn.Module, decay: str | Iterable[str] = "all") -> set[str]:
    """Names of the trainable parameters the weight-decay term covers: a decay set of vitwork.objective, or names."""
    if isinstance(decay, str):
        return decayed_parameter_names(model, decay)
    names = set(decay)
    unknown = names - {n for n, p in model.named_parameters() if p.requires_grad}
    if unknown:
        raise KeyError(f"decay names not among the model's trainable parameters: {sorted(unknown)}")
    return names


@contextlib.contextmanager
def analysis_mode(model: torch.nn.Module, train: bool = False):
    """Put the model in eval (or train) mode with math SDPA; restore its mode and buffers on exit."""
    was_training = {m: m.training for m in model.modules()}
    # train-mode BN updates running statistics in place: give it copies, so neither the model nor the
    # tensors the gradient graph saved are modified (an in-place restore would break double backward)
    originals = [(m, n, b) for m in model.modules() for n, b in m.named_buffers(recurse=False)] if train else []
    for m, n, b in originals:
        setattr(m, n, b.clone())
    model.train(train)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield model
    finally:
        for m, mode in was_training.items():
            m.training = mode
        for m, n, b in originals:
            setattr(m, n, b)


def regularised_loss(model: torch.nn.Module, inputs: torch.Tensor, soft_targets: torch.Tensor,
                     weight_decay: float = 0.0, decay: str | Iterable[str] = "all") -> torch.Tensor:
    """The analysed objective: soft-target cross-entropy plus the weight-decay term (model mode as it is)."""
    names = decayed_names(model, decay)
    loss = soft_cross_entropy(model(inputs), soft_targets)
    return loss + weight_decay_term(model.named_parameters(), weight_decay, names)


class HessianOperator:
    """Hessian of one mini-batch's objective (``part="objective"``) or of its NLL part (``part="nll"``).

    The NLL's gradient graph is built once (``create_graph=True``) and every HVP differentiates it again with
    ``retain_graph=True``; the objective adds the weight-decay term's Hessian ``wd * mask * v`` exactly.
    ``for_part(name)`` gives a view of the other part that shares the graph and the HVP count. ``matvec``
    takes and returns numpy float64 (for scipy); ``hvp`` works on flat torch tensors on the model's device and
    dtype. ``hvps`` counts the products of every view. ``nll``, ``regulariser`` and ``loss`` (their sum) are the
    batch's values at the current weights.
    """

    def __init__(self, model: torch.nn.Module, inputs: torch.Tensor, soft_targets: torch.Tensor,
                 weight_decay: float = 0.0, decay: str | Iterable[str] = "all", train_mode: bool = False,
                 part: str = "objective"):
        if part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {part!r}")
        self.part = part
        self.names, self.params = zip(*[(n, p) for n, p in model.named_parameters() if p.requires_grad])
        self.device, self.dtype = self.params[0].device, self.params[0].dtype
        self.size = sum(p.numel() for p in self.params)
        self._count = [0]  # shared by every view of this operator
        with analysis_mode(model, train=train_mode):
            nll = soft_cross_entropy(model(inputs.to(self.device)), soft_targets.to(self.device))
            grads = torch.autograd.grad(nll, self.params, create_graph=True, allow_unused=True)
        self.grads = [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, self.params)]
        # only gradients that still depend on the weights have a second derivative to take
        self._curved = [i for i, g in enumerate(self.grads) if g.requires_grad]
        decayed = decayed_names(model, decay)
        self.weight_decay = float(weight_decay)
        self.decay_mask = torch.cat([torch.full((p.numel(),), float(n in decayed), device=self.device, dtype=self.dtype)
                                     for n, p in zip(self.names, self.params)])
        self.n_decayed = int(self.decay_mask.sum().item())
        self.nll = float(nll.detach())
        with torch.no_grad():
            self.regulariser = float(weight_decay_term(zip(self.names, self.params), self.weight_decay, decayed))
        self.loss = self.nll + self.regulariser

    @property
    def hvps(self) -> int:
        """HVPs computed so far by this operator and its views."""
        return self._count[0]

    @property
    def shift_is_exact(self) -> bool:
        """True when the objective's Hessian is the NLL's plus ``wd * I`` (no decay, or every parameter decayed)."""
        return self.weight_decay == 0.0 or self.n_decayed == self.size

    def for_part(self, part: str) -> "HessianOperator":
        """A view of the same Hessian for another part (shares the gradient graph and the HVP count)."""
        if part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {part!r}")
        view = copy.copy(self)
        view.part = part
        return view

    def _regulariser_hvp(self, vector: torch.Tensor) -> torch.Tensor:
        """The weight-decay term's Hessian times a flat vector: ``wd * mask * v``."""
        return self.weight_decay * self.decay_mask * vector

    def gradient(self) -> torch.Tensor:
        """Flat gradient of the batch's part (objective or NLL) at the current weights."""
        grad = torch.cat([g.detach().reshape(-1) for g in self.grads])
        if self.part == "nll":
            return grad
        return grad + self._regulariser_hvp(torch.cat([p.detach().reshape(-1) for p in self.params]))

    def hvp(self, vector: torch.Tensor) -> torch.Tensor:
        """The part's Hessian times a flat vector (torch, on the model's device), reusing the gradient graph."""
        vector = vector.to(device=self.device, dtype=self.dtype)
        chunks = [c.view_as(p) for c, p in zip(vector.split([p.numel() for p in self.params]), self.params)]
        out = [None] * len(self.params)
        if self._curved:
            out = torch.autograd.grad([self.grads[i] for i in self._curved], self.params,
                                      grad_outputs=[chunks[i] for i in self._curved], retain_graph=True,
                                      allow_unused=True)
        self._count[0] += 1
        product = torch.cat([(o if o is not None else torch.zeros_like(p)).reshape(-1)
                             for o, p in zip(out, self.params)])
        return product if self.part == "nll" else product + self._regulariser_hvp(vector)

    def matvec(self, vector: np.ndarray) -> np.ndarray:
        """The part's Hessian times a numpy vector, returned as float64 numpy (the scipy interface)."""
        flat = torch.as_tensor(np.asarray(vector, dtype=np.float64).reshape(-1))
        return self.hvp(flat).detach().to("cpu", torch.float64).numpy()

    def linear_operator(self) -> sla.LinearOperator:
        """The part's Hessian as a symmetric scipy LinearOperator of HVPs."""
        return sla.LinearOperator((self.size, self.size), matvec=self.matvec, rmatvec=self.matvec,
                                  dtype=np.float64)


@dataclass
class EigenResult:
    """Outcome of one eigen-solve: which end, method, eigenvalues with their convergence, and the cost.

    ``converged`` has one flag per eigenvalue; ``part`` is the part the values belong to and ``solve`` names the
    solve that produced them (``<part solved on>:<which solved>``): a value read off another solve (an end read
    off the top-k, a part derived by the exact weight-decay shift) carries that solve's name and cost.
    """

    which: str
    method: str
    eigenvalues: np.ndarray
    hvps: int
    iterations: int
    converged: np.ndarray
    tol: float
    seconds: float = 0.0
    part: str = "objective"
    solve: str = ""
    eigenvectors: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.eigenvalues = np.asarray(self.eigenvalues, dtype=np.float64).reshape(-1)
        self.converged = np.broadcast_to(np.asarray(self.converged, dtype=bool), self.eigenvalues.shape).copy()
        self.solve = self.solve or f"{self.part}:{self.which}"

    @property
    def all_converged(self) -> bool:
        """Every eigenvalue of the solve converged."""
        return bool(self.converged.all())


def _start_vector(size: int, seed: int) -> np.ndarray:
    """Seeded Gaussian start vector, normalised."""
    v = np.random.default_rng(seed).standard_normal(size)
    return v / np.linalg.norm(v)


def power_iteration(op: HessianOperator, k: int = 5, tol: float = 1e-3, max_iter: int = 100,
                    seed: int = 0) -> EigenResult:
    """The paper's top-k by magnitude: deflated power iteration with PyHessian's relative-change stop rule.

    Each eigenvalue starts from a fresh random vector, kept orthogonal to the eigenvectors found so far,
    and stops once ``|new - old| / (|old| + 1e-6) < tol`` or after ``max_iter`` HVPs (then its estimate is
    kept, ``converged=False``).
    """
    hvps0, t0 = op.hvps, time.perf_counter()
    gen = torch.Generator(device="cpu").manual_seed(seed)
    values, vectors, flags, iterations = [], [], [], 0
    for _ in range(k):
        v = torch.randn(op.size, generator=gen, dtype=op.dtype).to(op.device)
        eig, converged = None, False
        for _ in range(max_iter):
            for u in vectors:  # deflation: stay orthogonal to the eigenvectors already found
                v = v - torch.dot(u, v) * u
            v = v / v.norm()
            hv = op.hvp(v)
            iterations += 1
            new = torch.dot(hv, v).item()
            stop = eig is not None and abs(new - eig) / (abs(eig) + 1e-6) < tol
            eig, v = new, hv / hv.norm()
            if stop:
                converged = True
                break
        vectors.append(v)
        values.append(eig)
        flags.append(converged)
    return EigenResult("top_magnitude", "power", np.asarray(values), op.hvps - hvps0, iterations, np.asarray(flags),
                       tol, time.perf_counter() - t0, op.part,
                       eigenvectors=torch.stack(vectors).to("cpu", torch.float64).numpy())


class KrylovWindow:
    """The last ``size`` vectors a solver multiplied, with ``G = V^T H V`` and ``M = V^T V`` kept up to date.

    ARPACK returns only the Ritz values that met ``tol``; Rayleigh-Ritz on this window gives an estimate of the
    others when the budget runs out. The vectors stay on the operator's device (``size`` flat vectors), so the
    bookkeeping costs ``size`` dot products per HVP.
    """

    def __init__(self, op: HessianOperator, size: int):
        self.op = op
        self.vectors = torch.zeros((size, op.size), device=op.device, dtype=op.dtype)
        self.gram = np.zeros((size, size))
        self.projected = np.zeros((size, size))
        self.filled, self.next = 0, 0

    def matvec(self, vector: np.ndarray) -> np.ndarray:
        """The operator's product (float64 numpy), recording the vector and its Rayleigh quotients."""
        x = torch.as_tensor(np.asarray(vector, dtype=np.float64).reshape(-1)).to(self.op.device, self.op.dtype)
        y = self.op.hvp(x)
        slot = self.next
        self.vectors[slot] = x
        self.filled = min(self.filled + 1, len(self.vectors))
        self.next = (slot + 1) % len(self.vectors)
        stored = self.vectors[: self.filled]
        g = (stored @ y).to("cpu", torch.float64).numpy()
        m = (stored @ x).to("cpu", torch.float64).numpy()
        self.projected[slot, : self.filled] = self.projected[: self.filled, slot] = g
        self.gram[slot, : self.filled] = self.gram[: self.filled, slot] = m
        return y.detach().to("cpu", torch.float64).numpy()

    def ritz_values(self) -> np.ndarray:
        """Rayleigh-Ritz values of the operator on the span of the recorded vectors (ascending)."""
        n = self.filled
        gram, projected = self.gram[:n, :n], self.projected[:n, :n]
        scale, basis = scipy.linalg.eigh(gram)
        keep = scale > 1e-10 * scale.max()  # drop directions the window spans twice
        basis = basis[:, keep] / np.sqrt(scale[keep])
        reduced = basis.T @ ((projected + projected.T) / 2) @ basis
        return scipy.linalg.eigvalsh(reduced)


_ARPACK_WHICH = {"top_magnitude": "LM", "largest": "LA", "smallest": "SA"}
# the joint solve keeps its whole Krylov basis (budget x parameters): above this, ARPACK's restarted solves
KRYLOV_BASIS_BYTES = 2**30
# ARPACK's floor on the eigenvalue magnitude in its relative convergence test (dlamch('EPS') ** (2/3))
_ARPACK_FLOOR = np.finfo(np.float64).eps ** (2 / 3)


def lanczos(op: HessianOperator, which: str = "top_magnitude", k: int = 5, tol: float = 1e-3,
            max_hvps: int = 500, ncv: int | None = None, seed: int = 0) -> EigenResult:
    """Implicitly restarted Lanczos (ARPACK eigsh) for k eigenvalues at one end of the spectrum.

    ``which``: ``top_magnitude`` (LM), ``largest`` (LA) or ``smallest`` (SA). ``tol`` is ARPACK's relative
    accuracy of the Ritz values. The HVP budget is turned into ARPACK's restart count (the first pass costs
    ``ncv`` HVPs, each restart about ``ncv - k``). On ArpackNoConvergence the converged values are kept and the
    other ranks are filled with Rayleigh-Ritz estimates on the last ``2 * ncv`` vectors (`KrylovWindow`),
    marked ``converged=False``: no rank is ever left empty.
    """
    ncv = min(op.size - 1, ncv or max(2 * k + 1, 8))
    maxiter = max(1, 1 + (max_hvps - ncv) // max(1, ncv - k))
    hvps0, t0 = op.hvps, time.perf_counter()
    window = KrylovWindow(op, min(2 * ncv, op.size))
    linear = sla.LinearOperator((op.size, op.size), matvec=window.matvec, rmatvec=window.matvec, dtype=np.float64)
    try:
        values, vectors = sla.eigsh(linear, k=k, which=_ARPACK_WHICH[which], tol=tol, ncv=ncv, maxiter=maxiter,
                                    v0=_start_vector(op.size, seed))
        flags = np.ones(len(values), dtype=bool)
    except sla.ArpackNoConvergence as err:
        values, flags = _fill_with_estimates(np.asarray(err.eigenvalues, dtype=np.float64), window.ritz_values(),
                                             which, k)
        vectors = None
    order = _order(values, which)
    vectors = np.asarray(vectors)[:, order].T if vectors is not None else None
    hvps = op.hvps - hvps0
    return EigenResult(which, "lanczos", np.asarray(values)[order], hvps, hvps, flags[order], tol,
                       time.perf_counter() - t0, op.part, eigenvectors=vectors)


def krylov_spectrum(op: HessianOperator, k: int = 5, tol: float = 1e-3, max_hvps: int = 500, seed: int = 0,
                    ends: Sequence[str] = ENDS) -> dict[str, EigenResult]:
    """The top-k by magnitude and the requested ends of the spectrum from one Krylov space, in one solve.

    Lanczos from ARPACK's seeded start vector, with full reorthogonalisation (twice, in the operator's dtype on
    its device) so that no Ritz value repeats. After every HVP the Ritz values of the tridiagonal matrix are
    tested as ARPACK does (residual ``|beta_m s_mi| <= tol * max(|theta_i|, eps^(2/3))``); the solve stops when
    every wanted value has passed, or the Krylov space is invariant (all exact), or after ``max_hvps`` HVPs
    (the values are then the last Ritz values, marked ``converged=False`` where they did not pass). The top-k
    are tested only from ``2k + 1`` vectors on, ARPACK's smallest space for them, so that an eigenvalue with a
    small start component has steps to appear. Why by hand: scipy (ARPACK, LOBPCG) serves one end per call and
    ARPACK tests convergence only after each pass of ``ncv`` vectors. Every result names the shared solve
    (``<part>:top_magnitude+ends``) and its HVPs.
    """
    for end in ends:
        if end not in ENDS:
            raise ValueError(f"ends must be among {ENDS}, got {end!r}")
    hvps0, t0 = op.hvps, time.perf_counter()
    steps = min(max_hvps, op.size)
    basis = torch.empty((steps, op.size), device=op.device, dtype=op.dtype)
    vector = torch.as_tensor(_start_vector(op.size, seed)).to(op.device, op.dtype)
    alpha, beta = [], []
    floor = 10 * torch.finfo(op.dtype).eps  # a next vector this small (relative to the spectrum): an invariant space
    for step in range(steps):
        basis[step] = vector
        product = op.hvp(vector)
        alpha.append(float(torch.dot(product, vector)))
        for _ in range(2):  # twice is enough (Kahan-Parlett) for orthogonality to working precision
            product = product - basis[: step + 1].T @ (basis[: step + 1] @ product)
        norm = float(product.norm())
        theta, ritz = scipy.linalg.eigh_tridiagonal(np.asarray(alpha), np.asarray(beta), lapack_driver="stev")
        invariant = norm <= floor * max(np.abs(theta).max(), np.finfo(np.float64).tiny)
        converged = invariant | (np.abs(norm * ritz[-1]) <= tol * np.maximum(np.abs(theta), _ARPACK_FLOOR))
        wanted = {"top_magnitude": _order(theta, "top_magnitude")[:k] if step + 1 >= min(2 * k + 1, op.size) else None,
                  "largest": [len(theta) - 1], "smallest": [0]}
        if invariant or all(wanted[which] is not None and converged[wanted[which]].all()
                            for which in ("top_magnitude", *ends)):
            break
        beta.append(norm)
        vector = product / norm
    hvps, seconds = op.hvps - hvps0, time.perf_counter() - t0
    picks = {"top_magnitude": _order(theta, "top_magnitude")[:k], "largest": [len(theta) - 1], "smallest": [0]}
    return {which: EigenResult(which, "lanczos", theta[picks[which]], hvps, hvps, converged[picks[which]], tol,
                               seconds, op.part, f"{op.part}:top_magnitude+ends")
            for which in ("top_magnitude", *ends)}


def _fill_with_estimates(converged: np.ndarray, estimates: np.ndarray, which: str, k: int
                         ) -> tuple[np.ndarray, np.ndarray]:
    """The converged values plus the best remaining estimates at the requested end: (k values, converged flags).

    Each converged value removes the estimate nearest to it (its own Ritz value on the window), so no eigenvalue
    is counted twice.
    """
    pool = list(estimates[_order(estimates, which)])
    for value in converged:
        if pool:
            pool.pop(int(np.argmin(np.abs(np.asarray(pool) - value))))
    pool = pool[: k - len(converged)]
    values = np.concatenate([converged, np.asarray(pool, dtype=np.float64)])
    flags = np.concatenate([np.ones(len(converged), dtype=bool), np.zeros(len(pool), dtype=bool)])
    return values, flags


def _order(values: np.ndarray, which: str) -> np.ndarray:
    """Index order that puts the requested end of the spectrum first."""
    values = np.asarray(values)
    if which == "top_magnitude":
        return np.argsort(-np.abs(values), kind="stable")
    if which == "largest":
        return np.argsort(-values, kind="stable")
    return np.argsort(values, kind="stable")


def _power_top_magnitude(op, k, tol, max_hvps, seed, ncv=None):
    """Adapter: the paper's power iteration with the HVP budget split evenly over the k eigenvalues."""
    return power_iteration(op, k=k, tol=tol, max_iter=max(2, max_hvps // k), seed=seed)


def _lanczos_top_magnitude(op, k, tol, max_hvps, seed, ncv=None):
    """Adapter: Lanczos for the top-k by magnitude."""
    return lanczos(op, "top_magnitude", k=k, tol=tol, max_hvps=max_hvps, ncv=ncv, seed=seed)


SOLVERS = {"power": _power_top_magnitude, "lanczos": _lanczos_top_magnitude}


def top_eigenvalues(op: HessianOperator, method: str = "lanczos", k: int = 5, tol: float = 1e-3,
                    max_hvps: int = 500, seed: int = 0, ncv: int | None = None) -> EigenResult:
    """Top-k eigenvalues by magnitude with the solver named ``method`` (``power`` or ``lanczos``)."""
    if method not in SOLVERS:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(SOLVERS)}")
    return SOLVERS[method](op, k, tol, max_hvps, seed, ncv)


def spectrum_end(op: HessianOperator, which: str, top: EigenResult | None = None, tol: float = 1e-3,
                 max_hvps: int = 500, seed: int = 0, ncv: int | None = None) -> EigenResult:
    """Largest or smallest eigenvalue; read off a Lanczos top-k by magnitude when it already holds it.

    If the top-k contains a converged positive (negative) eigenvalue, the largest (smallest) eigenvalue is the
    largest-magnitude one of that sign among them. Otherwise Lanczos solves for it.
    """
    if which not in ENDS:
        raise ValueError(f"which must be one of {ENDS}, got {which!r}")
    sign = 1.0 if which == "largest" else -1.0
    if top is not None and top.method == "lanczos" and top.part == op.part:
        same_sign = np.flatnonzero(sign * top.eigenvalues > 0)
        if same_sign.size:
            best = same_sign[np.argmax(sign * top.eigenvalues[same_sign])]
            if top.converged[best]:
                return EigenResult(which, "lanczos", top.eigenvalues[[best]], top.hvps, top.iterations, True,
                                   top.tol, 0.0, op.part, top.solve)
    return lanczos(op, which, k=1, tol=tol, max_hvps=max_hvps, ncv=ncv or 20, seed=seed + 1)


def shifted(result: EigenResult, shift: float, part: str) -> EigenResult:
    """The same solve's values moved by ``shift`` (exact when the parts differ by ``shift * I``), for ``part``."""
    return replace(result, eigenvalues=result.eigenvalues + shift, part=part, eigenvectors=result.eigenvectors)


def shifted_top_magnitude(top: EigenResult, shift: float, part: str) -> EigenResult | None:
    """The top-k by magnitude of ``H + shift * I`` from the top-k of ``H``, or None when the shift may reorder them.

    Every eigenvalue outside the top-k has ``|λ| <= m`` (the smallest magnitude in it), so after the shift its
    magnitude is at most ``m + |shift|``; a member whose shifted magnitude reaches that bound stays ahead of
    every outsider. When all k do, they are the shifted top-k.
    """
    values = top.eigenvalues + shift
    bound = np.abs(top.eigenvalues).min() + abs(shift)
    if not np.all(np.abs(values) >= bound):
        return None
    order = _order(values, "top_magnitude")
    return replace(top, eigenvalues=values[order], converged=top.converged[order], part=part,
                   eigenvectors=None if top.eigenvectors is None else top.eigenvectors[order])


def hutchinson_samples(op: HessianOperator, probes: int = 10, seed: int = 0) -> np.ndarray:
    """Hutchinson samples ``z^T H z`` of the operator's part with seeded Rademacher probes ``z``."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    samples = []
    for _ in range(probes):
        z = (torch.randint(0, 2, (op.size,), generator=gen, dtype=op.dtype) * 2 - 1).to(op.device)
        samples.append(torch.dot(z, op.hvp(z)).item())
    return np.asarray(samples)


def hutchinson_trace(op: HessianOperator, probes: int = 10, seed: int = 0) -> tuple[float, float]:
    """Hutchinson estimate of tr(H) of the operator's part: (mean, standard error of the mean)."""
    return _mean_and_stderr(hutchinson_samples(op, probes, seed))


def _mean_and_stderr(samples: np.ndarray) -> tuple[float, float]:
    """Mean and standard error of the mean (NaN for one sample)."""
    stderr = samples.std(ddof=1) / math.sqrt(len(samples)) if len(samples) > 1 else float("nan")
    return float(samples.mean()), float(stderr)


def _sign(value: float) -> str:
    """The sign of an eigenvalue as a word."""
    return "negative" if value < 0 else "positive" if value > 0 else "zero"


def _rows(result: EigenResult) -> list[dict]:
    """Tidy rows (one per eigenvalue) for one eigen-solve."""
    return [{"part": result.part, "which": result.which, "rank": rank, "value": float(value),
             "sign": _sign(value), "stderr": None, "method": result.method, "solve": result.solve,
             "tol": result.tol, "hvps": result.hvps, "iterations": result.iterations,
             "converged": bool(converged), "seconds": result.seconds}
            for rank, (value, converged) in enumerate(zip(result.eigenvalues, result.converged))]


def _solve_part(op: HessianOperator, method: str, k: int, tol: float, max_hvps: int, seed: int,
                ncv: int | None, ends: Sequence[str], top: EigenResult | None = None) -> dict[str, EigenResult]:
    """The top-k by magnitude (unless given) and the requested ends of one part: one joint Krylov solve for
    Lanczos when its basis fits in ``KRYLOV_BASIS_BYTES``, else a top-k solve and the ends read off it or solved."""
    basis_bytes = min(max_hvps, op.size) * op.size * torch.finfo(op.dtype).bits // 8
    if top is None and method == "lanczos" and basis_bytes <= KRYLOV_BASIS_BYTES:
        return krylov_spectrum(op, k=k, tol=tol, max_hvps=max_hvps, seed=seed, ends=ends)
    top = top or top_eigenvalues(op, method, k=k, tol=tol, max_hvps=max_hvps, seed=seed, ncv=ncv)
    results = {"top_magnitude": top}
    for end in ends:
        results[end] = spectrum_end(op, end, top, tol=tol, max_hvps=max_hvps, seed=seed)
    return results


def part_spectra(op: HessianOperator, parts: Sequence[str] = PARTS, method: str = "lanczos", k: int = 5,
                 tol: float = 1e-3, max_hvps: int = 500, seed: int = 0, ncv: int | None = None,
                 ends: Sequence[str] = ENDS) -> dict[str, dict[str, EigenResult]]:
    """``{part: {which: EigenResult}}`` for the requested parts, sharing solves where the weight-decay shift is exact.

    With an exact shift the NLL part is solved and the objective derived (ends always, the top-k when
    `shifted_top_magnitude` allows, else by its own solve); otherwise every part is solved on its own.
    """
    if not op.shift_is_exact:
        return {part: _solve_part(op.for_part(part), method, k, tol, max_hvps, seed, ncv, ends) for part in parts}
    nll = _solve_part(op.for_part("nll"), method, k, tol, max_hvps, seed, ncv, ends)
    spectra = {"nll": nll}
    if "objective" in parts:
        objective = op.for_part("objective")
        top = shifted_top_magnitude(nll["top_magnitude"], op.weight_decay, "objective")
        top = top or top_eigenvalues(objective, method, k=k, tol=tol, max_hvps=max_hvps, seed=seed, ncv=ncv)
        spectra["objective"] = {"top_magnitude": top,
                                **{end: shifted(nll[end], op.weight_decay, "objective") for end in ends}}
    return {part: spectra[part] for part in parts}


def trace_rows(op: HessianOperator, probes: int, seed: int, parts: Sequence[str] = PARTS) -> list[dict]:
    """Hutchinson trace rows of the parts and of the regulariser, from one set of Rademacher probes of the NLL.

    ``z^T (H_nll + wd diag(mask)) z = z^T H_nll z + wd * n_decayed`` for every Rademacher z, so the objective's
    samples are the NLL's shifted exactly; the regulariser's trace ``wd * n_decayed`` is exact (stderr 0).
    """
    t0, hvps0 = time.perf_counter(), op.hvps
    samples = hutchinson_samples(op.for_part("nll"), probes, seed)
    regulariser = op.weight_decay * op.n_decayed
    common = {"which": "trace", "rank": 0, "sign": None, "method": "hutchinson", "solve": "nll:trace", "tol": None,
              "hvps": op.hvps - hvps0, "iterations": probes, "converged": True, "seconds": time.perf_counter() - t0}
    rows = []
    for part in parts:
        mean, stderr = _mean_and_stderr(samples + (regulariser if part == "objective" else 0.0))
        rows.append({**common, "part": part, "value": mean, "stderr": stderr})
    rows.append({**common, "part": "regulariser", "value": regulariser, "stderr": 0.0, "method": "exact",
                 "solve": "regulariser:trace", "hvps": 0, "iterations": 0, "seconds": 0.0})
    return rows


def batch_spectrum(model: torch.nn.Module, inputs: torch.Tensor, soft_targets: torch.Tensor,
                   weight_decay: float = 0.0, method: str = "lanczos", k: int = 5, tol: float = 1e-3,
                   max_hvps: int = 500, seed: int = 0, trace_probes: int = 0,
                   ends: Sequence[str] = ENDS, decay: str | Iterable[str] = "all",
                   ncv: int | None = None, parts: Sequence[str] = PARTS) -> list[dict]:
    """Eigenvalues (and optionally the Hutchinson trace) of one mini-batch's Hessian, per part, as tidy rows.

    Rows: ``part`` (objective | nll; the trace also regulariser), ``which`` (top_magnitude | largest | smallest |
    trace), ``rank`` (0 = first of its kind), ``value``, ``sign`` (of an eigenvalue: negative | positive |
    zero), ``stderr`` (trace only), ``method``, ``solve`` (``<part solved on>:<which solved>``: the solve that
    produced the row), ``tol``, ``hvps`` and ``iterations`` of that solve (repeated on each of its rows: sum
    over distinct ``solve`` values), ``converged`` (per value), ``seconds``, and the batch's ``loss``
    (objective), ``nll``, ``regulariser`` and ``hvps_total`` (all HVPs spent on the batch). The ends are always
    solved with Lanczos: power iteration cannot find the smallest eigenvalue reliably. ``max_hvps`` is the
    budget of each solve.
    """
    if method not in SOLVERS:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(SOLVERS)}")
    op = HessianOperator(model, inputs, soft_targets, weight_decay=weight_decay, decay=decay)
    spectra = part_spectra(op, parts, method, k, tol, max_hvps, seed, ncv, ends)
    rows = [row for part in parts for result in spectra[part].values() for row in _rows(result)]
    if trace_probes:
        rows += trace_rows(op, trace_probes, seed, parts)
    for row in rows:
        row.update(loss=op.loss, nll=op.nll, regulariser=op.regulariser, hvps_total=op.hvps)
    return rows
