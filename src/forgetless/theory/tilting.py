"""Fine-tuning as exponential tilting of a token distribution, and what it costs in code length.

The view is that of Lin et al., "SFT Doesn't Always Hurt General Capabilities: Revisiting
Domain-Specific Fine-Tuning in LLMs" (arXiv 2509.20758): a fine-tuning step tilts the
model, ``q_new(z) = q(z) exp(λ r(z)) / Z_λ``, and its effect on data ``P`` is the change of
expected code length ``ΔL(P) = KL(P‖q_new) - KL(P‖q)``, which for a tilt is exactly
``ΔL(P) = log E_q[exp(λr)] - λ E_P[r]`` (:func:`delta_code_length`).

**Toy world** (:func:`make_world`). A vocabulary of ``vocab`` tokens ranked by general
frequency, ``P_gen(z) ∝ rank^(-zipf)``. The pretrained model codes general text
optimally, ``q = P_gen`` (``model_smoothing`` mixes in a uniform floor). Domain text,
``P_dom``, spends ``1 - hard_mass`` of its tokens on the ``familiar_tokens`` most frequent
general tokens, with domain-specific frequencies (general frequencies times a seeded
log-normal factor of scale ``domain_shift``), and ``hard_mass`` on the ``hard_tokens``
rarest tokens (jargon the model has hardly seen); a ``background`` share of ``P_gen``
keeps every token possible.

**The reward ``r``** (``reward``):

* ``"gradient"`` (default): ``r = P_dom - q``. One gradient step of size ``λ`` on the
  domain NLL, taken on the logits of a categorical model, *is* this tilt (the gradient
  of ``E_dom[log softmax(θ)]`` is ``P_dom - q``), so ``λ`` plays the learning rate, the
  knob the paper's main finding is about.
* ``"log-ratio"``: ``r = log(P_dom/q)``; the tilt walks the exponential-family path
  ``q^(1-λ) P_dom^λ`` and reaches ``P_dom`` at ``λ = 1``.

**TALR** (token-adaptive loss reweighting) weights each domain token's loss by
``w(z) ∝ q(z)^(1/τ)``, normalized so ``E_dom[w] = 1`` (a weighted mean over a batch), which
damps the tokens the model finds hard. Its tilt direction (:func:`talr_reward`): for the
gradient reward, the weighted NLL's logit gradient ``P_dom·w - q`` (the plain step toward
the reweighted target ``P_dom·w``); for the log-ratio reward, ``w·log(P_dom/q)``.

**Small steps** (exact as ``λ → 0`` when ``q = P_gen``): the domain gain is
``λ Cov_q(r, P_dom/q)`` and the general cost ``λ² Var_q(r)/2``, so at a matched small gain
``g`` the general cost is ``ρ(r) g²/2`` with ``ρ(r) = Var_q(r) / Cov_q(r, P_dom/q)²``
(:func:`small_step_cost`). By Cauchy-Schwarz ``ρ(r) >= 1/χ²(P_dom‖q)``, with equality only
for the likelihood ratio ``r ∝ P_dom/q``, which *up*-weights hard tokens. Whether a
reweighting helps at small gains is decided by whether it lowers ``ρ``.

**What holds and what does not** (tested in ``tests/test_theory.py``):

* ``ΔL`` from the tilt equals the KL difference computed from ``q_new`` directly.
* ``ΔL(general)`` is ``>= 0`` and grows with ``λ``: with ``q = P_gen`` it is
  ``log E_q e^(λr) - λE_q[r]``, whose derivative ``E_{q_λ}[r] - E_q[r]`` is positive; and
  it stays under Hoeffding's bound ``λ(E_q r - E_gen r) + λ²(max r - min r)²/8``
  (:func:`general_bound`): a small step (learning rate) bounds the general degradation.
* The paper's TALR claim does **not** reproduce here. Over the 16 default domains
  (seeds ``seed, seed+1, ...``), TALR lowers ``ΔL(general)`` at *every* matched
  ``ΔL(domain)`` gain in 0, 1 and 2 of them for τ = 3, 10, 30; strong damping (τ = 3)
  roughly doubles the general cost of a given gain (median ratio TALR/plain 1.9), mild
  damping is on par (median 1.09 and 1.03). The plotted domain (seed 0) happens to be one
  where mild damping wins. With the log-ratio reward, mild damping helps at small gains in
  most domains but over the whole matched range in none. The reason is the geometry above: TALR's
  weighted loss is the NLL of the reweighted target ``P_dom·q^(1/τ)``, which leans towards
  the tokens the model already predicts and away from the likelihood ratio, while in a
  unigram model lifting a rare token costs general text only the normalization. TALR's
  benefit in language models must come from what this model leaves out: parameters
  shared across contexts, through which large updates for hard tokens move predictions
  elsewhere.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class TiltingParams(BaseModel):
    """Parameters of the tilting simulation; each field becomes a CLI flag."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    vocab: int = Field(50, gt=3, description="Vocabulary size.")
    zipf: float = Field(1.0, ge=0, description="General token frequencies follow rank^-zipf.")
    familiar_tokens: int = Field(20, gt=0, description="Most frequent general tokens the domain reuses.")
    hard_tokens: int = Field(10, gt=0, description="Rarest tokens, domain jargon the model has hardly seen.")
    hard_mass: float = Field(0.3, ge=0, le=1, description="Share of domain tokens that are hard tokens.")
    domain_shift: float = Field(1.0, ge=0, description="Log-normal scale of the domain's familiar-token frequencies.")
    background: float = Field(0.02, ge=0, lt=1, description="Share of general text mixed into the domain.")
    model_smoothing: float = Field(0.0, ge=0, lt=1, description="Uniform share mixed into the model q (0: q = P_gen).")
    reward: Literal["gradient", "log-ratio"] = Field("gradient", description="Tilt direction r: P_dom - q or log(P_dom/q).")
    taus: tuple[float, ...] = Field((3.0, 10.0, 30.0), description="TALR temperatures tau (w ~ q^(1/tau)).")
    lambda_max: float | None = Field(None, gt=0, description="Largest lambda (default: 40 for gradient, 1.5 for log-ratio).")
    lambda_points: int = Field(601, gt=10, description="Points of the lambda grid.")
    general_budget: float = Field(0.01, gt=0, description="Tolerated general degradation (nats) for the safe lambda range.")
    matched_points: int = Field(20, gt=1, description="Domain gains at which plain and TALR are compared.")
    seed: int = Field(0, description="Seed of the domain's familiar-token frequencies (the plotted domain).")
    domain_draws: int = Field(16, gt=0, description="Domains (seeds seed, seed+1, ...) the TALR comparison is counted over.")

    @model_validator(mode="after")
    def _check(self) -> TiltingParams:
        if self.familiar_tokens + self.hard_tokens > self.vocab:
            raise ValueError("familiar_tokens + hard_tokens must not exceed vocab")
        if not self.taus or any(t <= 0 for t in self.taus):
            raise ValueError("taus must be positive")
        return self


def make_world(params: TiltingParams, seed: int | None = None) -> dict[str, np.ndarray]:
    """The toy world's distributions, each ``[vocab]``: ``general``, ``domain``, ``model``.

    ``seed`` (default ``params.seed``) draws the domain's familiar-token frequencies.
    """
    rng = np.random.default_rng(params.seed if seed is None else seed)
    general = np.arange(1, params.vocab + 1, dtype=float) ** (-params.zipf)
    general /= general.sum()
    model = (1 - params.model_smoothing) * general + params.model_smoothing / params.vocab
    familiar = np.zeros(params.vocab)
    k = params.familiar_tokens
    familiar[:k] = general[:k] * np.exp(params.domain_shift * rng.standard_normal(k))
    familiar /= familiar.sum()
    hard = np.zeros(params.vocab)
    hard[params.vocab - params.hard_tokens:] = 1 / params.hard_tokens
    domain = (1 - params.hard_mass) * familiar + params.hard_mass * hard
    domain = (1 - params.background) * domain + params.background * general
    return {"general": general, "domain": domain, "model": model}


def kl(p: np.ndarray, q: np.ndarray) -> float:
    """``KL(p‖q)`` in nats for distributions ``[V]`` (terms with ``p = 0`` are 0)."""
    m = p > 0
    return float(np.sum(p[m] * (np.log(p[m]) - np.log(q[m]))))


def reward(domain: np.ndarray, model: np.ndarray, kind: str) -> np.ndarray:
    """Plain tilt direction ``r [V]``: ``P_dom - q`` (gradient) or ``log(P_dom/q)``."""
    if kind == "gradient":
        return domain - model
    if kind == "log-ratio":
        return np.log(domain) - np.log(model)
    raise ValueError(f"unknown reward {kind!r}")


def talr_weights(domain: np.ndarray, model: np.ndarray, tau: float) -> np.ndarray:
    """TALR token weights ``w ∝ q^(1/τ)`` with ``E_dom[w] = 1``: ``[V]``."""
    w = model ** (1 / tau)
    return w / (domain @ w)


def talr_reward(domain: np.ndarray, model: np.ndarray, kind: str, tau: float) -> np.ndarray:
    """TALR's tilt direction ``[V]``: the weighted-loss version of :func:`reward`."""
    w = talr_weights(domain, model, tau)
    if kind == "gradient":
        # Logit gradient of sum_z P_dom(z) w(z) log q(z) with E_dom[w] = 1.
        return domain * w - model
    return w * reward(domain, model, kind)


def tilt(model: np.ndarray, r: np.ndarray, lam: float) -> np.ndarray:
    """``q_new ∝ q exp(λr)``: ``[V]``, computed stably in log space."""
    logits = np.log(model) + lam * r
    logits -= logits.max()
    out = np.exp(logits)
    return out / out.sum()


def delta_code_length(data: np.ndarray, model: np.ndarray, r: np.ndarray, lams: np.ndarray) -> np.ndarray:
    """``ΔL(P) = log E_q[exp(λr)] - λ E_P[r]`` for each ``λ``, from the tilt alone.

    Args:
        data: ``[V]`` the data distribution ``P``.
        model: ``[V]`` the model ``q`` before the step.
        r: ``[V]`` the tilt direction.
        lams: ``[G]`` tilt sizes.

    Returns:
        ``[G]`` code-length changes in nats (negative is a gain).
    """
    a = lams[:, None] * r[None, :]
    top = a.max(axis=1, keepdims=True)
    log_z = top[:, 0] + np.log(np.sum(model[None, :] * np.exp(a - top), axis=1))
    return log_z - lams * (data @ r)


def delta_code_length_direct(data: np.ndarray, model: np.ndarray, r: np.ndarray, lams: np.ndarray) -> np.ndarray:
    """``KL(P‖q_new) - KL(P‖q)`` computed from the tilted distributions themselves: ``[G]``."""
    before = kl(data, model)
    return np.array([kl(data, tilt(model, r, lam)) - before for lam in lams])


def general_bound(general: np.ndarray, model: np.ndarray, r: np.ndarray, lams: np.ndarray) -> np.ndarray:
    """Hoeffding's bound ``λ(E_q r - E_gen r) + λ²(max r - min r)²/8 >= ΔL(general)``: ``[G]``."""
    return lams * (model @ r - general @ r) + lams**2 * (r.max() - r.min()) ** 2 / 8


def small_step_cost(r: np.ndarray, model: np.ndarray, domain: np.ndarray) -> float | None:
    """``ρ(r) = Var_q(r) / Cov_q(r, P_dom/q)²``: general cost per squared domain gain as ``λ → 0``.

    Exact in the limit when the general data are coded by ``q`` itself (``q = P_gen``).

    Returns:
        ``ρ``, or None when the tilt does not gain on the domain to first order.
    """
    first_order_gain = float(r @ (domain - model))
    if first_order_gain <= 0:
        return None
    return float((model @ r**2 - (model @ r) ** 2) / first_order_gain**2)


def optimal_small_step_cost(model: np.ndarray, domain: np.ndarray) -> float:
    """``1/χ²(P_dom‖q)``: the smallest ``ρ`` of any direction, reached by ``r ∝ P_dom/q``."""
    return float(1 / (np.sum(domain**2 / model) - 1))


def safe_lambda(degradation: np.ndarray, lams: np.ndarray, budget: float) -> float:
    """Largest ``λ`` of the grid before ``ΔL(general)`` first exceeds ``budget``."""
    over = np.nonzero(degradation > budget)[0]
    return float(lams[-1] if over.size == 0 else lams[max(over[0] - 1, 0)])


def matched_general_cost(
    plain: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray], points: int
) -> dict[str, list[float]] | None:
    """``ΔL(general)`` of two tilt paths at the same domain gains.

    Each path is ``(ΔL(domain) [G], ΔL(general) [G])`` along increasing ``λ``; only its
    first stretch, up to the largest gain, is used (beyond it a tilt overshoots and the
    gain falls). Gains are spread over ``(0, g]``, ``g`` the smaller of the two maxima.

    Returns:
        ``{"gain", "plain", "other"}``, each ``[points]``; None when either path gains nothing.
    """
    def rising(path: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        dom, gen = path
        k = int(np.argmin(dom)) + 1
        gain = np.maximum.accumulate(-dom[:k])  # guards np.interp against float ties
        return gain, gen[:k]

    g_plain, c_plain = rising(plain)
    g_other, c_other = rising(other)
    top = min(g_plain[-1], g_other[-1])
    if top <= 1e-12:
        return None
    gains = np.linspace(0, top, points + 1)[1:]
    return {
        "gain": gains.tolist(),
        "plain": np.interp(gains, g_plain, c_plain).tolist(),
        "other": np.interp(gains, g_other, c_other).tolist(),
    }


def compare_talr(world: dict[str, np.ndarray], params: TiltingParams, lams: np.ndarray) -> dict[str, Any]:
    """Plain and TALR tilt paths in one world, and their comparison at matched domain gains.

    Returns:
        ``{"plain": path, "talr": {tau: path}, "matched": {tau: matched or None}}``; a path
        holds ``reward``, ``domain``/``general`` (``ΔL`` per λ), ``general_bound``,
        ``safe_lambda``, ``gain_at_safe_lambda``, ``max_domain_gain``, ``small_step_cost``.
    """
    gen, dom, q = world["general"], world["domain"], world["model"]

    def path(r: np.ndarray) -> dict[str, Any]:
        d_dom = delta_code_length(dom, q, r, lams)
        d_gen = delta_code_length(gen, q, r, lams)
        safe = safe_lambda(d_gen, lams, params.general_budget)
        return {
            "reward": r.tolist(), "domain": d_dom.tolist(), "general": d_gen.tolist(),
            "general_bound": general_bound(gen, q, r, lams).tolist(), "safe_lambda": safe,
            "gain_at_safe_lambda": float(-d_dom[np.searchsorted(lams, safe)]),
            "max_domain_gain": float(-d_dom.min()), "small_step_cost": small_step_cost(r, q, dom),
        }

    plain = path(reward(dom, q, params.reward))
    talr = {str(tau): path(talr_reward(dom, q, params.reward, tau)) for tau in params.taus}
    def as_pair(c: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        return np.array(c["domain"]), np.array(c["general"])

    matched = {tau: matched_general_cost(as_pair(plain), as_pair(c), params.matched_points) for tau, c in talr.items()}
    return {"plain": plain, "talr": talr, "matched": matched}


def _verdict(matched: dict[str, list[float]] | None) -> tuple[bool, float | None]:
    """(TALR lower at every matched gain, mean ratio TALR/plain of the general cost)."""
    if matched is None:
        return False, None
    other, plain = np.array(matched["other"]), np.array(matched["plain"])
    return bool(np.all(other < plain)), float(np.mean(other / np.maximum(plain, 1e-300)))


def _median_or_none(ratios: list[float | None]) -> float | None:
    """Median, a domain without any gain counting as an infinite ratio; None if that is the median."""
    median = float(np.median([np.inf if r is None else r for r in ratios]))
    return median if np.isfinite(median) else None


def run_tilting(params: TiltingParams | None = None) -> dict[str, Any]:
    """Code-length trade-off of plain and TALR-weighted tilts as ``λ`` grows.

    Returns:
        A JSON-ready dict: ``params``; ``world`` (the plotted domain's distributions);
        ``lambda`` (the grid); ``plain``, ``talr`` and ``matched`` for that world (see
        :func:`compare_talr`); ``summary`` (its numbers, and per τ over all
        ``domain_draws`` domains: ``wins`` (TALR lower at every matched gain),
        ``small_gain_wins`` (lower at the smallest matched gain), ``cost_ratios``);
        ``seconds``.
    """
    params = params or TiltingParams()
    start = time.perf_counter()
    lam_max = params.lambda_max or (40.0 if params.reward == "gradient" else 1.5)
    lams = np.linspace(0.0, lam_max, params.lambda_points)
    worlds = [make_world(params, params.seed + k) for k in range(params.domain_draws)]
    runs = [compare_talr(w, params, lams) for w in worlds]
    shown, world = runs[0], worlds[0]
    keys = ("safe_lambda", "gain_at_safe_lambda", "max_domain_gain", "small_step_cost")
    talr_summary = {}
    for tau, c in shown["talr"].items():
        lower, ratio = _verdict(shown["matched"][tau])
        verdicts = [_verdict(run["matched"][tau]) for run in runs]
        talr_summary[tau] = {
            **{k: c[k] for k in keys},
            "lower_general_at_matched_gain": lower,
            "general_cost_ratio_at_matched_gain": ratio,
            "draws": {
                "wins": sum(v[0] for v in verdicts),
                "small_gain_wins": sum(
                    run["matched"][tau] is not None and run["matched"][tau]["other"][0] < run["matched"][tau]["plain"][0]
                    for run in runs
                ),
                "cost_ratios": [v[1] for v in verdicts],
                "median_cost_ratio": _median_or_none([v[1] for v in verdicts]),
            },
        }
    general = np.array(shown["plain"]["general"])
    summary = {
        "kl_domain_model": kl(world["domain"], world["model"]),
        "kl_general_model": kl(world["general"], world["model"]),
        "optimal_small_step_cost": optimal_small_step_cost(world["model"], world["domain"]),
        "general_grows_with_lambda": bool(np.all(np.diff(general) > 0)),
        "domain_draws": params.domain_draws,
        "plain": {k: shown["plain"][k] for k in keys},
        "talr": talr_summary,
    }
    return {
        "params": params.model_dump(),
        "world": {k: v.tolist() for k, v in world.items()},
        "lambda": lams.tolist(),
        **shown,
        "summary": summary,
        "seconds": time.perf_counter() - start,
    }
