"""The shared helpers of the per-step problem (inversion_core.problem): evaluation at the answer, best iterate,
the once-per-step RMS of x_lo, and each solver's expected model calls against the calls it makes."""
import pytest
import torch

from inversion_core import GaussianMixture, invert
from inversion_core.ddim import DDIMInversion
from inversion_core.easyinv import EasyInv
from inversion_core.problem import BestIterate, Denoiser, StepProblem, StepSolution, batch_rms
from inversion_core.renoise import ReNoise
from inversion_core.rnri import RNRI

pytestmark = pytest.mark.usefixtures("one_thread")

SIGMAS = torch.tensor([14.6, 6.0, 2.9, 1.2, 0.5, 0.0], dtype=torch.float64)


def problem(batch=3):
    gmm = GaussianMixture.random((4, 6, 6), components=3, seed=0)
    x0 = gmm.sample(batch, torch.Generator().manual_seed(1))
    den = Denoiser(gmm.denoiser("ve"), dtype=torch.float64)
    return StepProblem(den, x0, x0, 0.5, 0.5, 0.0, 4, 0, x0)


def test_evaluation_at_uses_the_solvers_evaluation_or_calls_the_model_once():
    p = problem()
    ev = p.evaluate(p.x_lo)
    assert p.evaluation_at(StepSolution(ev.x, torch.ones(3), torch.zeros(3), evaluation=ev)) is ev
    assert p.denoiser.calls == 1
    other = p.evaluation_at(StepSolution(ev.image, torch.ones(3), torch.zeros(3), evaluation=ev))
    assert p.denoiser.calls == 2 and other.x is ev.image                 # an evaluation elsewhere is not used
    assert p.evaluation_at(StepSolution(ev.image, torch.ones(3), torch.zeros(3))).x is ev.image
    assert p.denoiser.calls == 3


def test_best_iterate_keeps_the_lowest_score_per_sample():
    p = problem()
    first, second = p.evaluate(p.x_lo), p.evaluate(2.0 * p.x_lo)
    best = BestIterate()
    assert best.offer(first, torch.tensor([1.0, 1.0, float("nan")], dtype=torch.float64)).all()
    better = best.offer(second, torch.tensor([0.5, 2.0, 0.1], dtype=torch.float64))
    assert better.tolist() == [True, False, False]                      # NaN is never beaten: taken first, kept
    torch.testing.assert_close(best.evaluation.x, torch.stack([second.x[0], first.x[1], first.x[2]]))
    torch.testing.assert_close(best.evaluation.d, torch.stack([second.d[0], first.d[1], first.d[2]]))
    assert best.score[:2].tolist() == [0.5, 1.0]


def test_relative_error_is_the_residual_rms_over_the_rms_of_x_lo():
    p = problem()
    r = p.evaluate(p.x_lo).residual
    torch.testing.assert_close(p.relative_error(r), batch_rms(r) / batch_rms(p.x_lo), rtol=0, atol=0)


@pytest.mark.parametrize("solver", [DDIMInversion(), EasyInv(), RNRI("newton"), RNRI("released", 3),
                                    ReNoise(4, first_step="none"), ReNoise(9, average=False, first_step="none")],
                         ids=lambda s: s.name)
def test_fixed_cost_solvers_expect_the_calls_they_make(solver):
    gmm = GaussianMixture.random((4, 6, 6), components=3, seed=0)
    x0 = gmm.sample(2, torch.Generator().manual_seed(1))
    inv = invert(gmm.denoiser("ve"), x0, SIGMAS, solver)
    assert [s.model_calls for s in inv.stats] == [solver.expected_calls()] * 5
