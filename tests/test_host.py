"""The test foundation itself: the pack and the support pack load in a real ComfyUI, stock graphs run on the
generated models, the analytic model's denoiser is exact inside the host, and errors surface with details."""
from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
import safetensors.torch  # noqa: E402

from devkit import harness as ch  # noqa: E402

SD15_SCALE = 0.18215


# ------------------------------------------------------------------------------------------------ (a) registration
@pytest.mark.server
def test_pack_and_support_nodes_registered(pack_nodes, server):
    info = server.object_info()
    for link in (ch.PACK_LINK_NAME, ch.SUPPORT_LINK_NAME):
        failed = [ln for ln in server.import_failures() if f"custom_nodes/{link}" in ln]
        assert not failed, f"{link} failed to import in the server:\n{server.log_about(link)}"

    assert all(n["v3"] for n in pack_nodes), pack_nodes
    ids = [n["node_id"] for n in pack_nodes]
    assert len(set(ids)) == len(ids), f"duplicate node ids in NODE_LIST: {ids}"
    missing = [n for n in pack_nodes if n["node_id"] not in info]
    assert not missing, f"NODE_LIST classes missing from /object_info: {missing}\n{server.log_about(ch.PACK_LINK_NAME)}"
    module = f"custom_nodes.{ch.PACK_LINK_NAME}"
    registered = sorted(k for k, v in info.items() if v.get("python_module") == module)
    assert registered == sorted(ids), "every node the pack registers comes from NODE_LIST"

    for node_id in ch.SUPPORT_NODE_IDS:
        assert node_id in info, f"{node_id} missing\n{server.log_about(ch.SUPPORT_LINK_NAME)}"
        assert info[node_id]["python_module"] == f"custom_nodes.{ch.SUPPORT_LINK_NAME}"


# ------------------------------------------------------------------------------------------------ (b) stock graphs
def _sd15_sampling_graph(g: ch.Graph, model, prefix: str, seed: int = 3):
    pos = g.node("InvTestConditioning", tokens=77, dim=768, seed=1, zero=False, pooled_dim=768)
    neg = g.node("InvTestConditioning", tokens=77, dim=768, seed=0, zero=True, pooled_dim=768)
    empty = g.node("EmptyLatentImage", width=64, height=64, batch_size=1)  # 8x8 latent
    ks = g.node("KSampler", model=model, seed=seed, steps=3, cfg=2.0, sampler_name="euler", scheduler="normal",
                positive=pos, negative=neg, latent_image=empty, denoise=1.0)
    save = g.node("SaveLatent", samples=ks, filename_prefix=prefix)
    return ks, save


def _read_saved_latent(runner, outputs, save) -> torch.Tensor:
    info = outputs[save.id]["latents"][0]
    path = runner.output_dir / info["subfolder"] / info["filename"]
    return safetensors.torch.load_file(str(path))["latent_tensor"]


@pytest.mark.server
def test_stock_loaders_and_ksampler_over_server(server):
    g = ch.Graph()
    unet = g.node("UNETLoader", unet_name=ch.NARROW_UNET, weight_dtype="default")
    ckpt = g.node("CheckpointLoaderSimple", ckpt_name=ch.NARROW_CKPT)
    ks1, save1 = _sd15_sampling_graph(g, unet, "narrow_unet")
    ks2, save2 = _sd15_sampling_graph(g, ckpt.out(0), "narrow_ckpt")
    cmp_ = g.node("InvTestCompare", a=ks1, b=ks2)
    outputs = server.run(g, fresh=True)

    a, b = _read_saved_latent(server, outputs, save1), _read_saved_latent(server, outputs, save2)
    assert a.shape == (1, 4, 8, 8) and torch.isfinite(a).all()
    assert a.abs().max() > 0
    # Same weights, same seed: the two loaders must give the same samples.
    assert torch.equal(a, b)
    assert outputs[cmp_.id]["max_abs"] == [0.0]
    assert outputs[cmp_.id]["psnr"] == [math.inf]


@pytest.mark.server
def test_tiny_model_registered_config_and_in_memory(server):
    g = ch.Graph()
    loaded = g.node("UNETLoader", unet_name=ch.TINY_UNET, weight_dtype="default")  # needs the TinySD15 registration
    mem = g.node("InvTestTinyModel", seed=5)
    cond = g.node("InvTestConditioning", tokens=4, dim=32, seed=0, zero=False, pooled_dim=32)
    empty = g.node("EmptyLatentImage", width=64, height=64, batch_size=2)
    saves = []
    for i, model in enumerate((loaded, mem)):
        ks = g.node("KSampler", model=model, seed=11, steps=2, cfg=1.0, sampler_name="euler", scheduler="normal",
                    positive=cond, negative=cond, latent_image=empty, denoise=1.0)
        saves.append(g.node("InvTestSaveTensor", latent=ks, name=f"tiny_{i}"))
    outputs = server.run(g, fresh=True)
    for s in saves:
        t = server.load_tensor(outputs, s)
        assert t.shape == (2, 4, 8, 8) and torch.isfinite(t).all()


# ------------------------------------------------------------------------------------------------ (c) analytic model
def _external_to_internal(x, latent_format):
    return x * SD15_SCALE if latent_format == "sd15" else x


def _internal_to_external(x, latent_format):
    return x / SD15_SCALE if latent_format == "sd15" else x


PATCHES = {
    # name: (stock patch node + inputs or None, parametrization, a comfy.model_sampling class it must use)
    "eps": (None, "ve", "EPS"),
    "v_prediction": (("ModelSamplingDiscrete", {"sampling": "v_prediction", "zsnr": False}), "ve", "V_PREDICTION"),
    "x0": (("ModelSamplingDiscrete", {"sampling": "x0", "zsnr": False}), "ve", "X0"),
    "lcm": (("ModelSamplingDiscrete", {"sampling": "lcm", "zsnr": False}), "ve", "LCM"),
    "flow_sd3": (("ModelSamplingSD3", {"shift": 3.0}), "flow", "ModelSamplingDiscreteFlow"),
    "flow_flux": (("ModelSamplingFlux", {"max_shift": 1.15, "base_shift": 0.5, "width": 64, "height": 64}), "flow",
                  "ModelSamplingFlux"),
}


@pytest.mark.parametrize("mode", ["sampler", "apply_model"])
@pytest.mark.parametrize("patch", list(PATCHES))
def test_analytic_denoiser_matches_closed_form(executor, patch, mode):
    from inversion_core.analytic import GaussianMixture
    from inversion_core.spaces import add_noise

    seed, components, latent_format = 7, 3, "sd15"
    shape = (4, 8, 8)
    node, parametrization, ms_class = PATCHES[patch]
    sigma = 0.55 if parametrization == "flow" else 2.5
    gmm = GaussianMixture.random(shape=shape, components=components, seed=seed, dtype=torch.float64)
    g64 = torch.Generator().manual_seed(99)
    x0 = gmm.sample(2, generator=g64)
    x_int = add_noise(x0, torch.randn(x0.shape, generator=g64, dtype=torch.float64), sigma, parametrization)
    x_ext = _internal_to_external(x_int, latent_format).to(torch.float32)
    executor.put_tensor(f"probe_{patch}.safetensors", x_ext)

    g = ch.Graph()
    model = g.node("InvTestAnalyticModel", seed=seed, components=components, channels=4,
                   latent_format=latent_format, sampling="eps")
    if node is not None:
        model = g.node(node[0], model=model, **node[1])
    latent = g.node("InvTestLoadTensor", filename=f"probe_{patch}.safetensors", key="samples")
    probe = g.node("InvTestProbeDenoiser", model=model, latent=latent, sigma=sigma, mode=mode)
    save = g.node("InvTestSaveTensor", latent=probe, name=f"probe_{patch}_{mode}")
    outputs = executor.run(g)
    got = executor.load_tensor(outputs, save).to(torch.float64)
    assert outputs[probe.id]["parametrization"] == [parametrization]
    assert ms_class in outputs[probe.id]["model_sampling"], outputs[probe.id]

    # the host sees the float32 latent and a float32 sigma
    x_host = _external_to_internal(x_ext.to(torch.float64), latent_format)
    sigma32 = torch.tensor(sigma, dtype=torch.float32).double().expand(2)
    expected = _internal_to_external(gmm.denoiser(parametrization)(x_host, sigma32), latent_format)
    err = (got - expected).abs().max().item()
    scale = expected.abs().max().item()
    # float32 round-off only (observed 0.8e-6 .. 2.3e-6 at scale 13)
    assert err <= 8 * 1.2e-7 * max(scale, 1.0), f"{patch}/{mode}: max |D_host - D_true| = {err:.3g} (scale {scale:.3g})"
    # and it is not trivially the input
    assert (got - x_ext.double()).abs().max().item() > 0.1


@pytest.mark.parametrize("latent_format,channels,sampling", [("sd15", 4, "eps"), ("flux", 16, "flow"),
                                                             ("identity", 4, "v_prediction")])
def test_analytic_model_runs_in_stock_samplers(executor, latent_format, channels, sampling):
    """KSampler / KSamplerAdvanced / SamplerCustom sample the mixture: results land near a component."""
    from inversion_core.analytic import GaussianMixture

    seed, components = 3, 2
    g = ch.Graph()
    model = g.node("InvTestAnalyticModel", seed=seed, components=components, channels=channels,
                   latent_format=latent_format, sampling=sampling)
    cond = g.node("InvTestConditioning", tokens=1, dim=8, seed=0, zero=True, pooled_dim=8)
    empty = g.node("EmptyLatentImage", width=64, height=64, batch_size=2)  # 4 channels; widened for flux
    ks = g.node("KSampler", model=model, seed=1, steps=24, cfg=1.0, sampler_name="euler", scheduler="karras",
                positive=cond, negative=cond, latent_image=empty, denoise=1.0)
    ksa = g.node("KSamplerAdvanced", model=model, add_noise="enable", noise_seed=2, steps=24, cfg=3.0,
                 sampler_name="euler", scheduler="karras", positive=cond, negative=cond, latent_image=empty,
                 start_at_step=0, end_at_step=10000, return_with_leftover_noise="disable")
    sched = g.node("BasicScheduler", model=model, scheduler="karras", steps=24, denoise=1.0)
    sampler = g.node("KSamplerSelect", sampler_name="heun")
    sc = g.node("SamplerCustom", model=model, add_noise=True, noise_seed=3, cfg=1.0, positive=cond, negative=cond,
                sampler=sampler, sigmas=sched, latent_image=empty)
    saves = [g.node("InvTestSaveTensor", latent=n.out(0), name=f"stock_{latent_format}_{i}")
             for i, n in enumerate((ks, ksa, sc))]
    outputs = executor.run(g, fresh=True)  # fresh: also checks the cache-busting dummy input on V3 nodes

    gmm = GaussianMixture.random(shape=(channels, 8, 8), components=components, seed=seed, dtype=torch.float64)
    fmt = {"sd15": (SD15_SCALE, 0.0), "flux": (0.3611, 0.1159), "identity": (1.0, 0.0)}[latent_format]
    for s in saves:
        ext = executor.load_tensor(outputs, s).to(torch.float64)
        assert ext.shape == (2, channels, 8, 8) and torch.isfinite(ext).all()
        internal = (ext - fmt[1]) * fmt[0]
        # normalised distance to the nearest component: ~1 for a sample of that component, >> 1 otherwise
        z = ((internal[:, None] - gmm.means[None]) / gmm.stds[None]).flatten(2).square().mean(dim=2).sqrt()
        assert (z.min(dim=1).values < 1.5).all(), f"{s.id}: {z}"


# ------------------------------------------------------------------------------------------------ (d) errors
@pytest.fixture(params=["server", "executor"])
def runner(request):
    return request.getfixturevalue(request.param)


def test_validation_error_is_surfaced(runner):
    g = ch.Graph()
    lat = g.node("InvTestAnalyticLatent", seed=0, batch=1, latent_width=8, latent_height=8, gmm_seed=0,
                 components=3, channels=4, latent_format="sd15")
    bad = g.node("InvTestCompare", a=lat)  # input "b" missing
    with pytest.raises(ch.PromptValidationError) as info:
        runner.run(g)
    assert bad.id in info.value.node_errors
    assert info.value.node_errors[bad.id]["class_type"] == "InvTestCompare"
    assert "required_input_missing" in str(info.value)

    g2 = ch.Graph()
    g2.node("NoSuchNodeAnywhere", x=1)
    with pytest.raises(ch.PromptValidationError):
        runner.run(g2)


def test_execution_error_is_surfaced(runner):
    g = ch.Graph()
    a = g.node("InvTestAnalyticLatent", seed=0, batch=1, latent_width=8, latent_height=8, gmm_seed=0,
               components=3, channels=4, latent_format="sd15")
    b = g.node("InvTestAnalyticLatent", seed=0, batch=1, latent_width=16, latent_height=8, gmm_seed=0,
               components=3, channels=4, latent_format="sd15")
    cmp_ = g.node("InvTestCompare", a=a, b=b)
    with pytest.raises(ch.PromptExecutionError) as info:
        runner.run(g, fresh=True)
    err = info.value
    assert err.node_id == cmp_.id and err.node_type == "InvTestCompare"
    assert err.exception_type == "ValueError"
    assert "shapes differ" in err.exception_message
    assert "InvTestCompare" in str(err) and "ValueError" in str(err) and "shapes differ" in str(err)


@pytest.mark.server
def test_server_helpers(server):
    q = server.queue()
    assert set(q) >= {"queue_running", "queue_pending"}
    server.interrupt()   # nothing running: a no-op that must not raise
    server.free(unload_models=False, free_memory=False)
    assert server.startup_seconds is not None and server.startup_seconds > 0
    assert "To see the GUI go to" in server.log_text()
