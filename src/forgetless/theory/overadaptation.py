"""Over-adaptation in over-parameterized linear regression: fine-tuning, ridge, and the ensemble.

The setting reproduces the qualitative claims of Hao et al., "Understanding Overadaptation
in Supervised Fine-Tuning: The Role of Ensemble Methods" (arXiv 2506.01901); the paper's
precise data model is not reproduced (docs/methods.md#overadaptation).

**Fine-tuning task.** Inputs ``x ~ N(0, Σ)`` in ``R^d`` with ``Σ = diag(μ)`` (no loss of
generality: coordinates are Σ's eigenbasis), power-law spectrum ``μ_j ∝ j^(-decay)``
normalized to ``tr Σ = d``; targets ``y = xᵀβ + ε``, ``ε ~ N(0, σ²)``; ``n < d`` samples
``X [n, d]``, ``y [n]``. The pretrained weights are ``β_pre = β + δ``.

**Estimators** (all start from ``β_pre``; ``r = y - Xβ_pre`` is the residual):

* fine-tuning to convergence (gradient descent from ``β_pre`` converges to the
  interpolator nearest to ``β_pre``): ``β_ft = β_pre + X⁺ r``;
* ridge towards the pretrained weights: ``β_λ = β_pre + Xᵀ(XXᵀ + λI)⁻¹ r``;
* the ensemble (weight interpolation): ``β_α = (1-α) β_pre + α β_ft``;
* gradient descent stopped after ``t`` steps of size ``η`` on ``‖y - Xb‖²/(2n)``.

With ``X = U diag(s) Vᵀ`` (thin SVD, ``s [n]``), every one of them is a *spectral filter*
``β̂ = β + (I - V diag(f) Vᵀ) δ + V diag(f/s) Uᵀ ε`` with ``f = α`` (ensemble),
``f = s²/(s² + λ)`` (ridge), ``f = 1 - (1 - η s²/n)^t`` (gradient descent), ``f = 1``
(fine-tuning). So for a fixed ``X`` the risk on a task with covariance ``S`` and target
``β + c`` splits exactly into

* bias ``= (Aδ - c)ᵀ S (Aδ - c)`` with ``A = I - V diag(f) Vᵀ`` (the offset left unfit), and
* variance ``= σ² Σ_i (f_i/s_i)² v_iᵀ S v_i`` (the noise fit),

computed by :func:`closed_form_risk`; :func:`monte_carlo_risk` checks them by running the
estimators on fresh noise.

**Pretraining task.** The task ``β_pre`` was fit to: inputs with covariance ``Σ_pre``
(default isotropic, ``I``: general data spread over every direction) and the noiseless
target ``β_pre`` itself, so ``β_pre`` has zero excess risk there and
``(β̂ - β_pre)ᵀ Σ_pre (β̂ - β_pre)`` measures only what fine-tuning forgot (``c = δ``).

**Where the offset lives decides who wins.** ``δ = Σ^(-offset_power/2) z`` with ``z``
standard normal, scaled so that ``δᵀΣδ = offset²`` (the pretrained model's excess risk on
the fine-tuning task). With ``offset_power = 0`` (``δ`` isotropic in parameter space) ridge
is the posterior mean for a Gaussian ``δ`` and no ensemble can beat it on average; the
ensemble then loses to ridge (by 2 to 40 per cent over seeds 0-5). The default ``offset_power = 1`` makes ``Σ^(1/2)δ``
isotropic: the pretrained model's error is largest in the directions the inputs rarely
excite, as for a least-squares fit on pretraining inputs sharing Σ's eigenbasis (its error
covariance scales like ``Σ⁻¹``). Each eigendirection then carries an equal share of the
excess risk, the per-direction optimal shrinkage ``f_i`` is roughly the same in every
direction, i.e. uniform (the ensemble), while ridge shrinks the weak directions far more
than the strong ones. In that setting the ensemble's risk is U-shaped in α and its
minimum beats the best ridge, the paper's claim.

**Isotropic Σ: when ensemble and ridge coincide.** If ``XXᵀ = sI`` (rows of ``X``
orthogonal with equal norm ``√s``), then ``Xᵀ(XXᵀ + λI)⁻¹ = s/(s+λ) · X⁺``, so
``β_λ = β_α`` exactly with ``α = s/(s + λ)``, for every ``y``: the two paths are the same
set of estimators, their risk curves coincide under this change of variable on every task,
and ``min_{λ>0} risk(β_λ) = min_{0<α<1} risk(β_α)``. With ``Σ = I`` and ``n ≪ d``, Gaussian
rows satisfy ``XXᵀ ≈ dI``, so the identity holds approximately: this is why the
ensemble's advantage needs an anisotropic Σ (whose ``XXᵀ`` has spread-out eigenvalues).
"""

from __future__ import annotations

import time
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class OveradaptationParams(BaseModel):
    """Parameters of the over-adaptation simulation; each field becomes a CLI flag."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    d: int = Field(100, gt=1, description="Dimension of the inputs and weights.")
    n: int = Field(40, gt=0, description="Fine-tuning samples (must be fewer than d).")
    decay: float = Field(1.5, ge=0, description="Power-law exponent of the input spectrum, mu_j ~ j^-decay (0: isotropic).")
    noise: float = Field(0.3, ge=0, description="Label noise standard deviation sigma.")
    offset: float = Field(1.0, gt=0, description="Pretrained excess risk on the fine-tuning task is offset^2.")
    offset_power: float = Field(
        1.0, description="delta ~ Sigma^(-offset_power/2) z: 1 puts equal risk in every direction, 0 is isotropic."
    )
    pretrain_spectrum: Literal["isotropic", "same", "reversed"] = Field(
        "isotropic", description="Input covariance of the pretraining task: I, Sigma, or Sigma's spectrum reversed."
    )
    seed: int = Field(0, description="Seed of every random draw (offset, inputs, noise).")
    alpha_points: int = Field(101, gt=2, description="Points of the ensemble grid, alpha in [0, 1].")
    lambda_min: float = Field(1e-3, gt=0, description="Smallest ridge lambda.")
    lambda_max: float = Field(1e6, gt=0, description="Largest ridge lambda.")
    lambda_points: int = Field(91, gt=2, description="Log-spaced points of the ridge grid.")
    gd_max_steps: float = Field(1e5, ge=1, description="Largest number of gradient-descent steps (log grid from 1).")
    gd_points: int = Field(61, gt=2, description="Points of the gradient-descent step grid.")
    noise_draws: int = Field(2000, ge=40, description="Monte Carlo noise draws for the fixed X.")
    mc_batches: int = Field(40, ge=2, description="Batches the noise draws are split into for standard errors.")
    x_draws: int = Field(50, gt=0, description="Input matrices X the closed forms are averaged over.")

    @model_validator(mode="after")
    def _check(self) -> OveradaptationParams:
        if self.n >= self.d:
            raise ValueError(f"n ({self.n}) must be smaller than d ({self.d}): the setting is over-parameterized")
        if self.lambda_min >= self.lambda_max:
            raise ValueError("lambda_min must be smaller than lambda_max")
        if self.noise_draws % self.mc_batches:
            raise ValueError("noise_draws must be a multiple of mc_batches")
        return self


# ----------------------------------------------------------------------------- data


def power_spectrum(d: int, decay: float) -> np.ndarray:
    """Eigenvalues ``μ [d]`` with ``μ_j ∝ j^(-decay)``, normalized so ``tr Σ = d``."""
    mu = np.arange(1, d + 1, dtype=float) ** (-decay)
    return mu * (d / mu.sum())


def pretrain_spectrum(mu: np.ndarray, kind: str) -> np.ndarray:
    """Diagonal ``[d]`` of the pretraining task's input covariance ``Σ_pre``."""
    if kind == "isotropic":
        return np.ones_like(mu)
    if kind == "same":
        return mu.copy()
    if kind == "reversed":
        return mu[::-1].copy()
    raise ValueError(f"unknown pretrain_spectrum {kind!r}")


def draw_offset(mu: np.ndarray, offset: float, power: float, rng: np.random.Generator) -> np.ndarray:
    """Pretraining offset ``δ = c Σ^(-power/2) z`` with ``c`` set so that ``δᵀΣδ = offset²``.

    Returns:
        ``δ [d]``.
    """
    delta = mu ** (-power / 2) * rng.standard_normal(mu.shape[0])
    return delta * (offset / np.sqrt(delta @ (mu * delta)))


def draw_inputs(n: int, mu: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``X [n, d]`` with independent rows ``x ~ N(0, diag(μ))``."""
    return rng.standard_normal((n, mu.shape[0])) * np.sqrt(mu)


# ------------------------------------------------------------------ the estimators


def fine_tune(X: np.ndarray, y: np.ndarray, beta_pre: np.ndarray) -> np.ndarray:
    """Minimum-distance interpolator from ``β_pre``: ``β_pre + X⁺(y - Xβ_pre)``.

    Args:
        X: ``[n, d]`` inputs, ``n < d``.
        y: ``[n]`` or ``[n, k]`` targets (``k`` problems at once).
        beta_pre: ``[d]`` pretrained weights.

    Returns:
        ``[d]`` or ``[d, k]`` fine-tuned weights.
    """
    residual = y - (X @ beta_pre if y.ndim == 1 else (X @ beta_pre)[:, None])
    return (beta_pre if y.ndim == 1 else beta_pre[:, None]) + np.linalg.pinv(X) @ residual


def ridge_to_pretrained(X: np.ndarray, y: np.ndarray, beta_pre: np.ndarray, lam: float) -> np.ndarray:
    """Ridge shrunk towards ``β_pre``: ``β_pre + Xᵀ(XXᵀ + λI)⁻¹(y - Xβ_pre)``.

    Shapes as in :func:`fine_tune`. It minimizes ``‖y - Xb‖² + λ‖b - β_pre‖²``.
    """
    residual = y - (X @ beta_pre if y.ndim == 1 else (X @ beta_pre)[:, None])
    gram = X @ X.T + lam * np.eye(X.shape[0])
    return (beta_pre if y.ndim == 1 else beta_pre[:, None]) + X.T @ np.linalg.solve(gram, residual)


def ensemble(beta_pre: np.ndarray, beta_ft: np.ndarray, alpha: float) -> np.ndarray:
    """Weight interpolation ``(1-α) β_pre + α β_ft`` (``β_ft`` may be ``[d, k]``)."""
    pre = beta_pre if beta_ft.ndim == 1 else beta_pre[:, None]
    return (1 - alpha) * pre + alpha * beta_ft


def gradient_descent(X: np.ndarray, y: np.ndarray, beta_pre: np.ndarray, steps: int, lr: float) -> np.ndarray:
    """``steps`` full-batch gradient steps of size ``lr`` on ``‖y - Xb‖²/(2n)`` from ``β_pre``."""
    b = beta_pre.copy()
    for _ in range(steps):
        b += lr / X.shape[0] * X.T @ (y - X @ b)
    return b


def gd_step_size(s: np.ndarray, n: int) -> float:
    """Step size ``η = n / s_max²``: the stiffest direction is fit in one step, none diverges."""
    return n / s[0] ** 2


# ---------------------------------------------------------- spectral filters ``f [G, n]``


def ensemble_filters(alphas: np.ndarray, n: int) -> np.ndarray:
    """``f_i = α`` for every singular direction: ``[G, n]``."""
    return np.repeat(alphas[:, None], n, axis=1)


def ridge_filters(lams: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``f_i = s_i² / (s_i² + λ)``: ``[G, n]``."""
    return s[None, :] ** 2 / (s[None, :] ** 2 + lams[:, None])


def gd_filters(steps: np.ndarray, s: np.ndarray, n: int, lr: float) -> np.ndarray:
    """``f_i = 1 - (1 - η s_i²/n)^t`` after ``t`` gradient steps: ``[G, n]``."""
    return 1 - (1 - lr * s[None, :] ** 2 / n) ** steps[:, None]


def closed_form_risk(
    X: np.ndarray, delta: np.ndarray, noise: float, filters: np.ndarray, cov: np.ndarray, target: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exact bias and variance, given ``X``, of spectral-filter estimators on one task.

    Args:
        X: ``[n, d]`` fine-tuning inputs.
        delta: ``[d]`` pretraining offset ``β_pre - β``.
        noise: label noise standard deviation σ.
        filters: ``[G, n]`` filter values ``f`` (one estimator per row), in the order of
            ``X``'s singular values, largest first.
        cov: ``[d]`` diagonal of the task's input covariance ``S``.
        target: ``[d]`` the task's target minus ``β`` (0 for fine-tuning, ``δ`` for pretraining).

    Returns:
        ``(bias [G], variance [G])``; the risk is their sum.
    """
    _, s, vt = np.linalg.svd(X, full_matrices=False)
    left = (delta - target)[None, :] - (filters * (vt @ delta)[None, :]) @ vt
    bias = np.einsum("gd,d,gd->g", left, cov, left)
    variance = noise**2 * ((filters / s[None, :]) ** 2) @ ((vt**2) @ cov)
    return bias, variance


# -------------------------------------------------------------------------- Monte Carlo


def _batch_decomposition(err: np.ndarray, cov: np.ndarray, batches: int) -> dict[str, float]:
    """Bias and variance of errors ``err [d, N]`` under ``S = diag(cov)``, by batch means.

    Within each batch of ``m`` draws, ``var_b`` is the unbiased sample variance and
    ``bias_b = ‖ē_b‖²_S - var_b/m`` is unbiased for the bias; the standard errors are the
    spread of the batch estimates over ``√batches``.
    """
    d, total = err.shape
    m = total // batches
    blocks = err.reshape(d, batches, m)
    mean = blocks.mean(axis=2)
    centered = blocks - mean[:, :, None]
    var_b = np.einsum("dbm,d,dbm->b", centered, cov, centered) / (m - 1)
    bias_b = np.einsum("db,d,db->b", mean, cov, mean) - var_b / m
    risk_b = np.einsum("dbm,d,dbm->b", blocks, cov, blocks) / m
    root = np.sqrt(batches)
    return {
        "bias": float(bias_b.mean()), "bias_se": float(bias_b.std(ddof=1) / root),
        "variance": float(var_b.mean()), "variance_se": float(var_b.std(ddof=1) / root),
        "risk": float(risk_b.mean()), "risk_se": float(risk_b.std(ddof=1) / root),
    }


def monte_carlo_risk(
    X: np.ndarray,
    beta: np.ndarray,
    delta: np.ndarray,
    noise: float,
    alphas: np.ndarray,
    lams: np.ndarray,
    tasks: dict[str, tuple[np.ndarray, np.ndarray]],
    draws: int,
    batches: int,
    rng: np.random.Generator,
) -> dict[str, dict[str, dict[str, list[float]]]]:
    """Bias, variance and risk of the ensemble and ridge paths over fresh noise, ``X`` fixed.

    The estimators are run as written (pseudo-inverse, linear solves), independently of the
    spectral-filter closed forms they check.

    Args:
        X: ``[n, d]`` inputs; beta: ``[d]`` truth; delta: ``[d]`` offset.
        noise: σ. alphas: ``[Ga]``; lams: ``[Gl]``.
        tasks: name -> ``(cov [d], target [d])`` as in :func:`closed_form_risk`.
        draws: noise draws (a multiple of ``batches``).

    Returns:
        ``{path: {task: {"bias", "bias_se", "variance", "variance_se", "risk", "risk_se"}}}``
        with one list entry per grid point, for path in ``ensemble``, ``ridge``.
    """
    beta_pre = beta + delta
    y = (X @ beta)[:, None] + noise * rng.standard_normal((X.shape[0], draws))
    beta_ft = fine_tune(X, y, beta_pre)
    paths: dict[str, list[np.ndarray]] = {
        "ensemble": [ensemble(beta_pre, beta_ft, a) for a in alphas],
        "ridge": [ridge_to_pretrained(X, y, beta_pre, lam) for lam in lams],
    }
    out: dict[str, dict[str, dict[str, list[float]]]] = {}
    for path, estimates in paths.items():
        out[path] = {}
        for task, (cov, target) in tasks.items():
            rows = [_batch_decomposition(est - (beta + target)[:, None], cov, batches) for est in estimates]
            out[path][task] = {key: [row[key] for row in rows] for key in rows[0]}
    return out


# ------------------------------------------------------------------------------ the run


def best_alpha_exact(X: np.ndarray, delta: np.ndarray, noise: float, cov: np.ndarray) -> float:
    """Exact minimizer over all real α of the ensemble's fine-tuning risk, given ``X``.

    The risk is the convex quadratic ``‖(I - αP)δ‖²_S + α² σ² tr(X⁺ᵀ S X⁺)`` in α
    (``P`` the projector onto ``X``'s row space), so ``α* = δᵀPSδ / (‖Pδ‖²_S + σ² tr(X⁺ᵀ S X⁺))``.
    """
    _, s, vt = np.linalg.svd(X, full_matrices=False)
    p_delta = vt.T @ (vt @ delta)
    curvature = p_delta @ (cov * p_delta) + noise**2 * np.sum(((vt**2) @ cov) / s**2)
    return float(p_delta @ (cov * delta) / curvature)


def _argmin(values: np.ndarray, grid: np.ndarray) -> tuple[float, float, bool]:
    """``(grid point, value, at_edge)`` of the smallest value."""
    i = int(np.argmin(values))
    return float(grid[i]), float(values[i]), i in (0, len(grid) - 1)


def _summarize(curves: dict[str, dict[str, np.ndarray]], alphas: np.ndarray, lams: np.ndarray,
               steps: np.ndarray) -> dict[str, Any]:
    """Best α, best λ and best step count on the fine-tuning task, and what each forgets."""
    risk = {path: curves[path]["finetune_bias"] + curves[path]["finetune_variance"] for path in curves}
    forget = {path: curves[path]["pretrain_bias"] + curves[path]["pretrain_variance"] for path in curves}
    alpha, alpha_risk, alpha_edge = _argmin(risk["ensemble"], alphas)
    lam, lam_risk, lam_edge = _argmin(risk["ridge"], lams)
    step, step_risk, _ = _argmin(risk["gd"], steps)
    # λ → 0 is fine-tuning (α = 1) and λ → ∞ is the pretrained model (α = 0): the best ridge
    # includes both limits, so the comparison cannot be won by a too-narrow λ grid.
    ridge_best = min(lam_risk, float(risk["ensemble"][0]), float(risk["ensemble"][-1]))
    ia, il = int(np.argmin(risk["ensemble"])), int(np.argmin(risk["ridge"]))
    return {
        "pretrained_risk": float(risk["ensemble"][0]),
        "finetuned_risk": float(risk["ensemble"][-1]),
        "best_alpha": alpha,
        "best_alpha_risk": alpha_risk,
        "best_alpha_interior": not alpha_edge,
        "best_lambda": lam,
        "best_lambda_risk": lam_risk,
        "best_lambda_at_grid_edge": lam_edge,
        "best_ridge_risk_with_limits": ridge_best,
        "ensemble_beats_ridge": alpha_risk < ridge_best,
        "ensemble_over_ridge": alpha_risk / ridge_best,
        "best_gd_steps": step,
        "best_gd_risk": step_risk,
        "pretrain_risk_at_best_alpha": float(forget["ensemble"][ia]),
        "pretrain_risk_at_best_lambda": float(forget["ridge"][il]),
        "pretrain_risk_finetuned": float(forget["ensemble"][-1]),
    }


def run_overadaptation(params: OveradaptationParams | None = None) -> dict[str, Any]:
    """Risk curves of the ensemble, ridge and early-stopped paths, closed form and Monte Carlo.

    Args:
        params: the setting; defaults when None.

    Returns:
        A JSON-ready dict: ``params``; ``grids`` (``alpha``, ``lambda``, ``gd_steps``);
        ``conditional`` (closed-form bias/variance for the first ``X``, per path and task),
        ``averaged`` (the same averaged over ``x_draws`` input matrices, with standard errors),
        ``monte_carlo`` (noise draws on the first ``X``, see :func:`monte_carlo_risk`),
        ``summary`` (best α / λ / steps and the comparison, for the averaged and the
        conditional curves; ``exact_best_alpha`` for the first ``X``), ``seconds``.
    """
    params = params or OveradaptationParams()
    start = time.perf_counter()
    rng = np.random.default_rng(params.seed)
    mu = power_spectrum(params.d, params.decay)
    mu_pre = pretrain_spectrum(mu, params.pretrain_spectrum)
    beta = rng.standard_normal(params.d) / np.sqrt(params.d)
    delta = draw_offset(mu, params.offset, params.offset_power, rng)
    tasks = {"finetune": (mu, np.zeros(params.d)), "pretrain": (mu_pre, delta)}
    alphas = np.linspace(0.0, 1.0, params.alpha_points)
    lams = np.geomspace(params.lambda_min, params.lambda_max, params.lambda_points)
    steps = np.unique(np.round(np.geomspace(1, params.gd_max_steps, params.gd_points)))

    def curves_for(X: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        s = np.linalg.svd(X, compute_uv=False)
        filters = {
            "ensemble": ensemble_filters(alphas, params.n),
            "ridge": ridge_filters(lams, s),
            "gd": gd_filters(steps, s, params.n, gd_step_size(s, params.n)),
        }
        out: dict[str, dict[str, np.ndarray]] = {}
        for path, f in filters.items():
            out[path] = {}
            for task, (cov, target) in tasks.items():
                bias, variance = closed_form_risk(X, delta, params.noise, f, cov, target)
                out[path][f"{task}_bias"], out[path][f"{task}_variance"] = bias, variance
        return out

    inputs = [draw_inputs(params.n, mu, rng) for _ in range(params.x_draws)]
    draws = [curves_for(X) for X in inputs]
    conditional = draws[0]
    averaged: dict[str, dict[str, np.ndarray]] = {}
    for path in conditional:
        averaged[path] = {}
        for key in conditional[path]:
            stack = np.stack([c[path][key] for c in draws])
            averaged[path][key] = stack.mean(axis=0)
            # One X has no spread to report; its standard error is left at zero.
            spread = stack.std(axis=0, ddof=1) if len(draws) > 1 else np.zeros_like(stack[0])
            averaged[path][key + "_se"] = spread / np.sqrt(len(draws))
    mc = monte_carlo_risk(inputs[0], beta, delta, params.noise, alphas, lams, tasks, params.noise_draws,
                          params.mc_batches, rng)
    means = {path: {k: v for k, v in averaged[path].items() if not k.endswith("_se")} for path in averaged}
    summary = {
        "averaged": _summarize(means, alphas, lams, steps),
        "conditional": _summarize(conditional, alphas, lams, steps),
        "exact_best_alpha_conditional": best_alpha_exact(inputs[0], delta, params.noise, mu),
    }
    return {
        "params": params.model_dump(),
        "grids": {"alpha": alphas.tolist(), "lambda": lams.tolist(), "gd_steps": steps.tolist()},
        "conditional": _tolists(conditional),
        "averaged": _tolists(averaged),
        "monte_carlo": mc,
        "summary": summary,
        "seconds": time.perf_counter() - start,
    }


def _tolists(curves: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, list[float]]]:
    return {path: {k: np.asarray(v).tolist() for k, v in block.items()} for path, block in curves.items()}
