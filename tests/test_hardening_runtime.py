"""Numerical safety, interrupts, leaks, determinism and caching of the nodes in a real ComfyUI.

Models (all real ComfyUI MODELs):
* ``tiny``: the 32-channel SD1.5-layout UNet file loaded by the stock ``UNETLoader`` (random weights; fast);
* ``narrow``: the 320-channel narrow SD1.5 UNet file (a model call costs ~0.1-0.7 s here: used where a model call
  must be long enough to time an interrupt against);
* ``learned``: the project's small denoiser trained on photographs (support pack), whose "VAE" is luma + pixel
  unshuffle, so a white image is exactly the latent +1 everywhere (the saturated end of its data range);
* ``analytic``: the exact posterior mean of a Gaussian mixture.

Half precision: the stock ``ModelComputeDtype`` node (advanced/debug/model) makes a MODEL run its network in fp16 or
bf16 (weights and activations cast per layer: ComfyUI's manual-cast path, the same one a half-precision checkpoint
takes on a GPU); ComfyUI's ``BaseModel._apply_model`` hands the sampler ``.float()`` of the network output. We
check that the latent going through the solver stays float32 even when the input LATENT itself is fp16, that the
network really ran in half precision (its output differs from the fp32 one), and that the results are finite and
reconstruct. A network that overflows in fp16 (a latent whose values exceed fp16's range) is used as a stock way
to make a model return NaN.

Tests marked ``executor`` use the in-process ComfyUI (same PromptExecutor and validation) where a test needs a
test-only node (a MODEL that returns NaN from its k-th call on) or a spy inside the pack.
"""
from __future__ import annotations

import sys
import time
import uuid

import pytest

torch = pytest.importorskip("torch")

import node_graphs as c  # noqa: E402
from devkit import harness as ch  # noqa: E402

EVAL_LATENTS = ch.REPO_ROOT / "testbed" / "data" / "eval_latents.safetensors"

# every invert node with cheap settings (fewer iterations than the defaults; same code paths)
CHEAP = {
    "ExactInvExactInvert": dict(max_calls=4),
    "ExactInvDDIMInvert": {},
    "ExactInvODEInvert": dict(bottom_substeps=3),
    "ExactInvReNoiseInvert": dict(iterations=2, average_start=1, average_end=3),
    "ExactInvEasyInvInvert": {},
    "ExactInvRNRIInvert": dict(iterations=1),          # newton: autograd through a private clone
    "ExactInvNoiseCorrect": dict(iterations=2),
}
DISPLAY = {
    "ExactInvExactInvert": "Exact Invert", "ExactInvDDIMInvert": "DDIM Invert", "ExactInvODEInvert": "ODE Invert",
    "ExactInvReNoiseInvert": "ReNoise Invert", "ExactInvEasyInvInvert": "EasyInv Invert",
    "ExactInvRNRIInvert": "RNRI Invert", "ExactInvNoiseCorrect": "Noise Correct",
}


# --------------------------------------------------------------------------------------------------- helpers
def tiny_model(g, dtype: str | None = None):
    m = g.node("UNETLoader", unet_name=ch.TINY_UNET, weight_dtype="default")
    return g.node("ModelComputeDtype", model=m, dtype=dtype) if dtype else m


def tiny_cond(g, seed: int = 1):
    return g.node("InvTestConditioning", tokens=4, dim=32, seed=seed, zero=False, pooled_dim=32)


def fresh_except(prompt: dict, keep=()) -> dict:
    """Give every node but ``keep`` a unique dummy input so that it executes again (ComfyUI passes only declared
    inputs to a node); the ``keep`` nodes stay cached between prompts (e.g. a loader: the same MODEL object)."""
    nonce = uuid.uuid4().hex
    keep = {k.id if isinstance(k, ch.NodeRef) else str(k) for k in keep}
    for nid, node in prompt.items():
        if nid not in keep:
            node["inputs"][ch.FRESH_INPUT] = nonce
    return prompt


def run_with_status(server, prompt, timeout: float = 300):
    """(outputs, {event: data}) of a prompt, with ComfyUI's status messages (execution_cached, timestamps)."""
    pid = server.submit(prompt)
    outputs = server.wait(pid, timeout=timeout)
    messages = server.history(pid)[pid]["status"]["messages"]
    return outputs, {event: data for event, data in messages}


def every_node(g, m, pos, neg, lat, steps: int, cfg: float = 2.0) -> dict:
    """Every node of the pack on one MODEL; {name: node whose output 0 is a LATENT}."""
    outs = {}
    last = None
    for node_id, params in CHEAP.items():
        last = c.invert(g, node_id, m, pos, neg, lat, steps, cfg=cfg, **params)
        outs[node_id] = last
    outs["ExactInvInvertedSampler"] = c.inverted_sampler(g, m, pos, neg, last.out(c.INVERSION), cfg=cfg)
    replay = g.node("ExactInvReplaySampler", inversion=last.out(c.INVERSION))
    outs["ExactInvReplaySampler"] = c.sampler_custom_advanced(g, m, pos, neg, last.out(c.NOISE), last.out(c.SIGMAS),
                                                              lat, cfg=cfg, sampler=replay)
    sched = g.node("BasicScheduler", model=m, scheduler="simple", steps=steps, denoise=1.0)
    inverter = g.node("ExactInvInversionSampler", method="exact", tolerance=1e-3, iterations=4)
    outs["ExactInvInversionSampler"] = c.sampler_custom(g, m, pos, neg, lat, sched, cfg=cfg, sampler=inverter)
    return outs


def probe(g, m, pos, neg, lat, name: str):
    """The MODEL's denoiser output at sigma 1 through comfy.samplers (cfg 1) and a KSampler run (cfg 2, 2 steps,
    both conds used): saved as ``name``_probe / ``name``_ksampler."""
    p = g.node("InvTestProbeDenoiser", model=m, latent=lat, sigma=1.0, mode="sampler", positive=pos)
    k = g.node("KSampler", model=m, seed=5, steps=2, cfg=2.0, sampler_name="euler", scheduler="normal",
               positive=pos, negative=neg, latent_image=lat, denoise=1.0)
    return [g.node("InvTestSaveTensor", latent=p, name=f"{name}_probe"),
            g.node("InvTestSaveTensor", latent=k, name=f"{name}_ksampler")]


def _pack_module(suffix: str):
    """A module of the pack as ComfyUI imported it in-process (named after its path)."""
    full = f"{ch.PACK_LINK_NAME}.{suffix}"
    found = [m for k, m in sys.modules.items() if k.endswith(full) and k[: -len(full)][-1:] in ("/", ".", "")]
    assert len(found) == 1, f"pack module {suffix} imported {len(found)} times"
    return found[0]


# --------------------------------------------------------------------------------------------------- NaN / inf
@pytest.mark.server
@pytest.mark.parametrize("node_id", list(CHEAP))
def test_model_overflow_to_nan_is_an_error_not_a_black_image(server, node_id):
    """An fp16 network fed a latent beyond fp16's range returns NaN at the first model call: every invert node stops
    with an error naming itself, the sigma and what to try; nothing downstream runs (no black image is saved)."""
    g = ch.Graph()
    m, pos = tiny_model(g, "fp16"), tiny_cond(g)
    server.put_tensor("huge.safetensors", torch.full((1, 4, 8, 8), 1e6))
    lat = g.node("InvTestLoadTensor", filename="huge.safetensors", key="samples")
    inv = c.invert(g, node_id, m, pos, pos, lat, 3, **CHEAP[node_id])
    g.node("InvTestSaveTensor", latent=inv.out(c.LATENT), name=f"nan_{node_id}")
    with pytest.raises(ch.PromptExecutionError) as info:
        server.run(g, fresh=True, timeout=120)
    err = info.value
    print(f"\nBAD-INPUT | model returns NaN (fp16 overflow) | {DISPLAY[node_id]} | {err.exception_message.strip()}")
    assert err.node_id == inv.id and err.exception_type.endswith("NodeInputError"), err
    assert err.exception_message.startswith(f"{DISPLAY[node_id]}: the inversion produced NaN/inf at sigma")
    assert "fp32" in err.exception_message
    # the hint points at Exact Invert, except from Exact Invert itself
    assert ("Exact Invert node" in err.exception_message) == (DISPLAY[node_id] != "Exact Invert")
    assert not (server.output_dir / f"nan_{node_id}.safetensors").exists()


class _NaNAfter:
    """A model_function_wrapper that returns ``value`` everywhere from the ``after``-th network call on (counting
    calls in ``self.calls``; shared by clones: ModelPatcher.clone deep-copies model_options)."""

    def __init__(self, after: int, value: float):
        self.after, self.value, self.calls = after, value, 0

    def __deepcopy__(self, memo):
        return self

    def __call__(self, apply_model, args):
        self.calls += 1
        out = apply_model(args["input"], args["timestep"], **args["c"])
        return torch.full_like(out, self.value) if self.calls >= self.after else out


class _FaultyModel(c.ModelWrapperNode):
    """Test-only node (in-process only): MODEL -> a clone whose network returns NaN/inf from call ``after`` on."""

    EXTRA_INPUTS = {"after": ("INT", {"default": 3, "min": 1, "max": 10000}), "value": (["nan", "inf"],)}
    last = None

    def unet_wrapper(self, after, value):
        wrapper = _NaNAfter(after, float(value))
        type(self).last = wrapper
        return wrapper


@pytest.mark.parametrize("node_id,value", [(n, "nan") for n in CHEAP] + [("ExactInvExactInvert", "inf")])
def test_nan_in_a_later_step_is_caught_at_that_call(executor, monkeypatch, node_id, value):
    """The model goes bad at its 4th call, after three good ones: the node stops at that very call."""
    monkeypatch.setitem(executor.nodes.NODE_CLASS_MAPPINGS, "HardenFaultyModel", _FaultyModel)
    g = ch.Graph()
    m = g.node("HardenFaultyModel", model=c.model(g), after=4, value=value)
    pos, lat = c.cond(g), c.latent(g)
    params = dict(CHEAP[node_id])
    if node_id == "ExactInvRNRIInvert":
        params["variant"] = "released"     # the analytic model has no autograd graph (newton is covered above)
    inv = c.invert(g, node_id, m, pos, pos, lat, 4, **params)
    g.node("InvTestSaveTensor", latent=inv.out(c.LATENT), name="nan_late")
    with pytest.raises(ch.PromptExecutionError) as info:
        executor.run(g, fresh=True)
    err = info.value
    assert err.node_id == inv.id and err.exception_type.endswith("NodeInputError"), err
    assert err.exception_message.startswith(f"{DISPLAY[node_id]}: the inversion produced NaN/inf at sigma")
    assert _FaultyModel.last.calls == 4, f"{_FaultyModel.last.calls} model calls: not stopped at the bad one"


def test_inverted_sampler_never_returns_a_nan_latent(executor, monkeypatch):
    """Sampling an inversion back with a MODEL that goes bad must raise, not hand a NaN latent to VAE Decode (a
    black image)."""
    monkeypatch.setitem(executor.nodes.NODE_CLASS_MAPPINGS, "HardenFaultyModel", _FaultyModel)
    g = ch.Graph()
    m, pos, lat = c.model(g), c.cond(g), c.latent(g)
    inv = c.invert(g, "ExactInvDDIMInvert", m, pos, pos, lat, 4)
    bad = g.node("HardenFaultyModel", model=m, after=2, value="nan")
    back = c.inverted_sampler(g, bad, pos, pos, inv.out(c.INVERSION))
    g.node("InvTestSaveTensor", latent=back, name="nan_back")
    with pytest.raises(ch.PromptExecutionError) as info:
        executor.run(g, fresh=True)
    err = info.value
    print(f"\nBAD-INPUT | model returns NaN while sampling back | Inverted Sampler | {err.exception_message.strip()}")
    assert err.node_id == back.id and err.exception_type.endswith("NodeInputError"), err
    assert err.exception_message.startswith("Inverted Sampler: ") and "NaN" in err.exception_message


# --------------------------------------------------------------------------------------------------- precision
@pytest.mark.server
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_half_precision_network_and_latent_give_float32_results(server, dtype):
    """A network computing in fp16/bf16 (stock ModelComputeDtype) and an fp16/bf16 input LATENT: the inverted and
    the sampled-back latents are float32 and finite. (No reconstruction claim here: the tiny UNet has random weights;
    see test_reconstruction_under_a_bf16_network for one.)"""
    g = ch.Graph()
    m32, mh, pos = tiny_model(g), tiny_model(g, dtype), tiny_cond(g)
    x = c.latent(g, seed=3)
    half = torch.float16 if dtype == "fp16" else torch.bfloat16
    source = server.put_tensor(f"latent_{dtype}.safetensors",
                               torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3)).to(half))
    lat = g.node("InvTestLoadTensor", filename=source, key="samples")
    p32 = g.node("InvTestProbeDenoiser", model=m32, latent=x, sigma=1.0, mode="sampler", positive=pos)
    ph = g.node("InvTestProbeDenoiser", model=mh, latent=x, sigma=1.0, mode="sampler", positive=pos)
    differs = c.compare(g, p32, ph)
    inv = c.invert(g, "ExactInvDDIMInvert", mh, pos, pos, lat, 4)
    back = c.inverted_sampler(g, mh, pos, pos, inv.out(c.INVERSION))
    saved_inv = g.node("InvTestSaveTensor", latent=inv.out(c.LATENT), name=f"half_inv_{dtype}")
    saved_back = g.node("InvTestSaveTensor", latent=back, name=f"half_back_{dtype}")
    out = server.run(g, fresh=True, timeout=300)
    inv_t, back_t = server.load_tensor(out, saved_inv), server.load_tensor(out, saved_back)
    print(f"\n[{dtype}] network output vs fp32: max |diff| {c.max_abs(out, differs)[0]:.3g}")
    assert c.max_abs(out, differs)[0] > 0, "the network did not run in half precision"
    assert inv_t.dtype == torch.float32 and back_t.dtype == torch.float32
    assert torch.isfinite(inv_t).all() and torch.isfinite(back_t).all()


class _Bf16Network(c.ModelWrapperNode):
    """Test-only node (in-process only): MODEL -> a clone whose network sees its input rounded to bfloat16 and whose
    output is rounded to bfloat16 (8-bit mantissa), as with a bf16 network; ComfyUI then hands the sampler
    ``.float()`` of it. Used on the learned denoiser, which is not built from comfy.ops layers (ModelComputeDtype
    cannot switch it) but, unlike the random UNets, can be inverted."""

    def unet_wrapper(self):
        def bf16(apply_model, args):
            x = args["input"].to(torch.bfloat16).to(args["input"].dtype)
            return apply_model(x, args["timestep"], **args["c"]).to(torch.bfloat16).float()

        return bf16


@pytest.mark.host_independent   # the solver's precision; the host's half-precision path: the test above, every host
def test_reconstruction_under_a_bf16_network(executor, monkeypatch):
    """Exact Invert through a bf16-rounding network from a bf16 LATENT reconstructs to the precision the network
    allows: within 3 dB of the fp32 network, or above 50 dB, where the network's own rounding (2^-8 relative) is the
    floor (measured: 53.4 dB against 57.1 dB in fp32; 50.8 against 51.6 before Exact Invert's final step followed
    the end-to-end target). DDIM Invert for reference."""
    monkeypatch.setitem(executor.nodes.NODE_CLASS_MAPPINGS, "HardenBf16Network", _Bf16Network)
    import safetensors.torch

    photo = safetensors.torch.load_file(str(EVAL_LATENTS))["heldout_crops"][:2].to(torch.bfloat16)
    executor.put_tensor("photo_bf16.safetensors", photo)
    g = ch.Graph()
    m32 = g.node("InvTestLearnedModel", sampling="eps", latent_format="identity")
    m = g.node("HardenBf16Network", model=m32)
    pos = c.cond(g)
    lat = g.node("InvTestLoadTensor", filename="photo_bf16.safetensors", key="samples")
    res = {}
    for node_id in ("ExactInvExactInvert", "ExactInvDDIMInvert"):
        for name, model in (("bf16", m), ("fp32", m32)):
            inv = c.invert(g, node_id, model, pos, pos, lat, 10)
            res[node_id, name] = c.compare(g, lat, c.inverted_sampler(g, model, pos, pos, inv.out(c.INVERSION)))
    out = c.run(executor, g)
    psnr = {k: min(c.psnr(out, v)) for k, v in res.items()}
    print("\n" + ", ".join(f"{k[0]} {k[1]} {v:.1f} dB" for k, v in psnr.items()))
    assert psnr["ExactInvExactInvert", "bf16"] > 35.0
    assert psnr["ExactInvExactInvert", "bf16"] > min(psnr["ExactInvExactInvert", "fp32"] - 3.0, 50.0)
    assert psnr["ExactInvExactInvert", "bf16"] > psnr["ExactInvDDIMInvert", "bf16"] + 5.0


def test_solver_state_is_float32_under_a_bf16_network(executor, monkeypatch):
    """Spy on the core's ``invert`` inside the pack: every latent the solver hands the model and every value it
    gets back is float32, and so is every stored latent of the INVERSION, although the network runs in bf16 and
    the input LATENT is bf16."""
    inversion_run = _pack_module("nodes.inversion_run")
    seen = {"x": set(), "out": set(), "latents": set()}
    original = inversion_run.invert

    def spy(denoise, x0, *args, **kwargs):
        def watched(x, sigma):
            out = denoise(x, sigma)
            seen["x"].add(x.dtype)
            seen["out"].add(out.dtype)
            return out
        result = original(watched, x0, *args, **kwargs)
        seen["latents"].update(t.dtype for t in result.latents)
        return result

    monkeypatch.setattr(inversion_run, "invert", spy)
    executor.put_tensor("latent_bf16.safetensors",
                        torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(4)).to(torch.bfloat16))
    g = ch.Graph()
    m, pos = tiny_model(g, "bf16"), tiny_cond(g)
    lat = g.node("InvTestLoadTensor", filename="latent_bf16.safetensors", key="samples")
    inv = c.invert(g, "ExactInvReNoiseInvert", m, pos, pos, lat, 3, **CHEAP["ExactInvReNoiseInvert"])
    g.node("InvTestSaveTensor", latent=inv.out(c.LATENT), name="bf16_state")
    c.run(executor, g)
    assert seen == {"x": {torch.float32}, "out": {torch.float32}, "latents": {torch.float32}}, seen


# --------------------------------------------------------------------------------------------------- bright
@pytest.mark.server
@pytest.mark.host_independent   # the methods' numerics on bright latents; the same nodes run in every host elsewhere
@pytest.mark.parametrize("image", ["white", "mostly_white_photo"])
def test_white_image_does_not_turn_black(server, image):
    """The failure reported for ReNoise (EasyInv paper: black outputs on images with large white areas): invert the
    latent of a white image (+1 everywhere: saturated) with ReNoise and its default regularisation, sample back."""
    g = ch.Graph()
    m = g.node("InvTestLearnedModel", sampling="eps", latent_format="identity")
    pos = c.cond(g)
    if image == "white":
        source = torch.ones(1, 4, 16, 16)
    else:   # a held-out photograph (the stand-in VAE's latent) whose upper three quarters are blown out to white
        import safetensors.torch

        source = safetensors.torch.load_file(str(EVAL_LATENTS))["heldout_whole64"][:1].clone()
        source[..., : 3 * source.shape[-2] // 4, :] = 1.0
    server.put_tensor(f"bright_{image}.safetensors", source)
    lat = g.node("InvTestLoadTensor", filename=f"bright_{image}.safetensors", key="samples")
    renoise = c.invert(g, "ExactInvReNoiseInvert", m, pos, pos, lat, 10)          # the node's defaults
    plain = c.invert(g, "ExactInvReNoiseInvert", m, pos, pos, lat, 10, regularize=False)
    exact = c.invert(g, "ExactInvExactInvert", m, pos, pos, lat, 10)
    back_r = c.inverted_sampler(g, m, pos, pos, renoise.out(c.INVERSION))
    back_p = c.inverted_sampler(g, m, pos, pos, plain.out(c.INVERSION))
    back_e = c.inverted_sampler(g, m, pos, pos, exact.out(c.INVERSION))
    cmp_r, cmp_p, cmp_e = c.compare(g, lat, back_r), c.compare(g, lat, back_p), c.compare(g, lat, back_e)
    sv = {k: g.node("InvTestSaveTensor", latent=v, name=f"bright_{image}_{k}")
          for k, v in {"inv": renoise.out(c.LATENT), "back": back_r}.items()}
    out = server.run(g, fresh=True, timeout=300)
    inv_t, back_t = server.load_tensor(out, sv["inv"]), server.load_tensor(out, sv["back"])
    print(f"\nBRIGHT | {image} (mean {source.mean():.3f}) | ReNoise regularised {c.psnr(out, cmp_r)[0]:.1f} dB, "
          f"mean back {back_t.mean():.3f} | ReNoise unregularised {c.psnr(out, cmp_p)[0]:.1f} dB | "
          f"Exact Invert {c.psnr(out, cmp_e)[0]:.1f} dB")
    assert torch.isfinite(inv_t).all() and torch.isfinite(back_t).all()
    # not black, not even grey: measured 0.868 for the 16x16 white latent (the regulariser's cost, see report)
    assert float(back_t.mean()) > 0.8 * float(source.mean()), "the bright image came back dark"
    assert c.psnr(out, cmp_r)[0] > 12.0
    assert c.psnr(out, cmp_p)[0] > 25.0
    assert c.psnr(out, cmp_e)[0] > 38.0


# --------------------------------------------------------------------------------------------------- leaks
@pytest.mark.server
def test_no_node_changes_the_callers_model(server):
    """Probe a loaded MODEL, run every node of the pack on it (RNRI's autograd clone included), probe it again in a
    later prompt: bit-identical. The loader node stays cached, so it is the same MODEL object throughout."""
    def graph(kind):
        g = ch.Graph()
        m = g.node("UNETLoader", unet_name=ch.TINY_UNET, weight_dtype="default", node_id="model")
        pos = tiny_cond(g)
        lat = c.latent(g, seed=21)
        if kind == "probe":
            saved = probe(g, m, pos, tiny_cond(g, seed=99), lat, f"leak_{uuid.uuid4().hex[:8]}")
        else:
            nodes = every_node(g, m, pos, tiny_cond(g, seed=2), lat, steps=2)
            saved = [c.compare(g, lat, n.out(0)) for n in nodes.values()]
        return g, saved

    g, before = graph("probe")
    out_a = server.run(fresh_except(g.to_api(), keep=["model"]), timeout=120)
    g, _ = graph("all")
    server.run(fresh_except(g.to_api(), keep=["model"]), timeout=300)
    g, after = graph("probe")
    out_c, status = run_with_status(server, fresh_except(g.to_api(), keep=["model"]))
    assert "model" in status["execution_cached"]["nodes"], "the MODEL was reloaded: the test would prove nothing"
    for a, b in zip(before, after, strict=True):
        ta, tb = server.load_tensor(out_a, a), server.load_tensor(out_c, b)
        assert torch.equal(ta, tb), f"the MODEL changed: max |diff| {(ta - tb).abs().max()}"


# --------------------------------------------------------------------------------------------------- determinism
@pytest.mark.server
def test_same_inputs_bit_identical_outputs(server):
    """Every node, run twice from scratch (every node re-executed, the model reloaded): bit-identical outputs."""
    g = ch.Graph()
    m, pos, neg, lat = tiny_model(g), tiny_cond(g), tiny_cond(g, seed=2), c.latent(g, seed=31)
    nodes = every_node(g, m, pos, neg, lat, steps=2)
    saves = {k: g.node("InvTestSaveTensor", latent=v.out(0), name=f"det_{k}") for k, v in nodes.items()}
    runs = []
    for _ in range(2):
        out = server.run(g, fresh=True, timeout=300)
        runs.append({k: server.load_tensor(out, v) for k, v in saves.items()})
    for k in saves:
        assert torch.equal(runs[0][k], runs[1][k]), f"{k} is not deterministic"
        assert torch.isfinite(runs[0][k]).all(), k


CHANGES = {
    "steps": lambda g, ids: g.nodes[ids["inv"]]["inputs"].update(steps=4),
    "cfg": lambda g, ids: g.nodes[ids["inv"]]["inputs"].update(cfg=1.5),
    "scheduler": lambda g, ids: g.nodes[ids["inv"]]["inputs"].update(scheduler="karras"),
    "tolerance": lambda g, ids: g.nodes[ids["inv"]]["inputs"].update(tolerance=1e-4),
    "latent": lambda g, ids: g.nodes[ids["lat"]]["inputs"].update(seed=77),
    "conditioning": lambda g, ids: g.nodes[ids["pos"]]["inputs"].update(seed=78),
    "model patch": lambda g, ids: g.nodes[ids["patch"]]["inputs"].update(sampling="v_prediction"),
}


@pytest.mark.server
@pytest.mark.parametrize("change", list(CHANGES))
def test_cache_reuses_unchanged_and_reruns_changed(server, change):
    g = ch.Graph()
    base_model = c.model(g)
    patch = g.node("ModelSamplingDiscrete", model=base_model, sampling="eps", zsnr=False)
    pos, lat = c.cond(g), c.latent(g, seed=41)
    inv = c.invert(g, "ExactInvExactInvert", patch, pos, pos, lat, 3)
    back = c.inverted_sampler(g, patch, pos, pos, inv.out(c.INVERSION))
    cmp_ = c.compare(g, lat, back)
    ids = {"inv": inv.id, "lat": lat.id, "pos": pos.id, "patch": patch.id}
    g.nodes[base_model.id]["inputs"]["seed"] = 1000 + uuid.uuid4().int % 10**6   # nothing cached from before
    g.nodes[lat.id]["inputs"]["gmm_seed"] = g.nodes[base_model.id]["inputs"]["seed"]
    first, status1 = run_with_status(server, g.to_api())
    assert inv.id not in status1["execution_cached"]["nodes"]
    again, status2 = run_with_status(server, g.to_api())
    assert set(status2["execution_cached"]["nodes"]) == set(g.nodes), "an unchanged prompt was re-executed"
    CHANGES[change](g, ids)
    changed, status3 = run_with_status(server, g.to_api())
    cached = set(status3["execution_cached"]["nodes"])
    assert inv.id not in cached and back.id not in cached, f"{change}: the inversion was not re-run"
    assert base_model.id in cached, "the unchanged model loader re-ran"
    print(f"\n[{change}] re-ran: {sorted(set(g.nodes) - cached)}; reconstruction "
          f"{c.psnr(first, cmp_)[0]:.1f} -> {c.psnr(changed, cmp_)[0]:.1f} dB")


# --------------------------------------------------------------------------------------------------- interrupt
def _wait_running(server, pid, timeout=60.0):
    t0 = time.monotonic()
    while not any(item[1] == pid for item in server.queue()["queue_running"]):
        assert time.monotonic() - t0 < timeout, "the prompt never started"
        time.sleep(0.02)


def _narrow_graph(node_id, steps, params, seed=51):
    g = ch.Graph()
    m = g.node("UNETLoader", unet_name=ch.NARROW_UNET, weight_dtype="default", node_id="model")
    pos = c.cond(g, "sd15")
    lat = c.latent(g, seed=seed)
    inv = c.invert(g, node_id, m, pos, pos, lat, steps, **params)
    g.node("InvTestSaveTensor", latent=inv.out(c.LATENT), name="interrupt_probe")
    return g, inv


INTERRUPTS = {
    "ExactInvExactInvert": dict(max_calls=30),
    "ExactInvReNoiseInvert": dict(iterations=9, regularize=True),         # regulariser loops between the calls
    "ExactInvRNRIInvert": dict(iterations=5),                             # newton: backward passes
    "ExactInvNoiseCorrect": dict(iterations=9),
}
# On every host: one node (the server's interrupt path); the others repeat it per node and run on the default host
# only (every node's own interrupt checks run on every host in test_no_model_call_after_the_interrupt).
INTERRUPT_EVERY_HOST = "ExactInvReNoiseInvert"


def _narrow_probe(server, name):
    g = ch.Graph()
    m = g.node("UNETLoader", unet_name=ch.NARROW_UNET, weight_dtype="default", node_id="model")
    saved = probe(g, m, c.cond(g, "sd15"), c.cond(g, "sd15", seed=2), c.latent(g, seed=52), name)
    out, status = run_with_status(server, fresh_except(g.to_api(), keep=["model"]))
    return [server.load_tensor(out, s) for s in saved], status


@pytest.fixture(scope="module")
def narrow_before(server):
    """The narrow SD1.5 MODEL's probe outputs before any interrupt (this also loads it)."""
    return _narrow_probe(server, "intr_before")[0]


@pytest.mark.server
@pytest.mark.parametrize("node_id", [n if n == INTERRUPT_EVERY_HOST else
                                     pytest.param(n, marks=pytest.mark.host_independent) for n in INTERRUPTS])
def test_interrupt_mid_inversion(server, narrow_before, node_id):
    """Time one model call of the method (a 1-step run of the invert node), start a 400-step run, POST /interrupt:
    the prompt ends as interrupted within ~2 model calls (server timestamps), the next prompt works and the MODEL
    gives bit-identical outputs before and after."""
    params = INTERRUPTS[node_id]
    g, inv = _narrow_graph(node_id, 1, params)
    out, st = run_with_status(server, fresh_except(g.to_api(), keep=["model"]))
    calls = c.summary(out, inv)["model_calls"]
    per_call = (st["execution_success"]["timestamp"] - st["execution_start"]["timestamp"]) / 1000.0 / calls
    g, inv = _narrow_graph(node_id, 400, params)
    pid = server.submit(fresh_except(g.to_api(), keep=["model"]))
    _wait_running(server, pid)
    time.sleep(max(1.0, 4 * per_call))
    assert server.history(pid) == {}, "finished before the interrupt"
    t_post = time.time()
    server.interrupt()
    with pytest.raises(ch.PromptInterrupted):
        server.wait(pid, timeout=120)
    stopped = dict(server.history(pid)[pid]["status"]["messages"])["execution_interrupted"]
    latency = stopped["timestamp"] / 1000.0 - t_post
    print(f"\nINTERRUPT | {DISPLAY[node_id]} | one model call {per_call:.3f} s ({calls} calls in 1 step) | "
          f"honoured after {latency:.3f} s = {latency / per_call:.2f} model calls")
    assert stopped["node_type"] == node_id
    assert latency < 2 * per_call + 1.0
    # the next prompt works and the (cached, same) MODEL gives bit-identical outputs
    after, status = _narrow_probe(server, "intr_after")
    assert "model" in status["execution_cached"]["nodes"]
    for a, b in zip(narrow_before, after, strict=True):
        assert torch.equal(a, b), "the MODEL changed"


class _InterruptProbe:
    """Shared state of the interrupt probes: calls seen, whether the interrupt flag is up, calls made after it."""

    def __init__(self, at_call: int | None):
        self.at_call, self.calls, self.flagged, self.calls_after = at_call, 0, False, 0

    def __deepcopy__(self, memo):          # ModelPatcher.clone deep-copies model_options: keep one probe
        return self

    def raise_flag(self):
        import comfy.model_management as mm

        self.flagged = True
        mm.interrupt_current_processing(True)

    def __call__(self, apply_model, args):
        if self.flagged:
            self.calls_after += 1
        self.calls += 1
        out = apply_model(args["input"], args["timestep"], **args["c"])
        if self.calls == self.at_call:
            self.raise_flag()              # as a user's click arriving during this model call
        return out


class _InterruptAt(c.ModelWrapperNode):
    """Test-only node (in-process only): MODEL -> a clone whose network calls go through ``probe``."""

    probe = _InterruptProbe(None)

    def unet_wrapper(self):
        return type(self).probe


def _run_interrupted(executor, g):
    import comfy.model_management as mm

    try:
        with pytest.raises(ch.PromptInterrupted):
            c.run(executor, g)
    finally:
        mm.interrupt_current_processing(False)


@pytest.mark.parametrize("node_id", list(CHEAP))
def test_no_model_call_after_the_interrupt(executor, monkeypatch, node_id):
    """Deterministic: the interrupt arrives during the 3rd model call; the node makes no further model call (RNRI:
    newton through its autograd clone, on the tiny UNet)."""
    probe = _InterruptProbe(3)
    monkeypatch.setattr(_InterruptAt, "probe", probe)
    monkeypatch.setitem(executor.nodes.NODE_CLASS_MAPPINGS, "HardenInterruptAt", _InterruptAt)
    g = ch.Graph()
    if node_id == "ExactInvRNRIInvert":
        base, pos = tiny_model(g), tiny_cond(g)
    else:
        base, pos = c.model(g), c.cond(g)
    m = g.node("HardenInterruptAt", model=base)
    inv = c.invert(g, node_id, m, pos, pos, c.latent(g, seed=61), 20, **CHEAP[node_id])
    g.node("InvTestSaveTensor", latent=inv.out(c.LATENT), name="interrupt_at")
    _run_interrupted(executor, g)
    assert probe.calls == 3 and probe.calls_after == 0, vars(probe)


def test_interrupt_inside_the_regulariser_loop(executor, monkeypatch):
    """Deterministic: the interrupt flag is raised from inside ReNoise's regulariser (in its 3rd gradient step,
    between two model calls); the node stops before the regulariser's next gradient and before any model call."""
    regularizers = _pack_module("inversion_core.regularizers")
    probe = _InterruptProbe(None)
    counts = {"pair": 0, "after_flag": 0}
    original = regularizers.pair_loss

    def pair_loss(*args, **kwargs):
        counts["pair"] += 1
        if probe.flagged:
            counts["after_flag"] += 1
        if counts["pair"] == 3:
            probe.raise_flag()
        return original(*args, **kwargs)

    monkeypatch.setattr(regularizers, "pair_loss", pair_loss)
    monkeypatch.setattr(_InterruptAt, "probe", probe)
    monkeypatch.setitem(executor.nodes.NODE_CLASS_MAPPINGS, "HardenInterruptAt", _InterruptAt)
    g = ch.Graph()
    m = g.node("HardenInterruptAt", model=c.model(g))
    pos, lat = c.cond(g), c.latent(g)
    inv = c.invert(g, "ExactInvReNoiseInvert", m, pos, pos, lat, 4)
    g.node("InvTestSaveTensor", latent=inv.out(c.LATENT), name="reg_interrupt")
    _run_interrupted(executor, g)
    assert counts["pair"] == 3, f"the regulariser went on after the interrupt: {counts}"
    assert counts["after_flag"] == 0 and probe.calls_after == 0, (counts, vars(probe))
