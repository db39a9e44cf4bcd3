"""What the running ComfyUI does, found out by trying it, not by its version number (0.3.52 ... 0.33.0 and later).

* :func:`replay_noise_factor`: how much ComfyUI's own sampler multiplies a replayed noise by on a model whose
  ``model_sampling.noise_scale`` is not 1 (0.33.0: ``sample_euler_ancestral_RF`` scales ``s_noise`` by it and
  ``CONST.noise_scaling`` the noise, which ``sample_lcm`` renoises through; older versions: neither). Measured once
  per step kind by running the host's function on a stand-in, so a version that changes it is followed.
* :func:`samples_nested_latents_without_noise`: whether stock samplers take a nested latent with add_noise off.
* :func:`schema_extras` / :func:`mark_advanced`: the V3 schema keywords this ComfyUI accepts (``search_aliases``
  on ``io.Schema``, ``advanced`` on inputs), from their signatures.
"""
from __future__ import annotations

import functools
import inspect
import logging

import torch

import comfy.model_sampling
from comfy_api.latest import io

log = logging.getLogger("exact_inversion")

_PROBE_SCALE = 4.0


class _Patcher:
    def __init__(self, model_sampling):
        self._model_sampling = model_sampling

    def get_model_object(self, name):
        if name != "model_sampling":
            raise KeyError(name)
        return self._model_sampling


class _ZeroDenoiser:
    """Stand-in for the KSamplerX0Inpaint a k-diffusion sampler gets: denoises to 0, exposes the model sampling
    through both paths the samplers read (``inner_model.inner_model.model_sampling`` and
    ``inner_model.model_patcher.get_model_object``)."""

    def __init__(self, model_sampling):
        class _Inner:
            pass

        self.inner_model = _Inner()
        self.inner_model.inner_model = _Inner()
        self.inner_model.inner_model.model_sampling = model_sampling
        self.inner_model.model_patcher = _Patcher(model_sampling)

    def __call__(self, x, sigma, **kwargs):
        return torch.zeros_like(x)


def _flow_sampling(noise_scale: float):
    ms = comfy.model_sampling.CONST()
    ms.noise_scale = float(noise_scale)
    return ms


def _probe(step_kind: str, noise_scale: float) -> float:
    """The latent ComfyUI's ``step_kind`` sampler produces from x = 0, a zero denoiser and a replayed noise of 1,
    over one flow step 0.5 -> 0.25, on a model sampling with ``noise_scale``."""
    import comfy.k_diffusion.sampling as kd

    model = _ZeroDenoiser(_flow_sampling(noise_scale))
    x = torch.zeros(1, 1, 1, 1)
    sigmas = torch.tensor([0.5, 0.25])

    def ones(sigma, sigma_next):
        return torch.ones_like(x)

    if step_kind == "euler_ancestral":
        out = kd.sample_euler_ancestral(model, x, sigmas, disable=True, eta=1.0, s_noise=1.0, noise_sampler=ones)
    elif step_kind == "lcm":
        out = kd.sample_lcm(model, x, sigmas, disable=True, noise_sampler=ones)
    else:
        raise ValueError(step_kind)
    return float(out.flatten()[0])


@functools.lru_cache(maxsize=None)
def _scales_with_noise_scale(step_kind: str) -> bool:
    try:
        plain, scaled = _probe(step_kind, 1.0), _probe(step_kind, _PROBE_SCALE)
    except Exception as error:  # noqa: BLE001 -- a host whose sampler the stand-in cannot drive
        scales = hasattr(getattr(comfy.model_sampling, "ModelSamplingDiscreteFlow", None), "set_noise_scale")
        log.warning("exact_inversion: could not measure how ComfyUI's %s sampler applies noise_scale (%r); "
                    "assuming it %s", step_kind, error, "does" if scales else "does not")
        return scales
    if plain == 0.0:
        return False
    ratio = scaled / plain
    if abs(ratio - _PROBE_SCALE) < 1e-4 * _PROBE_SCALE:
        return True
    if abs(ratio - 1.0) > 1e-4:
        log.warning("exact_inversion: ComfyUI's %s sampler scales replayed noise by %.6g at noise_scale %g; "
                    "replays of models with noise_scale != 1 may not reproduce", step_kind, ratio, _PROBE_SCALE)
    return False


def replay_noise_factor(step_kind: str, noise_scale: float) -> float:
    """What this ComfyUI's ``step_kind`` sampler multiplies a replayed noise by, on a flow model whose
    ``model_sampling.noise_scale`` is ``noise_scale``: ``noise_scale`` where the host applies it, else 1."""
    noise_scale = float(noise_scale)
    if noise_scale == 1.0 or step_kind not in ("euler_ancestral", "lcm"):
        return 1.0
    return noise_scale if _scales_with_noise_scale(step_kind) else 1.0


def samples_nested_latents_without_noise() -> bool:
    """Whether stock SamplerCustom / DisableNoise can sample a nested latent with add_noise off: their empty noise
    is nested too (``comfy.sample.prepare_empty_noise``, 0.33.0). 0.3.75 has nested latents but makes a plain
    zeros tensor of the first part's shape there, which its guider then packs wrongly."""
    import comfy.sample

    return hasattr(comfy.sample, "prepare_empty_noise")


# --------------------------------------------------------------------------------------------------- V3 schema
def _accepts(fn, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params   # explicitly named: a **kwargs catch-all may not mean it is understood


@functools.lru_cache(maxsize=None)
def schema_accepts(name: str) -> bool:
    """Whether ``io.Schema`` takes the keyword ``name`` (``search_aliases``: newer than 0.3.52)."""
    return _accepts(io.Schema, name)


@functools.lru_cache(maxsize=None)
def input_accepts(input_cls, name: str) -> bool:
    """Whether ``input_cls`` (e.g. ``io.Float.Input``) takes the keyword ``name`` (``advanced``: newer versions)."""
    return _accepts(input_cls.__init__, name)


def schema_extras(search_aliases=()) -> dict:
    """Keyword arguments for ``io.Schema`` that this ComfyUI supports."""
    extras = {}
    if search_aliases and schema_accepts("search_aliases"):
        extras["search_aliases"] = list(search_aliases)
    return extras


def mark_advanced(item) -> bool:
    """Mark a V3 input ``advanced`` (the frontend folds it away) where its class takes that keyword (0.33.0: the
    attribute is what ``Input.as_dict`` sends); elsewhere leave it as it is. Returns whether it was marked."""
    if not input_accepts(type(item), "advanced"):
        return False
    item.advanced = True
    return True
