"""Sequential canary gates on error counts: Wald's SPRT and the always-valid mSPRT / e-process.

A fixed-n test checked every window inflates its false-alarm rate (simulation-anchors §4.2); these
tests are built to be looked at after every window. Two data models (§4.1, §4.3):

* known baseline rate p0: the canary's requests are a Bernoulli(p) stream, H0 p = p0;
* unknown baseline (conditional count-ratio test): given the K = k_c + k_b errors of a window,
  k_c ~ Bin(K, π) with π0 = n_c/(n_c + n_b) under H0 and π(ρ) = ρ n_c/(ρ n_c + n_b) under relative
  risk ρ; only the counts and the window's traffic shares are needed, and shares may vary by window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np
from pydantic import model_validator

from policies.base import Model

__all__ = [
    "DEFAULT_PRIOR_RELATIVE_RISKS",
    "PathOutcome",
    "SequentialState",
    "SequentialTest",
    "fixed_sample_size",
    "kl_bernoulli",
    "sprt_asn",
    "sprt_bounds",
]

Decision = Literal["continue", "reject", "accept"]
DEFAULT_PRIOR_RELATIVE_RISKS = (1.25, 1.5, 2.0, 5.0, 10.0)
"""Discrete relative-risk grid of the count-ratio e-process (§4.3), equally weighted by default."""


# --------------------------------------------------------------------------- closed forms


def _check_rates(p0: float, p1: float) -> None:
    if not (0.0 < p0 < p1 < 1.0):
        raise ValueError(f"need 0 < p0 < p1 < 1, got p0={p0}, p1={p1}")


def _check_errors(alpha: float, beta: float) -> None:
    if not (0.0 < alpha < 0.5 and 0.0 < beta < 0.5):
        raise ValueError(f"alpha and beta must be in (0, 0.5), got {alpha}, {beta}")


def fixed_sample_size(p0: float, p1: float, alpha: float = 0.05, beta: float = 0.2) -> float:
    """n* of the one-sided fixed-n test of a canary against a known baseline (§4.1, normal)."""
    _check_rates(p0, p1)
    _check_errors(alpha, beta)
    from scipy.special import ndtri  # scipy loads lazily: a slow import

    z_a, z_b = ndtri(1 - alpha), ndtri(1 - beta)  # normal quantiles
    spread = z_a * math.sqrt(p0 * (1 - p0)) + z_b * math.sqrt(p1 * (1 - p1))
    return float(spread**2 / (p1 - p0) ** 2)


def sprt_bounds(alpha: float, beta: float) -> tuple[float, float]:
    """Wald's (A, B): reject H0 when LLR ≥ A = log((1−β)/α), accept when LLR ≤ B = log(β/(1−α))."""
    _check_errors(alpha, beta)
    return math.log((1 - beta) / alpha), math.log(beta / (1 - alpha))


def kl_bernoulli(p: float, q: float) -> float:
    """KL(Bernoulli(p) ‖ Bernoulli(q)) in nats."""
    if not (0.0 < q < 1.0 and 0.0 <= p <= 1.0):
        raise ValueError(f"need 0 <= p <= 1 and 0 < q < 1, got p={p}, q={q}")
    total = 0.0
    if p > 0:
        total += p * math.log(p / q)
    if p < 1:
        total += (1 - p) * math.log((1 - p) / (1 - q))
    return total


def sprt_asn(p0: float, p1: float, alpha: float = 0.05, beta: float = 0.2) -> tuple[float, float]:
    """Wald's approximate average sample numbers (E_H1[N], E_H0[N]) of the Bernoulli SPRT (§4.3)."""
    _check_rates(p0, p1)
    a, b = sprt_bounds(alpha, beta)
    under_h1 = ((1 - beta) * a + beta * b) / kl_bernoulli(p1, p0)
    under_h0 = (alpha * a + (1 - alpha) * b) / -kl_bernoulli(p0, p1)
    return under_h1, under_h0


# --------------------------------------------------------------------------- config


class SequentialTest(Model):
    """A sequential gate: ``start()`` one per rollout and feed it every window's counts.

    ``sprt`` decides both ways (accept H0 at B, reject at A; H1 is ρ = relativeRisk). ``msprt`` is
    power-one: it only ever rejects, when its mixture likelihood ratio reaches 1/α, and is valid at
    every look (Ville). With ``baselineErrorRate`` the canary is tested against that known p0
    (mSPRT: normal mixture N(p0, τ²), τ = p0 by default — a normal approximation to the Bernoulli
    stream); without it the conditional count-ratio test is used (mSPRT: an exact test martingale,
    a discrete prior over ρ). Only regressions count: both mSPRTs are one-sided.
    """

    test: Literal["sprt", "msprt"]
    alpha: float = 0.05
    beta: float = 0.2
    relative_risk: float = 2.0
    baseline_error_rate: float | None = None
    tau: float | None = None
    prior_relative_risks: tuple[float, ...] = DEFAULT_PRIOR_RELATIVE_RISKS
    prior_weights: tuple[float, ...] | None = None

    @model_validator(mode="after")
    def _check(self) -> SequentialTest:
        given = self.model_fields_set
        if not 0.0 < self.alpha < 0.5:
            raise ValueError(f"alpha {self.alpha} must be in (0, 0.5)")
        if not 0.0 < self.beta < 0.5:
            raise ValueError(f"beta {self.beta} must be in (0, 0.5)")
        if self.test == "msprt" and "beta" in given:
            raise ValueError("beta applies only to the SPRT: the mSPRT never accepts H0")
        if self.test == "msprt" and "relative_risk" in given:
            raise ValueError(
                "relativeRisk is the SPRT's alternative; the mSPRT mixes over effects "
                "(tau, or priorRelativeRisks without a baselineErrorRate)"
            )
        if not (math.isfinite(self.relative_risk) and self.relative_risk > 1.0):
            raise ValueError(
                f"relativeRisk {self.relative_risk} must be > 1 (the smallest regression to catch)"
            )
        p0 = self.baseline_error_rate
        if p0 is not None:
            if not 0.0 < p0 < 1.0:
                raise ValueError(f"baselineErrorRate {p0} must be in (0, 1)")
            if self.test == "sprt" and not self.relative_risk * p0 < 1.0:
                raise ValueError(
                    f"relativeRisk × baselineErrorRate = {self.relative_risk * p0:g} "
                    "is not a probability below 1"
                )
        if self.tau is not None:
            if self.test != "msprt" or p0 is None:
                raise ValueError("tau applies only to the mSPRT with a known baselineErrorRate")
            if not (math.isfinite(self.tau) and self.tau > 0):
                raise ValueError(f"tau {self.tau} must be > 0")
        if {"prior_relative_risks", "prior_weights"} & given and (
            self.test != "msprt" or p0 is not None
        ):
            raise ValueError("the relative-risk prior applies only to the conditional mSPRT")
        grid = self.prior_relative_risks
        if not grid or any(not (math.isfinite(r) and r > 1.0) for r in grid):
            raise ValueError("priorRelativeRisks must be a non-empty list of values > 1")
        weights = self.prior_weights
        if weights is not None and (
            len(weights) != len(grid) or any(not (math.isfinite(w) and w > 0) for w in weights)
        ):
            raise ValueError("priorWeights must be positive, one per priorRelativeRisks entry")
        return self

    @property
    def conditional(self) -> bool:
        """True for the count-ratio test (no baseline rate needed)."""
        return self.baseline_error_rate is None

    def start(self) -> SequentialState:
        """A fresh state with nothing observed."""
        return SequentialState(self)

    def run(
        self,
        canary_errors: np.ndarray,
        canary_requests: np.ndarray,
        baseline_errors: np.ndarray | None = None,
        baseline_requests: np.ndarray | None = None,
    ) -> PathOutcome:
        """Vectorised ``start()`` + ``update`` over paths: arrays shaped (..., windows).

        Gives each path's decision, the window index it was reached at (−1 if never) and the
        canary requests consumed by then — the same as stepping a ``SequentialState``.
        """
        ce, cr = np.asarray(canary_errors, float), np.asarray(canary_requests, float)
        if self.conditional:
            if baseline_errors is None or baseline_requests is None:
                raise ValueError("the conditional test needs the baseline counts")
            be, br = np.asarray(baseline_errors, float), np.asarray(baseline_requests, float)
        else:
            be = br = np.zeros_like(ce)
        ce, cr, be, br = np.broadcast_arrays(ce, cr, be, br)
        _check_counts(ce, cr, be, br)
        alpha = self.alpha
        if self.test == "sprt":
            stat = np.cumsum(self._llr_increments(ce, cr, be, br), axis=-1)
            a, b = sprt_bounds(alpha, self.beta)
            reject, accept = stat >= a, stat <= b
        else:
            stat = self._log_mixture_path(ce, cr, be, br)
            reject, accept = stat >= math.log(1 / alpha), np.zeros(stat.shape, bool)
        done = reject | accept
        hit = done.any(axis=-1)
        first = np.where(hit, done.argmax(axis=-1), -1)
        at = np.maximum(first, 0)[..., None]
        rejected = np.take_along_axis(reject, at, axis=-1)[..., 0] & hit
        decision = np.where(hit, np.where(rejected, "reject", "accept"), "continue")
        used = np.take_along_axis(np.cumsum(cr, axis=-1), at, axis=-1)[..., 0]
        return PathOutcome(decision, first, np.where(hit, used, cr.sum(axis=-1)))

    # ---- the vectorised statistics (SequentialState applies the same formulas per window)

    def _llr_increments(self, ce, cr, be, br):
        rho = self.relative_risk
        if not self.conditional:
            p0 = self.baseline_error_rate
            p1 = rho * p0
            return ce * math.log(p1 / p0) + (cr - ce) * math.log((1 - p1) / (1 - p0))
        return _count_ratio_increment(ce, cr, be, br, rho)

    def _log_mixture_path(self, ce, cr, be, br):
        if not self.conditional:
            k, n = np.cumsum(ce, axis=-1), np.cumsum(cr, axis=-1)
            with np.errstate(divide="ignore", invalid="ignore"):
                return _normal_mixture(k, n, self.baseline_error_rate, self._tau)
        grid = np.asarray(self.prior_relative_risks)
        inc = _count_ratio_increment(
            ce[..., None], cr[..., None], be[..., None], br[..., None], grid
        )
        from scipy.special import logsumexp

        return logsumexp(np.cumsum(inc, axis=-2) + self._log_weights, axis=-1)

    @property
    def _tau(self) -> float:
        # used only by the known-baseline test (not ``conditional``): baseline_error_rate is set
        return self.tau if self.tau is not None else float(cast(float, self.baseline_error_rate))

    @property
    def _log_weights(self) -> np.ndarray:
        w = (
            np.ones(len(self.prior_relative_risks))
            if self.prior_weights is None
            else self.prior_weights
        )
        w = np.asarray(w, float)
        return np.log(w / w.sum())


def _check_counts(ce, cr, be, br) -> None:
    if (np.asarray(ce) < 0).any() or (np.asarray(be) < 0).any():
        raise ValueError("error counts must be >= 0")
    if (np.asarray(ce) > np.asarray(cr)).any() or (np.asarray(be) > np.asarray(br)).any():
        raise ValueError("a window has more errors than requests")


def _count_ratio_increment(ce, cr, be, br, rho):
    """log[Bin(k_c; K, π(ρ)) / Bin(k_c; K, π0)] = k_c log ρ + K log((n_c+n_b)/(ρ n_c+n_b)).

    Zero when either arm had no traffic (π0 = π(ρ) ∈ {0, 1}: the window says nothing).
    """
    both = (cr > 0) & (br > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = ce * np.log(rho) + (ce + be) * np.log((cr + br) / (rho * cr + br))
    return np.where(both, value, 0.0)


def _normal_mixture(k, n, p0: float, tau: float):
    """log Λ_n of the N(p0, τ²) mixture for the canary mean k/n; −inf when k/n ≤ p0 (one-sided)."""
    var = p0 * (1 - p0)
    tau2 = tau * tau
    mean = k / n
    log_lam = 0.5 * np.log(var / (var + n * tau2)) + (n * n * tau2 * (mean - p0) ** 2) / (
        2 * var * (var + n * tau2)
    )
    return np.where((n > 0) & (mean > p0), log_lam, -np.inf)


@dataclass(frozen=True)
class PathOutcome:
    """``SequentialTest.run`` per path: decision, window index (−1: none), canary requests used."""

    decision: np.ndarray
    window: np.ndarray
    canary_requests: np.ndarray


# --------------------------------------------------------------------------- state


class SequentialState:
    """The running test: feed one window's increments at a time; decisions are final.

    ``statistic`` is the LLR (SPRT) or the log e-value (mSPRT; −inf while a known-baseline
    canary is not above p0, which can never reject). ``always_valid_p`` (mSPRT only) is the running
    minimum of 1/Λ.
    """

    __slots__ = (
        "_components",
        "_inc",
        "_log_w",
        "_threshold",
        "always_valid_p",
        "baseline_errors",
        "baseline_requests",
        "canary_errors",
        "canary_requests",
        "decision",
        "statistic",
        "test",
        "windows",
    )

    def __init__(self, test: SequentialTest) -> None:
        self.test = test
        self.canary_errors = self.canary_requests = 0
        self.baseline_errors = self.baseline_requests = 0
        self.windows = 0
        self.decision: Decision = "continue"
        if test.test == "sprt":
            self._threshold = sprt_bounds(test.alpha, test.beta)
            self.statistic = 0.0
            self.always_valid_p: float | None = None
            if not test.conditional:
                p0 = float(cast(float, test.baseline_error_rate))  # not conditional: set
                p1 = test.relative_risk * p0
                self._inc = (math.log(p1 / p0), math.log((1 - p1) / (1 - p0)))
        else:
            self._threshold = (math.log(1 / test.alpha), -math.inf)
            self.always_valid_p = 1.0
            if test.conditional:
                self._log_w = test._log_weights
                self._components = np.zeros(len(test.prior_relative_risks))
                self.statistic = 0.0
            else:
                self.statistic = -math.inf

    def update(
        self,
        canary_errors: int,
        canary_requests: int,
        baseline_errors: int = 0,
        baseline_requests: int = 0,
    ) -> Decision:
        """Consume one window (increments, not totals) and return the decision so far."""
        if not (
            0 <= canary_errors <= canary_requests and 0 <= baseline_errors <= baseline_requests
        ):
            raise ValueError(
                f"bad window counts: canary {canary_errors}/{canary_requests}, "
                f"baseline {baseline_errors}/{baseline_requests} (need 0 <= errors <= requests)"
            )
        if self.decision != "continue":
            return self.decision
        if canary_requests == 0 and baseline_requests == 0:
            return self.decision
        self.windows += 1
        self.canary_errors += canary_errors
        self.canary_requests += canary_requests
        self.baseline_errors += baseline_errors
        self.baseline_requests += baseline_requests
        test = self.test
        if test.test == "sprt":
            if test.conditional:
                if canary_requests > 0 and baseline_requests > 0:
                    rho = test.relative_risk
                    total = canary_requests + baseline_requests
                    self.statistic += canary_errors * math.log(rho) + (
                        canary_errors + baseline_errors
                    ) * math.log(total / (rho * canary_requests + baseline_requests))
            else:
                up, down = self._inc
                self.statistic += canary_errors * up + (canary_requests - canary_errors) * down
            upper, lower = self._threshold
            if self.statistic >= upper:
                self.decision = "reject"
            elif self.statistic <= lower:
                self.decision = "accept"
            return self.decision
        if test.conditional:
            if canary_requests > 0 and baseline_requests > 0:
                grid = np.asarray(test.prior_relative_risks)
                self._components += _count_ratio_increment(
                    canary_errors, canary_requests, baseline_errors, baseline_requests, grid
                )
            from scipy.special import logsumexp

            self.statistic = float(logsumexp(self._components + self._log_w))
        elif self.canary_requests > 0:
            self.statistic = float(
                _normal_mixture(
                    self.canary_errors,
                    self.canary_requests,
                    float(cast(float, test.baseline_error_rate)),  # not conditional: set
                    test._tau,
                )
            )
        if self.statistic > 0.0:
            # mSPRT only (the SPRT returned above): __init__ set always_valid_p to 1.0, and a
            # statistic <= 0 (e^-statistic >= 1) cannot lower it: e^-statistic would overflow
            # for a statistic below -709, which evidence for the null reaches on busy services
            self.always_valid_p = min(cast(float, self.always_valid_p), math.exp(-self.statistic))
        if self.statistic >= self._threshold[0]:
            self.decision = "reject"
        return self.decision

    def __repr__(self) -> str:
        return (
            f"SequentialState({self.test.test}, decision={self.decision!r}, "
            f"statistic={self.statistic:.4g}, windows={self.windows})"
        )
