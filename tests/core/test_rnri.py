"""RNRI: both variants beat DDIM; the newton variant runs under the host's torch.inference_mode()."""
import pytest
import torch
from torch.nn import functional as F

from inversion_core import GaussianMixture, invert, sample
from inversion_core.ddim import DDIMInversion
from inversion_core.problem import batch_rms
from inversion_core.rnri import RNRI, GradientUnavailable

VE_SIGMAS = torch.tensor([14.6, 6.0, 2.9, 1.2, 0.5, 0.2, 0.03, 0.0], dtype=torch.float64)
FLOW_SIGMAS = torch.tensor([1.0, 0.9, 0.75, 0.5, 0.25, 0.0], dtype=torch.float64)


class ConvDenoiser(torch.nn.Module):
    """Mixture posterior mean plus a small learned-looking conv correction (an imperfect, non-analytic model).

    ``clone_weights`` mimics the node's weight wrappers (``w.clone()`` per forward): the only way a model whose
    parameters are inference tensors can be differentiated (see shared/research/comfyui-host.md, Sec. 3).
    """

    def __init__(self, gmm, parametrization, channels, clone_weights=True):
        super().__init__()
        self.base = gmm.denoiser(parametrization)
        self.conv = torch.nn.Conv2d(channels, channels, 3, padding=1)
        torch.nn.init.normal_(self.conv.weight, std=0.05)
        self.clone_weights = clone_weights

    def forward(self, x, sigma):
        w, b = self.conv.weight, self.conv.bias
        if self.clone_weights:
            w, b = w.clone(), b.clone()
        return self.base(x, sigma) + 0.05 * torch.tanh(F.conv2d(x.to(w.dtype), w, b, padding=1)).to(x.dtype)


def mixture(shape=(4, 6, 6), dtype=torch.float32):
    return GaussianMixture.random(shape, components=3, seed=0, dtype=dtype)


def error(den, x0, sigmas, solver, parametrization="ve"):
    inv = invert(den, x0, sigmas, solver, parametrization=parametrization)
    rec = sample(den, inv.latent, sigmas, parametrization=parametrization)
    return batch_rms(rec - x0), inv


@pytest.mark.parametrize("parametrization,sigmas", [("ve", VE_SIGMAS), ("flow", FLOW_SIGMAS)])
def test_newton_under_inference_mode_beats_ddim(parametrization, sigmas):
    gmm = mixture()
    with torch.inference_mode():             # the host: weights, latents and the whole call in inference mode
        model = ConvDenoiser(gmm, parametrization, 4)
        x0 = gmm.sample(3, torch.Generator().manual_seed(1)).float()
        assert model.conv.weight.is_inference()
        ddim, _ = error(model, x0, sigmas, DDIMInversion(), parametrization)
        newton, inv = error(model, x0, sigmas, RNRI("newton"), parametrization)
    assert (newton < 0.2 * ddim).all(), (newton, ddim)
    assert all(s.model_calls == 4 for s in inv.stats)        # iterations + 2 forwards per step


def test_newton_without_usable_gradients_raises_gradient_unavailable():
    gmm = mixture()
    with torch.inference_mode():
        model = ConvDenoiser(gmm, "ve", 4, clone_weights=False)   # inference-tensor weights used in place
        x0 = gmm.sample(2, torch.Generator().manual_seed(1)).float()
        with pytest.raises(GradientUnavailable):
            invert(model, x0, VE_SIGMAS, RNRI("newton"))


def test_newton_with_a_model_that_has_no_backward_raises_gradient_unavailable():
    gmm = mixture()
    base = gmm.denoiser("ve")

    def detached(x, sigma):
        with torch.no_grad():
            return base(x, sigma)

    x0 = gmm.sample(2, torch.Generator().manual_seed(1)).float()
    with pytest.raises(GradientUnavailable):
        invert(detached, x0, VE_SIGMAS, RNRI("newton"))


def test_newton_improves_with_iterations_and_reports_costs():
    gmm = mixture(dtype=torch.float64)
    den = gmm.denoiser("ve")
    x0 = gmm.sample(3, torch.Generator().manual_seed(2))
    err2, inv2 = error(den, x0, VE_SIGMAS, RNRI("newton", iterations=2))
    err5, _ = error(den, x0, VE_SIGMAS, RNRI("newton", iterations=5))
    assert (err5 <= err2 * 1.0001).all()
    # the evaluation at the answer is handed over: its residual is the step's reported residual
    step_problem_residuals = [max(s.residual) for s in inv2.stats]
    assert all(r == r for r in step_problem_residuals)           # not NaN: measured at the returned x


def test_released_variant_beats_ddim():
    gmm = mixture()
    den = gmm.denoiser("ve")
    x0 = gmm.sample(4, torch.Generator().manual_seed(3)).float()
    ddim, _ = error(den, x0, VE_SIGMAS, DDIMInversion())
    released, inv = error(den, x0, VE_SIGMAS, RNRI("released"))
    assert released.mean() < ddim.mean()
    assert all(s.model_calls == 2 for s in inv.stats)


def test_released_update_is_the_sign_step():
    """One released iteration from x_lo: x1 = x_lo + mean(f) * sign(G(x_lo) - x_lo); with one iteration the answer
    is y0 = G(x_lo) (DDIM), with two the better of y0 and y1 by mean f."""
    gmm = mixture(dtype=torch.float64)
    den = gmm.denoiser("ve")
    x0 = gmm.sample(2, torch.Generator().manual_seed(4))
    one, _ = error(den, x0, VE_SIGMAS, RNRI("released", iterations=1))
    ddim, _ = error(den, x0, VE_SIGMAS, DDIMInversion())
    torch.testing.assert_close(one, ddim)


@pytest.mark.parametrize("shape", [(16, 4, 4), (4, 2, 4, 4), (16, 2, 3, 3)])
@pytest.mark.parametrize("variant", ["newton", "released"])
def test_shapes(shape, variant):
    gmm = mixture(shape)
    den = gmm.denoiser("flow")
    x0 = gmm.sample(2, torch.Generator().manual_seed(5)).float()
    ddim, _ = error(den, x0, FLOW_SIGMAS, DDIMInversion(), "flow")
    err, inv = error(den, x0, FLOW_SIGMAS, RNRI(variant), "flow")
    assert inv.latent.shape == x0.shape
    assert err.mean() < ddim.mean()


def test_bad_arguments():
    with pytest.raises(ValueError):
        RNRI("paper")
    with pytest.raises(ValueError):
        RNRI("newton", iterations=0)
