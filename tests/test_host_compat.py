"""What newer ComfyUI (0.33.0) changed under the pack, checked on every host by what the host can do (issue 12).

* ``model_sampling.noise_scale`` (0.33.0: HiDream-O1 uses 8): ``sample_euler_ancestral_RF`` scales ``s_noise`` by it
  and ``CONST.noise_scaling`` the noise (which ``sample_lcm`` renoises through). Every replay must still reproduce
  the image. The test model is the analytic one with ModelSamplingSD3 and its model sampling set to noise_scale 8;
  on older hosts the attribute exists but nothing applies it, which the replays must follow as well.
* Nested latents (``comfy.nested_tensor.NestedTensor``, LTX-2 audio + video; a torch nested tensor on hosts
  without it): every node that takes a latent refuses them with an error naming the node and the input, and the
  Inversion Sampler in SamplerCustom (which gets the parts packed into one tensor by ComfyUI) inverts every part.
* A model that rejects the latent (a 1x1 latent into the narrow SD1.5 UNet): the error names the node, the input
  and its shape instead of surfacing from deep inside the UNet.
* V3 conveniences: ``advanced`` inputs and ``search_aliases`` in /object_info where the host's V3 API has them,
  and nothing of them (the nodes still load) where it does not.
"""
from __future__ import annotations

import copy
import inspect

import pytest

torch = pytest.importorskip("torch")

import node_graphs as c  # noqa: E402
from devkit import harness as ch  # noqa: E402

NOISE_SCALE = 8.0
INVERT_NODES = {
    "ExactInvExactInvert": "Exact Invert", "ExactInvDDIMInvert": "DDIM Invert", "ExactInvODEInvert": "ODE Invert",
    "ExactInvReNoiseInvert": "ReNoise Invert", "ExactInvEasyInvInvert": "EasyInv Invert",
    "ExactInvRNRIInvert": "RNRI Invert", "ExactInvNoiseCorrect": "Noise Correct",
}
CHEAP = {
    "ExactInvExactInvert": dict(max_calls=4), "ExactInvDDIMInvert": {}, "ExactInvODEInvert": dict(bottom_substeps=3),
    "ExactInvReNoiseInvert": dict(iterations=2),
    "ExactInvEasyInvInvert": {}, "ExactInvRNRIInvert": dict(variant="released", iterations=1),
    "ExactInvNoiseCorrect": dict(iterations=2),
}


# --------------------------------------------------------------------------------------------------- noise_scale
class _NoiseScale:
    """Test-only V1 node (in-process): MODEL -> a clone whose model sampling has ``noise_scale`` set (a copy of the
    model's own, object-patched in, as a HiDream-O1 model config sets it)."""

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "testing/exact_inversion"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "noise_scale": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 100})}}

    def patch(self, model, noise_scale):
        sampling = copy.copy(model.get_model_object("model_sampling"))
        if hasattr(sampling, "set_noise_scale"):
            sampling.set_noise_scale(noise_scale)
        else:
            sampling.noise_scale = float(noise_scale)
        clone = model.clone()
        clone.add_object_patch("model_sampling", sampling)
        return (clone,)


def _host_applies_noise_scale() -> bool:
    import comfy.k_diffusion.sampling as kd

    return "noise_scale" in inspect.getsource(kd.sample_euler_ancestral_RF)


@pytest.mark.parametrize("sampler_name,required_db", [("euler_ancestral", 60.0), ("lcm", 90.0)])
def test_replay_at_noise_scale_8(executor, monkeypatch, sampler_name, required_db):
    """Noise Correct on a flow model with noise_scale 8, sampled back by Inverted Sampler and by Replay Sampler +
    NOISE in SamplerCustomAdvanced: as exact as at noise_scale 1 (0.33.0 before the fix: euler_ancestral -4 dB)."""
    monkeypatch.setitem(executor.nodes.NODE_CLASS_MAPPINGS, "InvTestNoiseScale", _NoiseScale)
    g = ch.Graph()
    base, pos, lat = c.model(g, "analytic", "sd3"), c.cond(g), c.latent(g)
    results = {}
    for scale in (1.0, NOISE_SCALE):
        m = g.node("InvTestNoiseScale", model=base, noise_scale=scale)
        inv = c.invert(g, "ExactInvNoiseCorrect", m, pos, pos, lat, 10, sampler_name=sampler_name, iterations=20)
        back = c.inverted_sampler(g, m, pos, pos, inv.out(c.INVERSION))
        replay = g.node("ExactInvReplaySampler", inversion=inv.out(c.INVERSION))
        sca = c.sampler_custom_advanced(g, m, pos, pos, inv.out(c.NOISE), inv.out(c.SIGMAS), lat, sampler=replay)
        results[scale] = (c.compare(g, lat, back), c.compare(g, lat, sca.out(0)))
    out = c.run(executor, g)
    applied = _host_applies_noise_scale()
    for scale, (rec, rec_sca) in results.items():
        print(f"\n[sd3/{sampler_name}, noise_scale {scale:g}, host applies it: {applied}] Inverted Sampler "
              f"{c.psnr(out, rec)[0]:.1f} dB, Replay Sampler + NOISE {c.psnr(out, rec_sca)[0]:.1f} dB")
        assert c.psnr(out, rec)[0] >= required_db, (scale, out[rec.id])
        assert c.psnr(out, rec_sca)[0] >= required_db, (scale, out[rec_sca.id])


def test_exact_invert_noise_output_at_noise_scale_8(executor, monkeypatch):
    """The NOISE output inverts the model's own noise_scaling, so euler sampling back through
    SamplerCustomAdvanced reproduces at noise_scale 8, also for a full flow inversion (sigma 1)."""
    monkeypatch.setitem(executor.nodes.NODE_CLASS_MAPPINGS, "InvTestNoiseScale", _NoiseScale)
    g = ch.Graph()
    m = g.node("InvTestNoiseScale", model=c.model(g, "analytic", "sd3"), noise_scale=NOISE_SCALE)
    pos, lat = c.cond(g), c.latent(g)
    inv = c.invert(g, "ExactInvExactInvert", m, pos, pos, lat, 10, tolerance=1e-6)
    replay = g.node("ExactInvReplaySampler", inversion=inv.out(c.INVERSION))
    sca = c.sampler_custom_advanced(g, m, pos, pos, inv.out(c.NOISE), inv.out(c.SIGMAS), lat, sampler=replay)
    rec = c.compare(g, lat, sca.out(0))
    out = c.run(executor, g)
    print(f"\n[sd3/euler, noise_scale 8] Exact Invert -> NOISE -> SamplerCustomAdvanced {c.psnr(out, rec)[0]:.1f} dB")
    assert c.psnr(out, rec)[0] >= 90.0


# --------------------------------------------------------------------------------------------------- nested latents
class _NestedLatent:
    """Test-only V1 node (in-process): LATENT -> a two-part nested LATENT (the latent and a 3-D "audio" part), as
    LTX-2's LTXVConcatAVLatent makes (comfy.nested_tensor where the host has it, else a torch nested tensor)."""

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "nest"
    CATEGORY = "testing/exact_inversion"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"latent": ("LATENT",)}}

    def nest(self, latent):
        video = latent["samples"]
        try:
            import comfy.nested_tensor

            nested = comfy.nested_tensor.NestedTensor((video, torch.zeros(video.shape[0], 8, 5)))
        except ImportError:   # torch's nested tensors take parts of one rank: one sample's video and audio
            nested = torch.nested.nested_tensor([video[0], torch.zeros(8, 5, 2)])
        return ({"samples": nested},)


def _samples_nested_latents_without_noise() -> bool:
    """Stock SamplerCustom with add_noise off takes a nested latent: its empty noise is nested (0.33.0; 0.3.75 has
    nested latents but not this; 0.3.52 has neither)."""
    import comfy.sample

    return hasattr(comfy.sample, "prepare_empty_noise")


def _expect_node_error(executor, g, node, display, input_name, *phrases):
    with pytest.raises(ch.PromptExecutionError) as info:
        executor.run(g, fresh=True)
    err = info.value
    message = err.exception_message.strip()
    print(f"\n{display}: {message}")
    assert err.node_id == node.id, err
    assert err.exception_type.endswith("NodeInputError"), f"a crash instead of a node error: {err}"
    assert message.startswith(f"{display}: "), message
    assert f"'{input_name}" in message, message
    for phrase in phrases:
        assert phrase in message, (phrase, message)
    return message


@pytest.mark.parametrize("node_id", sorted(INVERT_NODES))
def test_nested_latent_is_refused_by_the_invert_nodes(executor, monkeypatch, node_id):
    monkeypatch.setitem(executor.nodes.NODE_CLASS_MAPPINGS, "InvTestNestedLatent", _NestedLatent)
    g = ch.Graph()
    m, pos = c.model(g), c.cond(g)
    nested = g.node("InvTestNestedLatent", latent=c.latent(g))
    inv = c.invert(g, node_id, m, pos, pos, nested, 3, **CHEAP[node_id])
    g.node("InvTestSaveTensor", latent=inv.out(c.LATENT), name="nested")
    hint = "Invert it with Inversion Sampler" if _samples_nested_latents_without_noise() else "update ComfyUI"
    _expect_node_error(executor, g, inv, INVERT_NODES[node_id], "latent", "nested latent of 2 parts",
                       "4, 8, 8)", hint)


def test_nested_latent_is_refused_by_the_sampling_side(executor, monkeypatch):
    """Inverted Sampler's latent input, and (where ComfyUI has nested latents) the NOISE output handed one by
    SamplerCustomAdvanced."""
    monkeypatch.setitem(executor.nodes.NODE_CLASS_MAPPINGS, "InvTestNestedLatent", _NestedLatent)
    g = ch.Graph()
    m, pos, lat = c.model(g), c.cond(g), c.latent(g)
    nested = g.node("InvTestNestedLatent", latent=lat)
    inv = c.invert(g, "ExactInvDDIMInvert", m, pos, pos, lat, 3)
    back = c.inverted_sampler(g, m, pos, pos, inv.out(c.INVERSION), latent=nested)
    g.node("InvTestSaveTensor", latent=back, name="nested_back")
    _expect_node_error(executor, g, back, "Inverted Sampler", "latent", "nested latent of 2 parts")

    try:
        import comfy.nested_tensor  # noqa: F401
    except ImportError:
        return   # no nested LATENT reaches a stock sampler node on this host (0.3.52)
    g = ch.Graph()
    m, pos, lat = c.model(g), c.cond(g), c.latent(g)
    inv = c.invert(g, "ExactInvDDIMInvert", m, pos, pos, lat, 3)
    nested = g.node("InvTestNestedLatent", latent=lat)
    sca = c.sampler_custom_advanced(g, m, pos, pos, inv.out(c.NOISE), inv.out(c.SIGMAS), nested,
                                    sampler=g.node("KSamplerSelect", sampler_name="euler"))
    g.node("InvTestSaveTensor", latent=sca.out(0), name="nested_noise")
    with pytest.raises(ch.PromptExecutionError) as info:
        executor.run(g, fresh=True)
    err = info.value
    print(f"\nSamplerCustomAdvanced + NOISE: {err.exception_message.strip()}")
    assert err.node_id == sca.id and err.exception_type.endswith("NodeInputError"), err
    assert err.exception_message.startswith("DDIM Invert: input 'latent_image"), err.exception_message
    assert "nested latent of 2 parts" in err.exception_message



class _NestedPart:
    """Test-only V1 node (in-process): part ``index`` of a nested LATENT as a plain LATENT."""

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "part"
    CATEGORY = "testing/exact_inversion"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"latent": ("LATENT",), "index": ("INT", {"default": 0, "min": 0, "max": 7})}}

    def part(self, latent, index):
        return ({"samples": latent["samples"].unbind()[index]},)


def test_inversion_sampler_inverts_every_part_of_a_nested_latent(executor, monkeypatch):
    """Where stock samplers take nested latents without noise (0.33.0), a guider packs the parts into one
    [batch, 1, n] tensor for the SAMPLER and the model, and unpacks the result: the Inversion Sampler in
    SamplerCustom inverts the parts jointly, and stock SamplerCustom (euler) samples both parts back."""
    if not _samples_nested_latents_without_noise():
        return   # stock SamplerCustom cannot run a nested latent with add_noise off here (0.3.52, 0.3.75)
    monkeypatch.setitem(executor.nodes.NODE_CLASS_MAPPINGS, "InvTestNestedLatent", _NestedLatent)
    monkeypatch.setitem(executor.nodes.NODE_CLASS_MAPPINGS, "InvTestNestedPart", _NestedPart)
    g = ch.Graph()
    # one Gaussian: its exact denoiser is affine for any latent layout, so the packed latent is as invertible as any
    m = g.node("InvTestAnalyticModel", seed=c.ANALYTIC_SEED, components=1, channels=4, latent_format="sd15",
               sampling="eps")
    pos, lat = c.cond(g), c.latent(g)
    sched = g.node("BasicScheduler", model=m, scheduler="simple", steps=6, denoise=1.0)
    inv_sampler = g.node("ExactInvInversionSampler", method="exact", tolerance=1e-6, iterations=40)
    nested = g.node("InvTestNestedLatent", latent=lat)
    inverted = c.sampler_custom(g, m, pos, pos, nested, g.node("FlipSigmas", sigmas=sched), sampler=inv_sampler)
    back = c.sampler_custom(g, m, pos, pos, inverted.out(0), sched)
    parts = [(g.node("InvTestNestedPart", latent=nested, index=i), g.node("InvTestNestedPart", latent=back.out(0),
                                                                          index=i)) for i in (0, 1)]
    video = c.compare(g, *parts[0])
    moved = c.compare(g, lat, g.node("InvTestNestedPart", latent=inverted.out(0), index=0))
    audio = g.node("InvTestSaveTensor", latent=parts[1][1], name="nested_audio_back")
    out = c.run(executor, g)
    audio_back = executor.load_tensor(out, audio)
    print(f"\nnested latent through Inversion Sampler + SamplerCustom: video part {c.psnr(out, video)[0]:.1f} dB, "
          f"audio part (zeros) max |error| {audio_back.abs().max():.2g}; the inverted video part moved by "
          f"{c.max_abs(out, moved)[0]:.3g}")
    assert tuple(audio_back.shape) == (1, 8, 5)
    assert c.psnr(out, video)[0] >= 90.0
    assert float(audio_back.abs().max()) <= 1e-4
    assert c.max_abs(out, moved)[0] > 0.1          # it was inverted, not passed through


# --------------------------------------------------------------------------------------------------- model errors
class _Patchified(c.ModelWrapperNode):
    """Test-only node (in-process): MODEL -> a clone whose network first cuts its input into 2x2 patches, as
    patchified models (Flux, SD3, LTX) do, so that a latent of odd size fails inside the model's forward."""

    def unet_wrapper(self):
        def patchify(apply_model, args):
            x = args["input"]
            x.reshape(x.shape[0], x.shape[1], x.shape[2] // 2, 2, x.shape[3] // 2, 2)
            return apply_model(x, args["timestep"], **args["c"])

        return patchify


@pytest.mark.parametrize("node_id", sorted(INVERT_NODES))
def test_a_latent_the_model_rejects_names_node_input_and_shape(executor, monkeypatch, node_id):
    """A 1x1 latent into a model that cannot take it: the first model call's error says which node, which input and
    its shape (measured before: the model's bare RuntimeError from all six invert nodes)."""
    monkeypatch.setitem(executor.nodes.NODE_CLASS_MAPPINGS, "InvTestPatchified", _Patchified)
    executor.put_tensor("one_by_one.safetensors", torch.randn(1, 4, 1, 1))
    g = ch.Graph()
    m, pos = g.node("InvTestPatchified", model=c.model(g)), c.cond(g)
    lat = g.node("InvTestLoadTensor", filename="one_by_one.safetensors", key="samples")
    inv = c.invert(g, node_id, m, pos, pos, lat, 2, **CHEAP[node_id])
    g.node("InvTestSaveTensor", latent=inv.out(c.LATENT), name="one_by_one")
    message = _expect_node_error(executor, g, inv, INVERT_NODES[node_id], "latent", "(1, 4, 1, 1)",
                                 "the model cannot take")
    assert "RuntimeError: shape" in message, message                  # the model's own error is kept


# --------------------------------------------------------------------------------------------------- V3 schema
PACK_NODES = list(INVERT_NODES) + ["ExactInvInvertedSampler", "ExactInvInversionSampler", "ExactInvReplaySampler"]
WANTED_ALIASES = ("unsample", "unsampler", "invert", "inversion", "reverse", "noise", "FlipSigmas")


def _host_v3_features(executor):
    from comfy_api.latest import io

    return ("search_aliases" in inspect.signature(io.Schema).parameters,
            "advanced" in inspect.signature(io.Float.Input.__init__).parameters)


@pytest.mark.server
def test_advanced_inputs_and_search_aliases_where_the_host_has_them(server, executor):
    aliases_known, advanced_known = _host_v3_features(executor)
    info = server.object_info()
    found_aliases, advanced = set(), {}
    for node_id in PACK_NODES:
        node = info[node_id]
        aliases = node.get("search_aliases")
        if aliases_known:
            assert aliases, f"{node_id}: no search_aliases in /object_info"
            found_aliases.update(aliases)
        else:
            assert aliases is None, node
        for group in ("required", "optional"):
            for name, spec in node["input"].get(group, {}).items():
                if len(spec) > 1 and isinstance(spec[1], dict) and spec[1].get("advanced"):
                    advanced.setdefault(node_id, []).append(name)
    print(f"\nsearch aliases known: {aliases_known}, advanced known: {advanced_known}; advanced inputs: {advanced}")
    print("ExactInvReNoiseInvert:", {k: info["ExactInvReNoiseInvert"].get(k)
                                     for k in ("search_aliases", "input", "input_order")})
    if aliases_known:
        missing = [a for a in WANTED_ALIASES if a not in found_aliases]
        assert not missing, f"no node is found by {missing}"
        assert "FlipSigmas" in info["ExactInvDDIMInvert"]["search_aliases"]
    if advanced_known:
        assert set(advanced["ExactInvReNoiseInvert"]) >= {"lambda_pair", "lambda_kl", "first_step"}, advanced
        assert set(advanced["ExactInvExactInvert"]) == {"tolerance", "max_calls", "memory", "fallback", "refinements",
                                                         "candidates"}, advanced
        assert all("model" not in names and "steps" not in names for names in advanced.values()), advanced
    else:
        assert advanced == {}, advanced
