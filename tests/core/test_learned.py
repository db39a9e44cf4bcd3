"""The test bed's learned denoisers: committed weights load, stay small, and denoise held-out photo latents.

Both committed models (``testbed.learned.MODELS``: "learned_a", "learned_b") run every test, each on its own eval
set of photos it never trained on."""
from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from inversion_core.spaces import add_noise, unit_signal_noise  # noqa: E402
from testbed.check_learned import v_mse  # noqa: E402
from testbed.learned import DEFAULT_WEIGHTS, MODELS, LearnedDenoiser, count_parameters, eval_latents, eval_sources  # noqa: E402
from testbed.photos import PHOTOS, latents_to_images, photos_to_latents  # noqa: E402

EVAL_LATENTS = ROOT / "testbed" / "data" / "eval_latents.safetensors"
# The first model's committed files stay as they were trained (benchmarks and docs quote results on them).
FIRST_MODEL_SHA256 = {
    DEFAULT_WEIGHTS: "8679ddf799a99afd48a1acf3e3debbb4045391f6ce5656d3a77bd6da66948817",
    EVAL_LATENTS: "591344c12d8774340a8652b1d5b1ae1c86733fbb71e813356233fcf541af4db3",
}
# Held-out v-MSE (the training loss, over 16 noise angles, ``testbed.check_learned.v_mse``, 1 noise draw) as a
# fraction of two trivial predictors fitted to the eval set itself: the best v_hat = c(phi) * u and the per-pixel
# Gaussian (Wiener) one. Measured on the 64 held-out crops: learned_a 0.27 / 0.28, learned_b 0.40 / 0.41; the
# bound leaves a margin of 0.15 above the larger.
V_MSE_RATIO_BOUND = {"learned_a": 0.43, "learned_b": 0.56}

# (parametrization, sigma, largest allowed ratio of the learned MSE to the better trivial baseline (predicting x
# or 0), and to a per-pixel Gaussian (Wiener) baseline fitted to the eval set itself). At ve 14 / flow 0.9 almost no
# signal is left (alpha ~ 0.07 / 0.11 on data of std ~0.4), so no denoiser can beat "predict 0" by much there.
MARGINS = [("ve", 0.1, 0.5, 0.6), ("ve", 1.0, 0.5, 0.6), ("ve", 5.0, 0.85, 0.9), ("ve", 14.0, 0.99, 1.0),
           ("flow", 0.2, 0.5, 0.6), ("flow", 0.5, 0.5, 0.6), ("flow", 0.9, 0.95, 1.0)]
NOISE_DRAWS = 8


@pytest.fixture(scope="module", params=sorted(MODELS))
def name(request):
    return request.param


@pytest.fixture(scope="module")
def model(name):
    return LearnedDenoiser.load(name)


@pytest.fixture(scope="module")
def heldout(name):
    """16 of the model's held-out crops (the first are its held-out photos whole)."""
    return eval_latents(name)[:16]


def test_weights_file_is_small_and_described(name, model):
    assert MODELS[name]["weights"].stat().st_size <= 4 * 10 ** 6
    weights_total = sum(p.stat().st_size for p in DEFAULT_WEIGHTS.parent.iterdir() if p.is_file())
    assert weights_total <= 4 * 10 ** 6 * len(MODELS)
    assert 100_000 < count_parameters(model.net) <= 1_000_000
    assert int(model.metadata["parameters"]) == count_parameters(model.net)
    held_out, trained = json.loads(model.metadata["held_out_photos"]), json.loads(model.metadata["train_photos"])
    assert held_out and trained and not set(held_out) & set(trained)
    assert set(held_out) | set(trained) <= set(PHOTOS)
    assert not model.net.training
    assert not any(p.requires_grad for p in model.net.parameters())


def test_first_model_files_unchanged():
    for path, digest in FIRST_MODEL_SHA256.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, path
    assert LearnedDenoiser.load().metadata == LearnedDenoiser.load("learned_a").metadata
    assert LearnedDenoiser.load(DEFAULT_WEIGHTS).metadata["seed"] == "0"
    with pytest.raises(ValueError):
        LearnedDenoiser.load("learned_z")


def test_the_models_are_independent():
    a, b = (LearnedDenoiser.load(name).metadata for name in ("learned_a", "learned_b"))
    assert a["config"] != b["config"] and a["seed"] != b["seed"]
    assert set(json.loads(a["held_out_photos"])) != set(json.loads(b["held_out_photos"]))
    # the second model trains on the first one's held-out photos: other training data, not a re-seeded copy
    assert set(json.loads(a["held_out_photos"])) <= set(json.loads(b["train_photos"]))


def test_eval_sets(name, model):
    """>= 64 held-out and 64 training crops [4, 16, 16] in [-1, 1], from the photos the model's metadata names,
    no two of the same photo and pyramid level overlapping by more than half."""
    held_out, trained = json.loads(model.metadata["held_out_photos"]), json.loads(model.metadata["train_photos"])
    sources = eval_sources(name)
    for split, photos in (("heldout_crops", held_out), ("train_crops", trained)):
        x = eval_latents(name, split)
        assert x.shape[0] >= 64 and x.shape[1:] == (4, 16, 16) and x.dtype == torch.float32
        assert torch.isfinite(x).all() and x.abs().max() <= 1.0 and x.flatten(1).std(dim=1).min() > 0
        where = sources[split]
        assert len(where) == x.shape[0] and {w["photo"] for w in where} == set(photos)
        assert len({w["level"] for w in where}) >= 4                      # several pyramid levels
        keys = [(w["photo"], w["level"], w["top"], w["left"]) for w in where]
        for i, a in enumerate(keys):
            for b in keys[:i]:
                if a[:2] == b[:2]:
                    assert max(0, 32 - abs(a[2] - b[2])) * max(0, 32 - abs(a[3] - b[3])) <= 32 * 32 / 2, (a, b)
    whole = eval_latents(name, "heldout_whole64")
    assert whole.shape == (len(held_out), 4, 32, 32) and torch.isfinite(whole).all()
    with pytest.raises(ValueError):
        eval_latents(name, "nothing")


def test_held_out_v_mse_well_below_trivial(name, model):
    x0 = eval_latents(name)
    result = v_mse(model, x0, draws=1)
    assert math.isfinite(result["learned"])
    assert result["learned"] < V_MSE_RATIO_BOUND[name] * result["best_c_times_u"], result
    assert result["learned"] < V_MSE_RATIO_BOUND[name] * result["wiener"], result


def test_latent_encoding_is_lossless():
    images = torch.rand(2, 3, 8, 12) * 2 - 1
    latents = photos_to_latents(images)
    assert latents.shape == (2, 4, 4, 6) and latents.abs().max() <= 1
    gray = (images * torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)).sum(1, keepdim=True)
    torch.testing.assert_close(latents_to_images(latents), gray)
    torch.testing.assert_close(photos_to_latents(latents_to_images(latents)), latents)


@pytest.mark.parametrize("parametrization,sigma,trivial_margin,gauss_margin", MARGINS)
def test_beats_baselines_on_held_out_photos(model, heldout, parametrization, sigma, trivial_margin, gauss_margin):
    x0 = heldout.repeat(NOISE_DRAWS, 1, 1, 1)
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    sigmas = torch.full((x0.shape[0],), sigma)
    x = add_noise(x0, eps, sigmas, parametrization)
    with torch.inference_mode():
        x0_hat = model.denoiser(parametrization)(x, sigmas)
    learned = (x0_hat - x0).square().mean()
    trivial = min((x - x0).square().mean(), x0.square().mean())
    alpha, beta, r = (float(v) for v in unit_signal_noise(torch.tensor(sigma), parametrization))
    mean, var = x0.mean(), x0.var()
    gauss = mean + alpha * var / (alpha ** 2 * var + beta ** 2) * (x / r - alpha * mean)
    assert learned < trivial_margin * trivial, (float(learned), float(trivial))
    assert learned < gauss_margin * (gauss - x0).square().mean(), (float(learned), float((gauss - x0).square().mean()))


def test_one_network_serves_both_parametrizations(model, heldout):
    """flow x = (1 - s) (x0 + s / (1 - s) eps): D_flow(x, s) = D_ve(x / (1 - s), s / (1 - s)), the same u and phi."""
    s = torch.tensor([0.2, 0.5, 0.7, 0.9] * (heldout.shape[0] // 4))
    x = add_noise(heldout, torch.randn(heldout.shape, generator=torch.Generator().manual_seed(2)), s, "flow")
    with torch.inference_mode():
        flow = model.denoiser("flow")(x, s)
        ve = model.denoiser("ve")(x / (1 - s)[:, None, None, None], s / (1 - s))
    torch.testing.assert_close(flow, ve, atol=1e-5, rtol=1e-5)


def test_batch_of_different_sigmas_matches_singles(model, heldout):
    for parametrization, sigmas in (("ve", [0.05, 14.6]), ("flow", [0.3, 1.0])):
        denoise = model.denoiser(parametrization)
        x = heldout[:2] + torch.randn(2, *heldout.shape[1:], generator=torch.Generator().manual_seed(1))
        sigma = torch.tensor(sigmas)
        with torch.inference_mode():
            both = denoise(x, sigma)
            singles = torch.cat([denoise(x[i:i + 1], sigma[i:i + 1]) for i in range(2)])
        assert both.shape == x.shape and both.dtype == torch.float32 and torch.isfinite(both).all()
        torch.testing.assert_close(both, singles, atol=1e-5, rtol=0)


def test_finite_at_the_ends_and_any_size(model):
    x = torch.randn(2, 4, 8, 12)
    with torch.inference_mode():
        flow_end = model.denoiser("flow")(x, torch.ones(2))
        ve_end = model.denoiser("ve")(x * 14.6, torch.tensor(14.6))
        flow_clean = model.denoiser("flow")(x, torch.zeros(2))
        ve_double = model.denoiser("ve")(x.double(), torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert torch.isfinite(flow_end).all() and torch.isfinite(ve_end).all()
    torch.testing.assert_close(flow_clean, x)              # phi = 0: x0_hat = u exactly
    assert ve_double.dtype == torch.float64 and ve_double.shape == x.shape
    with pytest.raises(ValueError):
        model.denoiser("ve")(torch.randn(1, 4, 6, 8), torch.ones(1))


def test_differentiable_with_respect_to_x(model, heldout):
    x = (heldout[:2] + 0.5 * torch.randn(2, *heldout.shape[1:])).requires_grad_(True)
    out = model.denoiser("ve")(x, torch.tensor([0.5, 2.0]))
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    assert grad.shape == x.shape and torch.isfinite(grad).all() and grad.abs().sum() > 0
    # the Jacobian-vector product agrees with a finite difference (the model is smooth in x)
    direction = torch.randn_like(x)
    _, jvp = torch.autograd.functional.jvp(lambda y: model.denoiser("ve")(y, torch.tensor([0.5, 2.0])),
                                           x.detach(), direction)
    h = 1e-2
    with torch.no_grad():
        fd = (model.denoiser("ve")(x + h * direction, torch.tensor([0.5, 2.0]))
              - model.denoiser("ve")(x - h * direction, torch.tensor([0.5, 2.0]))) / (2 * h)
    assert (jvp - fd).norm() <= 1e-2 * jvp.norm() + 1e-4
    assert math.isfinite(float(jvp.norm()))
