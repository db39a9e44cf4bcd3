"""ODE inversion (inversion_core/ode_inversion.py): the continuous probability-flow inverse, not the sampler's."""
from __future__ import annotations

import math

import pytest
import torch

from benchmarks.core_benchmark import schedule
from inversion_core import invert
from inversion_core.conditional_mixture import ConditionalMixture, probability_flow
from inversion_core.ddim import DDIMInversion
from inversion_core.errors import InversionError
from inversion_core.metrics import psnr
from inversion_core.ode_inversion import ODEInversion


def test_the_bottom_interval_is_log_spaced_from_the_floor():
    solver = ODEInversion(bottom_substeps=8, bottom_floor=0.05)
    levels = solver.grid(0.0, 0.25)
    assert levels[0] == 0.0 and levels[1] == pytest.approx(0.0125) and levels[-1] == pytest.approx(0.25)
    ratios = [b / a for a, b in zip(levels[1:-1], levels[2:], strict=True)]
    assert len(levels) == 9 and max(ratios) == pytest.approx(min(ratios))
    assert ODEInversion(substeps=2).grid(0.5, 1.0) == [0.5, 0.75, 1.0]


def test_calls_per_step_are_as_documented():
    truth = ConditionalMixture.hard(shape=(2, 4, 4))
    x0 = truth.sample(torch.zeros(2, dtype=torch.long)).float()
    sigmas = schedule("flow", 10, "simple")
    inversion = invert(truth.guided("flow", 0), x0, sigmas, ODEInversion(bottom_substeps=8), parametrization="flow")
    assert inversion.model_calls == 2 * 9 + (2 * 8 - 1)


def test_it_refuses_stochastic_steps():
    truth = ConditionalMixture.hard(shape=(2, 4, 4))
    x0 = truth.sample(torch.zeros(1, dtype=torch.long)).float()
    with pytest.raises(InversionError, match="deterministic"):
        invert(truth.guided("ve", 0), x0, schedule("ve", 4, "simple"), ODEInversion(), step_kind="euler_ancestral")


@pytest.mark.parametrize("parametrization", ["ve", "flow"])
def test_it_lands_near_the_continuous_inverse_where_the_euler_inverses_do_not(parametrization):
    """The inverted noise against the reference inverse of the probability-flow ODE (float64 RK4): the ODE
    inversion at 10 steps is far closer to it than DDIM inversion, and more bottom substeps bring it closer."""
    truth = ConditionalMixture.hard()
    x0 = truth.sample(torch.zeros(8, dtype=torch.long), torch.Generator().manual_seed(1))
    sigmas = schedule(parametrization, 10, "simple")
    field = truth.guided(parametrization, 0)
    reference = probability_flow(field, x0, 0.0, float(sigmas[0]), parametrization, 200)
    distance = {}
    for name, solver in (("ddim", DDIMInversion()), ("ode2", ODEInversion(bottom_substeps=2)),
                         ("ode8", ODEInversion(bottom_substeps=8))):
        latent = invert(field, x0.float(), sigmas, solver, parametrization=parametrization).latent
        distance[name] = float(psnr(reference, latent.double(), 2.0).mean())
    assert distance["ode8"] > distance["ode2"] > distance["ddim"], distance
    assert distance["ode8"] > distance["ddim"] + 20.0, distance
    assert math.isfinite(distance["ode8"])
