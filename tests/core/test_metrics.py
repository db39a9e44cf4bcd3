"""Per-sample metrics (inversion_core.metrics) against hand-computed values."""
import math

import torch
import torch.nn.functional as F

from inversion_core.metrics import implied_noise, mse, noise_stats, psnr, rms


def test_mse_rms_psnr_known_values():
    reference = torch.zeros(2, 3, 4, 4)
    reference[:, :, 0, 0] = -1.0
    reference[:, :, 1, 1] = 1.0            # per-sample range 2
    reference[1] *= 3.0                    # sample 1: range 6
    estimate = reference.clone()
    estimate[0] += 0.1
    estimate[1] -= 0.2
    assert torch.allclose(mse(reference, estimate), torch.tensor([0.01, 0.04]))
    assert torch.allclose(rms(estimate - reference), torch.tensor([0.1, 0.2]))
    expected = torch.tensor([10 * math.log10(4 / 0.01), 10 * math.log10(36 / 0.04)])
    assert torch.allclose(psnr(reference, estimate), expected, atol=1e-4)
    assert torch.allclose(psnr(reference, estimate, data_range=2.0),
                          torch.tensor([10 * math.log10(4 / 0.01), 10 * math.log10(4 / 0.04)]), atol=1e-4)
    assert torch.isinf(psnr(reference, reference)).all()
    assert psnr(reference.double(), estimate.double()).dtype == torch.float64


def test_psnr_of_5d_latents_is_per_sample():
    g = torch.Generator().manual_seed(0)
    reference = torch.randn(3, 4, 2, 8, 8, generator=g)
    estimate = reference + 0.01 * torch.randn(3, 4, 2, 8, 8, generator=g)
    values = psnr(reference, estimate)
    assert values.shape == (3,)
    single = psnr(reference[1:2], estimate[1:2])
    assert torch.allclose(values[1:2], single)


def test_noise_stats_of_white_and_smooth_noise():
    g = torch.Generator().manual_seed(0)
    eps = torch.randn(2, 4, 64, 64, generator=g, dtype=torch.float64)
    x0 = 0.5 * torch.randn(2, 4, 64, 64, generator=g, dtype=torch.float64)
    # exact with x0: ve and flow recover eps itself
    for parametrization, sigma in (("ve", 3.0), ("flow", 0.7)):
        a, b = (1.0, sigma) if parametrization == "ve" else (1.0 - sigma, sigma)
        latent = a * x0 + b * eps
        assert torch.allclose(implied_noise(latent, sigma, parametrization, x0), eps)
        stats = noise_stats(latent, sigma, parametrization, x0)
        assert torch.allclose(stats["std"], eps.flatten(1).std(dim=1))
        assert (stats["mean"].abs() < 0.04).all() and (stats["corr"].abs() < 0.04).all()   # 5 standard errors
    # proxy without x0: x / sqrt(a^2 + b^2) is exactly x at flow sigma 1 and close to eps at large ve sigma
    assert torch.equal(implied_noise(eps, 1.0, "flow"), eps)
    far = noise_stats(x0 + 80.0 * eps, 80.0, "ve")
    assert ((far["std"] - 1).abs() < 0.02).all()
    # per-sample sigma [B]
    per_sample = noise_stats(torch.stack([x0[0] + 2 * eps[0], x0[1] + 5 * eps[1]]), torch.tensor([2.0, 5.0]), "ve",
                             x0)
    assert torch.allclose(per_sample["std"], eps.flatten(1).std(dim=1))
    # a blurred field has strongly correlated neighbours
    blurred = F.avg_pool2d(F.pad(eps, (1, 1, 1, 1), mode="circular"), 3, stride=1)
    smooth = noise_stats(blurred, 1.0, "flow")
    assert (smooth["corr_h"] > 0.5).all() and (smooth["corr_w"] > 0.5).all()
    assert torch.allclose(smooth["corr"], 0.5 * (smooth["corr_h"] + smooth["corr_w"]))
