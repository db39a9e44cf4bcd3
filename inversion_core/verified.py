"""End-to-end verified inversion: control the reconstruction the user sees, not only each step's landing.

Why per-step tolerances are not enough. Write the forward sampler as x_k = F_k(x_{k+1}) (``steps``) and the
composed sampler Phi = F_0 o ... o F_{N-1}, so the user's reconstruction of an inverted latent z = x_N is Phi(z).
If step k of the inversion lands with error e_k = F_k(x_{k+1}) - x_k, then to first order

    Phi(z) - x_0 = sum_k J_0 J_1 ... J_{k-1} e_k,        J_j = dF_j / dx at x_{j+1}                    (V1)

(the linearised error propagation of one-step methods; Hairer, Norsett & Wanner, "Solving Ordinary Differential
Equations I", Sec. II.3, "Lady Windermere's fan"). For one Euler step of a denoiser,
J = (1 - h) I + h dD/dx with h = (sigma_hi - sigma_lo) / sigma_hi, and dD/dx = Cov[x0 | x] / sigma^2 (Tweedie's
second-order identity): it is large between close data modes, where the posterior covariance is large, so the
products in (V1) reach 10^3-10^4 on some images even when every |e_k| is tiny. In thin (stiff) directions the
opposite holds: the sampler contracts them, and an exact inverse must blow them up, which drives a per-step exact
solver off the typical set into exactly the regions where J is large. A per-step tolerance bounds the wrong
quantity; only the end-to-end error Phi(z) - x_0 is what the user sees.

So this driver measures it: after inverting, it *replays the forward sampler* the user will run (same step kind,
sigmas, guidance -- the same ``denoise`` callable -- and the stored noises) from the inverted latent, batched, and
computes every image's reconstruction PSNR against its input latent (``metrics.psnr``). Then, while an image is
below ``target_psnr`` and the budget lasts:

1. **Candidates.** Every image the primary left below the target is inverted by every candidate too, each
   verified the same way -- by default DDIM inversion (one call a step) and ReNoise with averaging (Garibi et
   al. 2024, eq. 5 + Sec. 4.2), whose fixed-iteration, partially converged answers stay near the typical set where
   the exact solution does not -- and each image keeps the candidate with the best *verified* PSNR (a cheap
   candidate that just passes the target does not stop a better one from being tried). No such image is then
   worse than the best cheap method. They skip an image whose reconstruction error the final step's own landing
   error explains (within ``final_step_margin`` dB): that step (x_0 = D(x_1, sigma_1) for Euler) is the same
   equation for every method, independent of the rest of the trajectory, and the candidates give it 1 and 9
   calls against the primary's ``final_max_calls``, so they can only land it worse. Measured: on the learned
   models the two agree to 0.0 dB on every image below the target (and the candidates were never kept there); on
   the hard mixture they differ by 47-68 dB -- solved steps amplified by the sampler, (V1) -- and the
   candidates win.
2. **Defect correction** (iterative refinement; Wilkinson 1963; Stetter 1978, "The defect correction principle
   and discretization methods", Numer. Math. 29). With an approximate inverse Psi of Phi, invert a corrected
   target t instead of x_0:

       t^{j+1} = t^j + omega (x_0 - Phi(Psi(t^j))),          t^0 = x_0,                                    (V2)

   which converges to Phi(Psi(t*)) = x_0 when the systematic error of Psi varies slowly with its target (the
   inverse's non-convergence and discretisation bias largely cancel between t^j and t^{j+1}). That holds near
   the answer, where omega = 1 is the full step; an image still below ``linear_psnr`` starts at omega = 1/2,
   because there the inverse's non-convergence grows with the correction (measured on the learned models: the
   full first step was kept on none of the images below 40 dB, the half step on about half of them). Each image
   keeps its own omega, halved after a pass that did not improve its verified PSNR (a backtracking safeguard:
   (V2) need not contract on every image), and each image is refined with the solver of its current best candidate, from
   a cold start: the same map Psi at every pass is what makes its bias cancel (measured: warm-starting each step
   from the previous pass's answer saved under 5% of the calls and lost most of the gain). The passes skip the
   images whose shortfall the final step's landing explains (the candidates' gate): a pass re-solves all N steps
   to move mostly that one equation, which the primary's final-step rescue continues instead for no re-solve
   (measured on the four learned crops the final step limits, N = 10: two passes gave 21.8 / 24.1 / 30.8 /
   42.9 dB at 252 evaluations per image, the rescue 22.6 / 25.6 / 30.8 / 42.9 dB at 146).

The primary (``exact_solver``) is ``AdaptiveInversion`` with the final step's calls set by the end-to-end target and
one economy that this check makes safe. The free last step: each intermediate step answers the iterate its next call
would only have verified, and skips that call (the replay verifies the whole trajectory instead). The final step,
whose landing error reaches the reconstruction undamped, stops ``HEADROOM_DB`` above the target (further calls
there change nothing the user sees) and, for an image whose landing is still below the target when its budget is
spent, goes on for a second budget (the rescue). All three are in ``adaptive``'s docstring.

Every reported figure is a replay of the sampler, never an estimate. The answer for each image is the verified
best; its per-step latents are the replayed forward trajectory, so they are exactly what the sampler produces.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Sequence

import torch

from .adaptive import AdaptiveInversion
from .ddim import DDIMInversion
from .metrics import psnr, psnr_of_rms
from .monitor import SILENT, Monitor
from .problem import DenoiseFn, StepSolver, batch_rms
from .renoise import ReNoise
from .residuals import landing_residual
from .spaces import per_sample, scatter_rows
from .trajectory import Inversion, invert, sample

HEADROOM_DB = 30.0   # the primary's final step stops this far above the end-to-end target (module docstring)


def exact_solver(target_psnr: float = 40.0, **options) -> Callable[[], AdaptiveInversion]:
    """Exact Invert's primary for ``invert_verified`` at ``target_psnr``: ``AdaptiveInversion(**options)`` with the
    free last step, the final step stopped ``HEADROOM_DB`` above the target, and the final step's rescue for
    images whose final landing is still below the target (neither for a target of 0, measure only)."""
    measure_only = not target_psnr > 0
    final = {} if measure_only else {"final_stop_psnr": float(target_psnr) + HEADROOM_DB,
                                     "final_rescue_psnr": float(target_psnr)}
    return lambda: AdaptiveInversion(free_last_step=True, **final, **options)


CHEAP_CANDIDATES: Dict[str, Callable[[], StepSolver]] = {
    "ddim": DDIMInversion,
    "renoise": lambda: ReNoise(regularizer=None),
}


@dataclass
class Verification:
    """What the end-to-end check measured (per image where a list)."""

    psnr: list                      # verified reconstruction PSNR of the returned latent, dB
    chosen: list                    # which candidate each image's answer came from ("primary", "ddim", ...)
    target_psnr: float
    passes: list = field(default_factory=list)   # one dict per pass: kind, model calls, PSNR per image, kept
    model_calls: int = 0            # all model calls (batched), inversion passes and replays included
    image_evaluations: int = 0      # model evaluations of single images (= model_calls x batch without sub-batches)
    budget_exhausted: bool = False  # images are still below the target after the last allowed pass
    last_step_limited: list = field(default_factory=list)   # per image: below the target, and the sampler's last
                                    # step's own landing error explains the shortfall (more steps help, not passes)

    @property
    def mean(self) -> float:
        return float(sum(self.psnr) / len(self.psnr))

    @property
    def worst(self) -> float:
        return float(min(self.psnr))

    def below(self, threshold: float = 30.0) -> int:
        return sum(1 for p in self.psnr if p < threshold)

    @property
    def refinement_passes(self) -> int:
        return sum(1 for p in self.passes if p["kind"].startswith("refine"))

    def describe(self) -> str:
        """One line, e.g. ``reconstruction 57.3 dB mean, worst 41.2 dB, 0 under 30 dB, 2 refinement passes``."""
        line = (f"reconstruction {self.mean:.1f} dB mean, worst {self.worst:.1f} dB, {self.below()} under 30 dB "
                f"(target {self.target_psnr:g} dB), {len(self.passes) - 1} extra pass(es) "
                f"({self.refinement_passes} refinement), {self.model_calls} model calls")
        if self.passes and self.passes[0]["images"]:
            line += f" ({self.image_evaluations / self.passes[0]['images']:.0f} per image)"
        if self.budget_exhausted:
            line += f"; budget used up with {sum(1 for p in self.psnr if p < self.target_psnr)} image(s) below target"
        if any(self.last_step_limited):
            line += (f", {sum(self.last_step_limited)} limited by the sampler's last step (its own landing error "
                     "is the whole shortfall: more steps help, more passes do not)")
        return line


def replay(denoise: DenoiseFn, inversion: Inversion, *, eta: float = 1.0, s_noise: float = 1.0,
           monitor: Monitor = SILENT):
    """The forward sampler from the inverted latent with the stored noises: (reconstruction, trajectory)."""
    return sample(denoise, inversion.latent, inversion.sigmas, step_kind=inversion.step_kind,
                  parametrization=inversion.parametrization, noises=inversion.noises, eta=eta, s_noise=s_noise,
                  monitor=monitor, return_trajectory=True)


def _select(mask: torch.Tensor, new, old):
    """Per-image select for tensors (or None, for a deterministic step's noise)."""
    if new is None or old is None:
        return new if old is None else old
    return torch.where(per_sample(mask.to(new.dtype), new) > 0, new, old)


class _Best:
    """The verified best answer per image: latent, noises, replayed trajectory, PSNR, source candidate, target."""

    def __init__(self, inversion: Inversion, trajectory: list, scores: torch.Tensor, target: torch.Tensor,
                 kind: str):
        self.inversion, self.trajectory, self.psnr, self.target = inversion, trajectory, scores, target
        self.kinds = [kind] * scores.shape[0]

    def offer(self, inversion: Inversion, trajectory: list, scores: torch.Tensor, target: torch.Tensor,
              kind: str, allowed: torch.Tensor) -> torch.Tensor:
        better = allowed & (scores > self.psnr)
        if bool(better.any()):
            old = self.inversion
            self.inversion = Inversion(
                old.sigmas, [_select(better, a, b) for a, b in zip(inversion.latents, old.latents, strict=True)],
                [_select(better, a, b) for a, b in zip(inversion.noises, old.noises, strict=True)],
                old.stats, old.step_kind, old.parametrization, old.method, old.model_calls)
            self.trajectory = [_select(better, a, b) for a, b in zip(trajectory, self.trajectory, strict=True)]
            self.psnr = torch.where(better, scores, self.psnr)
            self.target = _select(better, target, self.target)
            self.kinds = [kind if flag else k for flag, k in zip(better.tolist(), self.kinds, strict=True)]
        return better


def explained_by_final_step(inversion: Inversion, x0: torch.Tensor, scores: torch.Tensor,
                             margin: float) -> torch.Tensor:
    """[B] bool: images whose verified PSNR ``scores`` is within ``margin`` dB of what the final step's own landing
    error allows (that step's ``StepStats.residual`` is relative to the RMS of x_0, where it lands). False where the
    schedule does not end at sigma 0 or the error is unknown."""
    final = [stats for stats in inversion.stats if stats.sigma_lo == 0]
    if not final:
        return torch.zeros(scores.shape[0], dtype=torch.bool)
    error = torch.tensor([float(r) for r in final[0].residual], dtype=torch.float64)
    allowed = psnr_of_rms(x0.cpu(), error * batch_rms(x0.cpu()).to(torch.float64)).to(torch.float64)
    return scores >= allowed - margin          # NaN compares False: the candidates run


def invert_verified(
    denoise: DenoiseFn,
    x0: torch.Tensor,
    sigmas: torch.Tensor,
    make_solver: Callable[[], StepSolver],
    *,
    target_psnr: float = 40.0,
    candidates: Sequence[str] = ("ddim", "renoise"),
    refinements: int = 2,
    final_step_margin: float = 3.0,
    linear_psnr: float = 40.0,
    independent: bool = False,
    step_kind: str = "euler",
    parametrization: str = "ve",
    eta: float = 1.0,
    s_noise: float = 1.0,
    noise_seed: int = 0,
    correction: str = "exact",
    monitor: Monitor = SILENT,
) -> Inversion:
    """Invert ``x0`` with ``make_solver()``, verify the reconstruction end to end, and improve the images below
    ``target_psnr`` with the verified ``candidates`` and up to ``refinements`` defect-correction passes (module
    docstring). Returns the best verified ``Inversion`` per image, with ``.verification`` (a ``Verification``) set
    and its latents replaced by the replayed forward trajectory (latents[-1] is ``x0``).

    ``final_step_margin``: candidates skip an image whose reconstruction is within this many dB of its final step's
    own landing error. ``linear_psnr``: images below it start defect correction with omega = 1/2 (module
    docstring, both).

    ``independent``: ``denoise`` treats every image of a batch on its own (any sub-batch may be evaluated, e.g.
    conditioning of batch 1), so each step's solver evaluates only the images it has not converged yet and the
    extra passes only the images below the target (the latter only for deterministic steps: a stochastic step's
    seeded noise depends on the image's place in the batch); otherwise every call evaluates the whole batch
    (conditioning per image stays aligned)."""
    unknown = [c for c in candidates if c not in CHEAP_CANDIDATES]
    if unknown:
        raise ValueError(f"unknown candidate(s) {unknown}; choose from {sorted(CHEAP_CANDIDATES)}")
    makers = {"primary": make_solver, **{name: CHEAP_CANDIDATES[name] for name in candidates}}
    options = dict(step_kind=step_kind, parametrization=parametrization, eta=eta, s_noise=s_noise,
                   noise_seed=noise_seed, correction=correction, independent=bool(independent), monitor=monitor)
    x0 = x0.to(torch.promote_types(x0.dtype, torch.float32))
    batch = x0.shape[0]
    subsets = bool(independent) and step_kind == "euler"
    calls = evaluations = 0
    passes = []
    best: Optional[_Best] = None

    def run(kind: str, target: torch.Tensor, mask: torch.Tensor):
        """Invert ``target`` with solver ``kind`` (only the images in ``mask`` when sub-batches are allowed), replay
        it, and return full-batch (inversion, trajectory, PSNR) -- images outside the sub-batch keep the best's."""
        nonlocal calls, evaluations
        index = torch.arange(batch)[mask] if subsets and not bool(mask.all()) else None
        part = target if index is None else target[index]
        inversion = invert(denoise, part, sigmas, makers[kind](), **options)
        reconstruction, trajectory = replay(denoise, inversion, eta=eta, s_noise=s_noise, monitor=monitor)
        replay_calls = len(inversion.sigmas) - 1
        calls += inversion.model_calls + replay_calls
        evaluations += inversion.image_evaluations + replay_calls * part.shape[0]
        scores = psnr(x0 if index is None else x0[index], reconstruction).to(torch.float64).cpu()
        scores = torch.nan_to_num(scores, nan=float("-inf"), posinf=float("inf"))
        if index is None:
            return inversion, trajectory, scores
        def whole(parts, wholes):
            return [scatter_rows(index, a, b) for a, b in zip(parts, wholes, strict=True)]

        full = Inversion(inversion.sigmas, whole(inversion.latents, best.inversion.latents),
                         whole(inversion.noises, best.inversion.noises), inversion.stats, inversion.step_kind,
                         inversion.parametrization, inversion.method)
        full_trajectory = whole(trajectory, best.trajectory)
        return full, full_trajectory, scatter_rows(index, scores, best.psnr)

    def log_pass(kind, mask, scores, kept, before_calls, before_evaluations):
        passes.append({"kind": kind, "model_calls": calls - before_calls,
                       "image_evaluations": evaluations - before_evaluations, "images": int(mask.sum()),
                       "psnr": [v if m else None for v, m in zip(scores.tolist(), mask.tolist(), strict=True)],
                       "kept": kept.tolist()})

    everyone = torch.ones(batch, dtype=torch.bool)
    inversion, trajectory, scores = run("primary", x0, everyone)
    first = inversion
    best = _Best(inversion, trajectory, scores, x0, "primary")
    log_pass("primary", everyone, scores, everyone, 0, 0)

    def below() -> torch.Tensor:
        return best.psnr < target_psnr

    # every candidate runs on every image the primary left below the target whose shortfall its final step does not
    # explain (module docstring): a cheap one that just passes the target must not keep a better one from being tried
    explained = explained_by_final_step(first, x0, best.psnr, final_step_margin)
    need = below() & ~explained
    for name in candidates:
        if not bool(need.any()):
            break
        before, before_evaluations = calls, evaluations
        inversion, trajectory, scores = run(name, x0, need)
        kept = best.offer(inversion, trajectory, scores, x0, name, need)
        log_pass(name, need, scores, kept, before, before_evaluations)

    omega = torch.where(best.psnr >= linear_psnr, 1.0, 0.5).to(torch.float64)     # (V2)'s first step, per image
    for _ in range(int(refinements)):
        need = below() & ~explained     # where the final step explains the shortfall, its rescue budget is spent
        if not bool(need.any()):
            break
        improved_any = torch.zeros_like(need)
        # each image is refined with the solver of its current best candidate (one pass per kind)
        for kind in dict.fromkeys(k for k, n in zip(best.kinds, need.tolist(), strict=True) if n):
            mask = need & torch.tensor([k == kind for k in best.kinds])
            step = per_sample(omega.to(x0.dtype), x0)
            target = torch.where(per_sample(mask.to(x0.dtype), x0) > 0,
                                 best.target + step * (x0 - best.trajectory[-1]), best.target)
            before, before_evaluations = calls, evaluations
            inversion, trajectory, scores = run(kind, target, mask)
            kept = best.offer(inversion, trajectory, scores, target, kind, mask)
            improved_any |= kept
            log_pass(f"refine:{kind}", mask, scores, kept, before, before_evaluations)
        omega = torch.where(need & ~improved_any, omega / 2, omega)

    latents = list(best.trajectory)
    latents[-1] = x0
    verification = Verification(psnr=best.psnr.tolist(), chosen=list(best.kinds), target_psnr=float(target_psnr),
                                passes=passes, model_calls=calls, image_evaluations=evaluations,
                                budget_exhausted=bool(below().any()),
                                last_step_limited=(below() & explained).tolist())
    result = best.inversion
    # the stored latents are the replay's forward trajectory: each forward step from a stored latent lands on the
    # next one by construction (the replay's own evaluation there), so only the last step misses, by x0 - landing
    # (``residuals``; no model call. Exact for images a refinement pass replayed in a sub-batch as far as the model
    # gives an image the same bits in a sub-batch as in the whole batch)
    residuals = [None] * (len(latents) - 2) + [landing_residual(x0, best.trajectory[-1])]
    return Inversion(result.sigmas, latents, result.noises, first.stats, result.step_kind, result.parametrization,
                     first.method, calls, verification, evaluations, residuals=residuals)
