"""The class-conditional analytic model against its closed forms: denoiser, classes, cfg branches, ideal edit."""
import math

import pytest
import torch

from inversion_core import AdaptiveInversion, invert, sample
from inversion_core.analytic import GaussianMixture
from inversion_core.analytic_conditional import ClassConditionalGaussian, class_weights_from_context
from inversion_core.spaces import unit_signal_noise

VE = torch.cat([torch.logspace(math.log10(14.6), math.log10(0.03), 12, dtype=torch.float64),
                torch.zeros(1, dtype=torch.float64)])
FLOW = torch.linspace(1.0, 0.0, 13, dtype=torch.float64)


def _model(seed=3):
    return ClassConditionalGaussian.random((4, 8, 8), classes=4, seed=seed)


def _onehot(batch, k, classes=4):
    c = torch.zeros(batch, 1, classes, dtype=torch.float64)
    c[:, :, k] = 1.0
    return c


def test_unconditional_branch_is_the_mixture_and_one_class_is_its_gaussian():
    m = _model()
    x = torch.randn(5, 4, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3
    sigma = torch.full((5,), 1.7, dtype=torch.float64)
    mix = GaussianMixture(m.means, m.std.expand_as(m.means), torch.ones(4, dtype=torch.float64))
    for param in ("ve", "flow"):
        s = sigma if param == "ve" else torch.full((5,), 0.6, dtype=torch.float64)
        empty = torch.zeros(5, 1, 4, dtype=torch.float64)
        assert torch.allclose(m.denoiser(param)(x, s, empty), mix.denoiser(param)(x, s), atol=1e-12)
        assert torch.allclose(m.denoiser(param)(x, s, None), mix.denoiser(param)(x, s), atol=1e-12)
        # one class: the Gaussian posterior mean mu + alpha s^2 / (alpha^2 s^2 + beta^2) (u - alpha mu)
        alpha, beta, r = unit_signal_noise(s, param)
        a, b, rr = alpha[0], beta[0], r[0]
        u = x / rr
        closed = m.means[2] + a * m.std ** 2 / (a * a * m.std ** 2 + b * b) * (u - a * m.means[2])
        assert torch.allclose(m.denoiser(param)(x, s, _onehot(5, 2)), closed, atol=1e-10)


def test_context_weights_and_errors():
    ctx = torch.zeros(2, 3, 6, dtype=torch.float64)
    ctx[0, 0, 1] = 1.0
    ctx[0, 2, 3] = 3.0
    w = class_weights_from_context(ctx, 4)
    assert w.tolist() == [[0.0, 1.0, 0.0, 3.0], [0.0, 0.0, 0.0, 0.0]]
    with pytest.raises(ValueError, match="conditioning must be"):
        class_weights_from_context(torch.zeros(1, 1, 2), 4)


def test_class_posterior_recognises_samples_and_realism_is_zero_on_average():
    m = _model()
    labels = torch.arange(4).repeat(64)
    x0 = m.sample(labels, torch.Generator().manual_seed(1))
    post = m.class_posterior(x0)
    assert (post.argmax(1) == labels).float().mean() > 0.9
    assert abs(float(m.excess_nll(x0, labels).mean())) < 0.02       # chi^2 / dim averages 1 for the own class
    # under another class the excess is the whitened squared distance of the means / 2 per dimension on average
    other = (labels + 1) % 4
    d2 = (((m.means[labels] - m.means[other]) / m.std) ** 2).flatten(1).mean(1)
    assert torch.allclose(m.excess_nll(x0, other).mean(), m.excess_nll(x0, labels).mean() + 0.5 * d2.mean(),
                          atol=0.01)


@pytest.mark.parametrize("param,sigmas", [("ve", VE), ("flow", FLOW)])
def test_exact_inversion_then_euler_under_another_class_is_the_closed_form_edit(param, sigmas):
    m = _model()
    x0 = m.sample(torch.zeros(6, dtype=torch.long), torch.Generator().manual_seed(2))
    dA, dB = m.class_denoiser(param, 0), m.class_denoiser(param, 2)
    inv = invert(dA, x0, sigmas, AdaptiveInversion(tolerance=1e-9, max_calls=80), parametrization=param)
    edit = sample(dB, inv.latent, sigmas, parametrization=param)
    closed = m.transport(x0, 0, 2, float(sigmas[0]), param, sigmas=sigmas)
    assert (edit - closed).abs().max() < 1e-6
    assert (sample(dA, inv.latent, sigmas, parametrization=param) - x0).abs().max() < 1e-6


@pytest.mark.parametrize("param,top", [("ve", 14.6), ("flow", 0.999)])
def test_euler_edit_converges_to_the_probability_flow_transport(param, top):
    """The closed-form ideal edit (exact ODE) is the limit of euler edits over finer schedules."""
    m = _model()
    x0 = m.sample(torch.ones(2, dtype=torch.long), torch.Generator().manual_seed(3))
    exact = m.transport(x0, 1, 3, top, param)
    errors = []
    for n in (25, 100, 400):
        sig = torch.cat([torch.logspace(math.log10(top), math.log10(1e-3), n, dtype=torch.float64),
                         torch.zeros(1, dtype=torch.float64)])
        errors.append(float((m.transport(x0, 1, 3, top, param, sigmas=sig) - exact).abs().max()))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.1 * errors[0]                  # first order: 16x the steps, ~1/16 the error
    # flow to sigma 1: the signal is gone, the transport is the pure translation x0 - mu_A + mu_B
    flat = m.transport(x0, 1, 3, 1.0, "flow")
    assert torch.allclose(flat, x0 - m.means[1] + m.means[3], atol=1e-12)
    assert (m.class_posterior(flat)[:, 3] > 0.5).all()


def test_bad_construction_is_refused():
    with pytest.raises(ValueError, match="std must be positive"):
        ClassConditionalGaussian(torch.zeros(2, 3), -1.0)
    with pytest.raises(ValueError, match="weights"):
        ClassConditionalGaussian(torch.zeros(2, 3), 1.0, torch.tensor([1.0, 0.0]))
