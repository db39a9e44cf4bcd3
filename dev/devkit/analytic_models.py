"""MODELs whose denoiser is a known function: ComfyUI runs them like any loaded diffusion model.

``make_denoiser_model(provider_factory, channels, latent_format, sampling)`` returns a ``ModelPatcher`` around a
``comfy.model_base.BaseModel`` subclass without a UNet. Its ``_apply_model(x, t, ...)`` (``t`` is sigma there)

1. picks the parametrization from the model_sampling in force *now* (``self.model_sampling`` is the object patch
   that ``ModelSamplingDiscrete`` / ``ModelSamplingSD3`` / ``ModelSamplingFlux`` ... install later in a graph):
   ``"flow"`` if it is a ``comfy.model_sampling.CONST``, else ``"ve"``;
2. computes the exact denoiser ``D_true(x, sigma)`` in the model's internal latent space (after
   ``latent_format.process_in``) with ``provider.denoiser(parametrization)``;
3. converts it to the raw network output ``out`` that the active parametrization maps back to ``D_true``, and
   returns ``self.model_sampling.calculate_denoised(sigma, out, x)``, so ComfyUI's own parametrization code runs.
   Every ``calculate_denoised`` in ComfyUI (EPS, V_PREDICTION, EDM, CONST, X0, LCM) is affine in ``out``:
   ``D = A + B * out`` with ``A = cd(sigma, 0, x)`` and ``B = cd(sigma, 1, x) - A``; so ``out = (D_true - A) / B``
   (``out = 0`` where ``B == 0``, i.e. sigma = 0, where D = x anyway). The probes run in float64.

A *provider* is any object with ``denoiser(parametrization) -> fn(x [B, *shape], sigma [B]) -> x0 estimate``
(``inversion_core.analytic.GaussianMixture`` has it). ``provider_factory(shape)`` is called once per latent shape
``(C, H, W)`` met by the model (cached), so one MODEL serves any latent size; a fixed-shape provider may ignore it.
Providers are built outside inference mode, so their tensors are normal tensors and usable under autograd.
Caveat: so the MODEL is differentiable even inside ComfyUI's ``torch.inference_mode()`` prompt (checked:
``autograd.grad`` through ``model.model.apply_model`` works with no recipe). It does NOT reproduce the
"Inference tensors cannot be saved for backward" trap of UNet weights loaded under inference mode: test
gradient code on ``InvTestTinyModel`` / the narrow UNet as well.

The Gaussian-mixture MODEL uses ``GaussianMixture.random(shape, components, seed)`` for every shape: the
``InvTestAnalyticLatent`` node with the same (seed, components) samples from exactly that mixture.
"""
from __future__ import annotations

import functools

import torch

import comfy.latent_formats
import comfy.model_base
import comfy.model_management
import comfy.model_patcher
import comfy.model_sampling
import comfy.supported_models_base

from . import import_repo_module, import_repo_package

LATENT_FORMATS = ("sd15", "flux", "identity")
SAMPLINGS = ("eps", "v_prediction", "flow")
FLOW_SHIFT = 3.0


def make_latent_format(name: str, channels: int):
    if name == "sd15":
        fmt = comfy.latent_formats.SD15()
    elif name == "flux":
        fmt = comfy.latent_formats.Flux()
    elif name == "identity":
        fmt = comfy.latent_formats.LatentFormat()
    else:
        raise ValueError(f"latent_format must be one of {LATENT_FORMATS}, got {name!r}")
    fmt.latent_channels = int(channels)  # instance attribute: EmptyLatentImage outputs get widened to this
    return fmt


def parametrization_of(model_sampling) -> str:
    return "flow" if isinstance(model_sampling, comfy.model_sampling.CONST) else "ve"


class _NoNetwork(torch.nn.Module):
    """Stands in for ``diffusion_model``: one parameter so model management (size, device, dtype) has something."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1), requires_grad=False)

    @property
    def dtype(self):
        return self.anchor.dtype

    def forward(self, *args, **kwargs):
        raise RuntimeError("a denoiser model has no network; BaseModel._apply_model is overridden")


class DenoiserModelConfig(comfy.supported_models_base.BASE):
    """A model config that never matches a state dict (it is not registered) and creates no UNet."""

    memory_usage_factor = 0.01

    def __init__(self, channels: int, latent_format: str, sampling_settings: dict):
        super().__init__({"disable_unet_model_creation": True, "in_channels": channels, "out_channels": channels})
        self.latent_format = make_latent_format(latent_format, channels)
        self.sampling_settings = dict(sampling_settings)

    def inpaint_model(self):
        return False


class DenoiserBaseModel(comfy.model_base.BaseModel):
    def __init__(self, model_config, model_type, provider_factory):
        super().__init__(model_config, model_type=model_type, device=None)
        self.diffusion_model = _NoNetwork()
        self._provider_factory = provider_factory
        self._providers = {}  # shape -> provider (no lock: deepcopy-able; a race only builds one twice)

    def provider_for(self, shape):
        shape = tuple(int(s) for s in shape)
        provider = self._providers.get(shape)
        if provider is None:
            with torch.inference_mode(False):
                provider = self._provider_factory(shape)
            self._providers[shape] = provider
        return provider

    def _apply_model(self, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None, **kwargs):
        sigma = t
        ms = self.model_sampling
        fn = self.provider_for(x.shape[1:]).denoiser(parametrization_of(ms))
        s64 = sigma.to(torch.float64).reshape(-1)
        if s64.numel() == 1 and x.shape[0] != 1:
            s64 = s64.expand(x.shape[0])
        x64 = x.to(torch.float64)
        d_true = self.true_denoised(fn, x64, s64, c_crossattn).to(torch.float64)
        a = ms.calculate_denoised(s64, torch.zeros_like(x64), x64)
        b = ms.calculate_denoised(s64, torch.ones_like(x64), x64) - a
        safe = b != 0
        out = torch.where(safe, (d_true - a) / torch.where(safe, b, torch.ones_like(b)), torch.zeros_like(b))
        work = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
        return ms.calculate_denoised(sigma, out.to(work), x.to(work))

    def true_denoised(self, fn, x64, s64, c_crossattn):
        """The provider's denoiser at (x, sigma), float64; a conditional model also hands it the conditioning."""
        return fn(x64, s64)


def _model_type(sampling: str):
    if sampling == "eps":
        return comfy.model_base.ModelType.EPS, {}
    if sampling == "v_prediction":
        return comfy.model_base.ModelType.V_PREDICTION, {}
    if sampling == "flow":
        return comfy.model_base.ModelType.FLOW, {"shift": FLOW_SHIFT, "multiplier": 1000}
    raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")


def make_denoiser_model(provider_factory, channels: int = 4, latent_format: str = "sd15", sampling: str = "eps"):
    """A MODEL (``ModelPatcher``) whose denoiser is ``provider_factory(shape).denoiser(parametrization)``.

    channels: latent channels (4 or 16, any positive value works); latent_format: "sd15" | "flux" | "identity";
    sampling: the initial model_sampling, "eps" (ModelSamplingDiscrete + EPS, SD1.5 schedule), "v_prediction",
    or "flow" (ModelSamplingDiscreteFlow + CONST, shift 3). Stock patch nodes may replace it later in the graph.
    """
    model_type, settings = _model_type(sampling)
    config = DenoiserModelConfig(int(channels), latent_format, settings)
    mm = comfy.model_management
    model = DenoiserBaseModel(config, model_type, provider_factory).to(mm.unet_offload_device())
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


def gaussian_mixture(shape, components: int = 3, seed: int = 0, hard: bool = False):
    """The mixture the analytic MODEL and InvTestAnalyticLatent share for a latent shape (C, H, W); ``hard``: the
    close, thin-component ``GaussianMixture.hard`` instead of ``GaussianMixture.random``."""
    analytic = import_repo_module("inversion_core.analytic")
    make = analytic.GaussianMixture.hard if hard else analytic.GaussianMixture.random
    return make(shape=tuple(shape), components=int(components), seed=int(seed), dtype=torch.float64)


def gmm_model(seed: int = 0, components: int = 3, channels: int = 4, latent_format: str = "sd15",
              sampling: str = "eps", hard: bool = False):
    return make_denoiser_model(lambda shape: gaussian_mixture(shape, components, seed, hard), channels,
                               latent_format, sampling)


# --- The learned denoiser ------------------------------------------------------------------------------------------
# testbed/learned.py provides the learned denoiser: an object with the same ``denoiser(parametrization)`` method as
# GaussianMixture (``LearnedDenoiser.load()``). ``learned_denoiser()`` loads the committed one once per process
# (the support pack's InvTestLearnedModel and the demo pack's Learned Demo Model share it); ``learned_model`` wraps
# a (re)loaded one as a MODEL. The provider ignores the latent shape. Loaded outside inference mode, so its weights
# are normal tensors and the MODEL is differentiable.
@functools.lru_cache(maxsize=1)
def learned_denoiser():
    """The committed LearnedDenoiser, loaded once per process outside inference mode (normal, autograd-usable
    tensors)."""
    import_repo_package("inversion_core")   # testbed.learned imports the top-level ``inversion_core``
    learned = import_repo_module("testbed.learned")
    with torch.inference_mode(False):
        return learned.LearnedDenoiser.load()


def learned_model(channels: int = 4, latent_format: str = "sd15", sampling: str = "eps", **loader_kwargs):
    learned = import_repo_module("testbed.learned")
    loader = getattr(learned, "load_learned_denoiser", None) or learned.LearnedDenoiser.load
    with torch.inference_mode(False):
        provider = loader(**loader_kwargs)
    return make_denoiser_model(lambda shape: provider, channels, latent_format, sampling)


__all__ = [
    "make_denoiser_model", "gmm_model", "gaussian_mixture", "learned_denoiser", "learned_model", "make_latent_format",
    "parametrization_of", "DenoiserBaseModel", "DenoiserModelConfig", "LATENT_FORMATS", "SAMPLINGS",
    "import_repo_package",
]
