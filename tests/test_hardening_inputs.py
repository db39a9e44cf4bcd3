"""Bad input through the real ComfyUI server: what a user sees when a graph is wrong.

Two layers answer a bad input:

* ComfyUI's own prompt validation (POST /prompt answers HTTP 400): values outside an input's min/max, widget values
  of the wrong type, unknown combo values, missing inputs, links between sockets of different types. Its answer
  names the node (id and class in ``node_errors``) and the input (``extra_info.input_name``); the frontend
  highlights both. We check that each such answer does.
* The nodes' own checks (``nodes/validation.py``) for what ComfyUI cannot see: latent channels / rank / batch /
  finiteness, empty batches, INVERSION from another model or of another shape, conditioning that does not fit,
  literal values typed into a hand-edited API JSON where a link belongs (ComfyUI passes those through unchecked),
  NaN where a min/max check cannot see it. The execution error must be a clean ``NodeInputError`` whose message
  starts with the node's display name, names the input, and says what to do.

After every bad prompt the server must serve the next prompt normally (``_serves_next``).

Each case prints ``BAD-INPUT | case | node | message`` (run with ``-s`` to collect the table for the docs).
Cases that go in-process (``executor``): the conditioning batch mismatch needs a batch-2 CONDITIONING, which no
stock node makes, so a test-only node is registered in the in-process ComfyUI for that test.
"""
from __future__ import annotations

import itertools

import pytest

torch = pytest.importorskip("torch")

import node_graphs as c  # noqa: E402
from devkit import harness as ch  # noqa: E402

_SEEDS = itertools.count(1000)


def needs_fix(fix: str, *values):
    """A case whose message does not yet say what to do: expected to fail until the node fix ``fix`` (listed in
    the hardening report, with its diff) is applied; then remove the mark (strict: an unexpected pass fails)."""
    return pytest.param(*values)


# --------------------------------------------------------------------------------------------------- helpers
def _report(case: str, node: str, message: str) -> None:
    print(f"\nBAD-INPUT | {case} | {node} | {message.strip()}")


def _serves_next(runner) -> None:
    """A small valid prompt (invert + sample back) still runs and reconstructs after the bad one."""
    g = ch.Graph()
    m, pos, lat = c.model(g), c.cond(g), c.latent(g, seed=next(_SEEDS))
    inv = c.invert(g, "ExactInvExactInvert", m, pos, pos, lat, 3)
    back = c.inverted_sampler(g, m, pos, pos, inv.out(c.INVERSION))
    cmp_ = c.compare(g, lat, back)
    out = runner.run(g, timeout=120)
    assert c.psnr(out, cmp_)[0] > 20.0, out
    q = runner.queue()
    assert not q["queue_running"] and not q["queue_pending"], q


def _validation_error(runner, g, node: ch.NodeRef, input_name: str, error_type: str, case: str) -> dict:
    """POST /prompt answers 400 and its node_errors name ``node`` (id and class) and ``input_name``."""
    with pytest.raises(ch.PromptValidationError) as info:
        runner.run(g, timeout=60)
    err = info.value
    assert node.id in err.node_errors, f"{case}: the error does not name node {node.id}: {err}"
    entry = err.node_errors[node.id]
    assert entry["class_type"] == g.nodes[node.id]["class_type"]
    mine = [e for e in entry["errors"] if e.get("extra_info", {}).get("input_name") == input_name]
    assert mine, f"{case}: no error names input {input_name!r}: {entry['errors']}"
    assert mine[0]["type"] == error_type, mine[0]
    _report(case, f"{entry['class_type']} (HTTP 400)", f"{mine[0]['message']}: {mine[0]['details']}")
    _serves_next(runner)
    return mine[0]


def _node_error(runner, g, node: ch.NodeRef, display: str, input_name: str | None, hints=(), case: str = "") -> str:
    """The prompt fails in ``node`` with a NodeInputError naming the node (display name) and the input, and
    containing every ``hints`` phrase (what to do)."""
    with pytest.raises(ch.PromptExecutionError) as info:
        runner.run(g, fresh=True, timeout=120)
    err = info.value
    message = err.exception_message.strip()
    _report(case, display, message)
    assert err.node_id == node.id, err
    assert err.node_type == g.nodes[node.id]["class_type"], err
    assert err.exception_type.endswith("NodeInputError"), \
        f"{case}: a crash ({err.exception_type}) instead of a node input error: {message}"
    assert message.startswith(f"{display}: "), message
    if input_name is not None:
        assert f"'{input_name}'" in message, f"{case}: the message does not name input {input_name!r}: {message}"
    for hint in hints:
        assert hint in message, f"{case}: no hint {hint!r} in: {message}"
    _serves_next(runner)
    return message


def _invert_graph(node_id: str = "ExactInvDDIMInvert", steps: int = 3, lat=None, model_kind: str = "analytic",
                  cond_kind: str = "analytic", **params):
    g = ch.Graph()
    m, pos = c.model(g, model_kind), c.cond(g, cond_kind)
    lat = c.latent(g) if lat is None else lat(g)
    inv = c.invert(g, node_id, m, pos, pos, lat, steps, **params)
    g.node("InvTestSaveTensor", latent=inv.out(c.LATENT), name="bad_input")
    return g, inv


def _loaded(runner, name: str, tensor):
    runner.put_tensor(name, tensor)
    return lambda g: g.node("InvTestLoadTensor", filename=name, key="samples")


# --------------------------------------------------------------------------------------------------- ComfyUI's own
@pytest.mark.server
@pytest.mark.parametrize("case,node_id,field,value,error_type", [
    ("steps 0", "ExactInvExactInvert", "steps", 0, "value_smaller_than_min"),
    ("steps huge (1e6)", "ExactInvDDIMInvert", "steps", 1_000_000, "value_bigger_than_max"),
    ("denoise > 1", "ExactInvReNoiseInvert", "denoise", 1.5, "value_bigger_than_max"),
    ("denoise < 0", "ExactInvEasyInvInvert", "denoise", -0.5, "value_smaller_than_min"),
    ("cfg negative", "ExactInvRNRIInvert", "cfg", -1.0, "value_smaller_than_min"),
    ("cfg inf", "ExactInvNoiseCorrect", "cfg", float("inf"), "value_bigger_than_max"),
    ("steps of the wrong type (hand-edited JSON)", "ExactInvExactInvert", "steps", "twenty", "invalid_input_type"),
])
def test_widget_values_out_of_range_are_rejected_by_the_server(server, case, node_id, field, value, error_type):
    g, inv = _invert_graph(node_id)
    inv.set_input(field, value)
    _validation_error(server, g, inv, field, error_type, case)


@pytest.mark.server
@pytest.mark.parametrize("case,node_id,field,value", [
    ("unknown scheduler (hand-edited JSON)", "ExactInvDDIMInvert", "scheduler", "fancy"),
    ("unknown method option (hand-edited JSON)", "ExactInvReNoiseInvert", "first_step", "sometimes"),
])
def test_unknown_combo_value(server, case, node_id, field, value):
    """ComfyUI 0.3.52 and 0.3.75 do not check V3 combo values (their input type is "COMBO", not a list): the node
    does. Newer ComfyUI (0.33.0) checks them itself and answers POST /prompt with ``value_not_in_list``. Which one
    answers is the host's feature; either answer must name the node and the input."""
    g, inv = _invert_graph(node_id)
    inv.set_input(field, value)
    try:
        server.run(g, fresh=True, timeout=120)
    except ch.PromptValidationError:   # the host validates V3 combos: its answer must name node and input
        found = _validation_error(server, g, inv, field, "value_not_in_list", case)
        assert f"'{value}'" in found["details"], found
        return
    except ch.PromptExecutionError:    # the host passes the value through: the node must refuse it
        pass
    else:
        pytest.fail(f"{case}: an unknown {field} {value!r} ran without an error")
    display = {"ExactInvDDIMInvert": "DDIM Invert", "ExactInvReNoiseInvert": "ReNoise Invert"}[node_id]
    _node_error(server, g, inv, display, field, [f"is '{value}'; expected one of"], case=case)


@pytest.mark.server
@pytest.mark.parametrize("name", ["latent", "model", "positive", "steps"])
def test_missing_input_from_a_hand_edited_workflow(server, name):
    g, inv = _invert_graph("ExactInvExactInvert")
    del g.nodes[inv.id]["inputs"][name]
    _validation_error(server, g, inv, name, "required_input_missing", f"missing input '{name}'")


@pytest.mark.server
def test_link_of_the_wrong_type(server):
    """'latent' wired to the MODEL output, 'inversion' wired to a LATENT output."""
    g, inv = _invert_graph("ExactInvExactInvert")
    inv.set_input("latent", g.nodes[inv.id]["inputs"]["model"])
    _validation_error(server, g, inv, "latent", "return_type_mismatch", "latent wired to a MODEL output")

    g, inv = _invert_graph("ExactInvDDIMInvert")
    m = g.nodes[inv.id]["inputs"]["model"]
    pos = g.nodes[inv.id]["inputs"]["positive"]
    back = g.node("ExactInvInvertedSampler", model=m, positive=pos, negative=pos, cfg=1.0, inversion=inv.out(c.LATENT))
    g.node("InvTestSaveTensor", latent=back, name="bad_link")
    _validation_error(server, g, back, "inversion", "return_type_mismatch", "inversion wired to a LATENT output")


@pytest.mark.server
def test_link_to_a_deleted_node(server):
    g, inv = _invert_graph("ExactInvExactInvert")
    inv.set_input("latent", ["999", 0])
    with pytest.raises(ch.PromptValidationError) as info:
        server.run(g, timeout=60)
    err = info.value
    _report("link to a deleted node", "(HTTP 400)", str(err))
    assert inv.id in err.node_errors, err.node_errors            # the node with the dangling link is named
    entry = err.node_errors[inv.id]
    assert entry["class_type"] == "ExactInvExactInvert"
    assert any(e.get("extra_info", {}).get("input_name") == "latent" for e in entry["errors"]), entry
    _serves_next(server)


# --------------------------------------------------------------------------------------------------- latents
@pytest.mark.server
def test_latent_channels_do_not_fit_the_model(server):
    g, inv = _invert_graph("ExactInvReNoiseInvert", lat=lambda g: c.latent(g, channels=16))
    _node_error(server, g, inv, "ReNoise Invert", "latent",
                ["has 16 channels but the model expects 4", "encode the image with this model's VAE"],
                case="16-channel latent into a 4-channel model")


@pytest.mark.server
@pytest.mark.parametrize("case,tensor,hints", [
    needs_fix("F2", "empty batch", torch.zeros(0, 4, 8, 8), ["empty batch", "at least one latent"]),
    ("NaN in the latent", torch.full((1, 4, 8, 8), float("nan")), ["NaN/inf", "VAE in fp32"]),
    ("inf in the latent", torch.tensor(float("inf")).expand(2, 4, 8, 8).clone(), ["NaN/inf", "VAE in fp32"]),
    needs_fix("F2", "integer latent", torch.ones(1, 4, 8, 8, dtype=torch.int32),
              ["floating point", "connect a LATENT output"]),
    needs_fix("F2", "latent without batch dimension", torch.zeros(4, 8, 8),
              ["expected [batch, channels", "connect a LATENT output"]),
])
def test_bad_latent_tensors(server, case, tensor, hints):
    name = "bad_" + case.replace(" ", "_") + ".safetensors"
    g, inv = _invert_graph("ExactInvExactInvert", lat=_loaded(server, name, tensor))
    _node_error(server, g, inv, "Exact Invert", "latent", hints, case=case)


@pytest.mark.server
def test_video_latent_into_an_image_model(server):
    """A 5-D [B, C, T, H, W] latent (a video model's) into an SD1.5-type model."""
    video = torch.randn(1, 4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    g, inv = _invert_graph("ExactInvNoiseCorrect", lat=_loaded(server, "video5d.safetensors", video), iterations=2)
    _node_error(server, g, inv, "Noise Correct", "latent", ["(1, 4, 3, 8, 8)", "2-D latent", "a video latent needs"],
                case="5-D latent into an image model")


@pytest.mark.server
def test_denoise_zero(server):
    g, inv = _invert_graph("ExactInvEasyInvInvert", denoise=0.0)
    _node_error(server, g, inv, "EasyInv Invert", "denoise", ["must be in (0, 1]"], case="denoise 0")


@pytest.mark.server
@pytest.mark.parametrize("case,first_sigma,hints", [
    ("empty SIGMAS (BasicScheduler denoise 0)", None, ["at least 2", "denoise of 0"]),
    ("SIGMAS not monotone (SetFirstSigma below the rest)", 0.01, ["must be decreasing", "FlipSigmas"]),
])
def test_sigmas_that_are_not_a_schedule(server, case, first_sigma, hints):
    g = ch.Graph()
    m, pos, lat = c.model(g), c.cond(g), c.latent(g)
    sigmas = g.node("BasicScheduler", model=m, scheduler="simple", steps=3,
                    denoise=0.0 if first_sigma is None else 1.0)
    if first_sigma is not None:
        sigmas = g.node("SetFirstSigma", sigmas=sigmas, sigma=first_sigma)
    inv = c.invert(g, "ExactInvDDIMInvert", m, pos, pos, lat, 3, sigmas=sigmas)
    g.node("InvTestSaveTensor", latent=inv.out(c.LATENT), name="bad_sigmas")
    _node_error(server, g, inv, "DDIM Invert", "sigmas", hints, case=case)


# --------------------------------------------------------------------------------------------------- INVERSION
def _inversion_then(g, sample_model_patch=None, latent_batch=None):
    m, pos, lat = c.model(g), c.cond(g), c.latent(g)
    inv = c.invert(g, "ExactInvDDIMInvert", m, pos, pos, lat, 3)
    other = m
    if sample_model_patch is not None:
        name, inputs = sample_model_patch
        other = g.node(name, model=m, **inputs)
    more = {} if latent_batch is None else {"latent": c.latent(g, batch=latent_batch)}
    back = c.inverted_sampler(g, other, pos, pos, inv.out(c.INVERSION), **more)
    g.node("InvTestSaveTensor", latent=back, name="bad_inversion")
    return back


@pytest.mark.server
@pytest.mark.parametrize("case,patch", [
    ("INVERSION from another model (v-prediction)",
     ("ModelSamplingDiscrete", {"sampling": "v_prediction", "zsnr": False})),
    ("INVERSION made with other sigmas (zero-terminal-SNR schedule)",
     ("ModelSamplingDiscrete", {"sampling": "eps", "zsnr": True})),
    ("INVERSION from another model (flow)", ("ModelSamplingSD3", {"shift": 3.0})),
])
def test_inversion_from_another_model_or_schedule(server, case, patch):
    g = ch.Graph()
    back = _inversion_then(g, sample_model_patch=patch)
    _node_error(server, g, back, "Inverted Sampler", "inversion",
                ["was made with another model", "Sample back with the model the inversion was made with"], case=case)


@pytest.mark.server
def test_inversion_with_another_batch_size(server):
    g = ch.Graph()
    back = _inversion_then(g, latent_batch=3)
    _node_error(server, g, back, "Inverted Sampler", "latent", ["(batch 1)", "use the latent that was inverted"],
                case="INVERSION with another batch size")


@pytest.mark.server
def test_replay_over_other_sigmas(server):
    g = ch.Graph()
    out = c.replay_over_other_sigmas(g, 3, "karras", 3)
    g.node("InvTestSaveTensor", latent=out.out(0), name="bad_replay")
    # the error surfaces in SamplerCustomAdvanced, which runs the replay sampler
    with pytest.raises(ch.PromptExecutionError) as info:
        server.run(g, fresh=True, timeout=120)
    err = info.value
    _report("Replay Sampler over other SIGMAS", err.node_type, err.exception_message)
    assert err.node_type == "SamplerCustomAdvanced" and err.exception_type.endswith("NodeInputError")
    assert err.exception_message.startswith("Replay Sampler: ")
    assert "sample with the inversion's own SIGMAS" in err.exception_message
    _serves_next(server)


# --------------------------------------------------------------------------------------------------- hand-edited JSON
@pytest.mark.server
@pytest.mark.parametrize("case,target,name,value,hint", [
    ("INVERSION typed in as JSON", "sampler", "inversion", {"sigmas": [14.6, 0.0], "latents": []},
     "connect the inversion output of an invert node"),
    needs_fix("F2", "LATENT typed in as JSON", "invert", "latent", {"samples": [[[[0.0]]]]}, "connect a LATENT output"),
    needs_fix("F2", "SIGMAS typed in as JSON", "invert", "sigmas", {"values": [14.6, 1.0, 0.0]},
              "connect a scheduler's SIGMAS output"),
    ("MODEL typed in as a file name", "invert", "model", "v1-5-pruned-emaonly.safetensors",
     "connect a model loader's MODEL output"),
    ("CONDITIONING typed in as a prompt text", "invert", "positive", "a photo of a cat",
     "connect a text encoder's output"),
])
def test_literal_where_a_link_belongs(server, case, target, name, value, hint):
    """ComfyUI validates only primitive widgets; a literal for a socket input reaches the node as-is."""
    g, inv = _invert_graph("ExactInvDDIMInvert")
    node, display = inv, "DDIM Invert"
    if target == "sampler":
        m, pos = g.nodes[inv.id]["inputs"]["model"], g.nodes[inv.id]["inputs"]["positive"]
        node = g.node("ExactInvInvertedSampler", model=m, positive=pos, negative=pos, cfg=1.0)
        g.node("InvTestSaveTensor", latent=node, name="literal")
        display = "Inverted Sampler"
    g.nodes[node.id]["inputs"][name] = value
    _node_error(server, g, node, display, name, [hint], case=case)


@pytest.mark.server
def test_nan_cfg_from_a_hand_edited_workflow(server):
    """JSON NaN passes ComfyUI's min/max check (NaN < 0 and NaN > 100 are both false)."""
    g, inv = _invert_graph("ExactInvExactInvert", cfg=float("nan"))
    _node_error(server, g, inv, "Exact Invert", "cfg", ["must be a finite number"], case="cfg NaN (hand-edited JSON)")


@pytest.mark.server
@pytest.mark.parametrize("case,node_id,params,name", [
    needs_fix("F4", "tolerance NaN", "ExactInvExactInvert", {"tolerance": float("nan")}, "tolerance"),
    needs_fix("F4", "lambda_pair NaN", "ExactInvReNoiseInvert", {"lambda_pair": float("nan")}, "lambda_pair"),
    needs_fix("F4", "EasyInv start NaN", "ExactInvEasyInvInvert", {"preset": "custom", "start": float("nan")},
              "start"),
    needs_fix("F4", "EasyInv eta NaN", "ExactInvEasyInvInvert", {"preset": "custom", "eta": float("nan")}, "eta"),
    needs_fix("F4", "prior_weight NaN", "ExactInvRNRIInvert", {"variant": "released", "prior_weight": float("nan")},
              "prior_weight"),
    ("Noise Correct eta NaN", "ExactInvNoiseCorrect", {"eta": float("nan")}, "eta"),
])
def test_nan_method_parameter_from_a_hand_edited_workflow(server, case, node_id, params, name):
    """Without a check a NaN tolerance / regulariser weight / window silently changes the result (measured: Exact
    Invert at tolerance NaN 21 dB instead of ~50), EasyInv's eta NaN raises a bare core ValueError, RNRI's prior
    weight NaN is reported as the model returning NaN."""
    g, inv = _invert_graph(node_id, **params)
    display = {"ExactInvExactInvert": "Exact Invert", "ExactInvReNoiseInvert": "ReNoise Invert",
               "ExactInvEasyInvInvert": "EasyInv Invert", "ExactInvRNRIInvert": "RNRI Invert",
               "ExactInvNoiseCorrect": "Noise Correct"}[node_id]
    _node_error(server, g, inv, display, name, ["is nan; it must be a finite number"],
                case=f"{case} (hand-edited JSON)")


@pytest.mark.server
def test_nan_tolerance_of_the_inversion_sampler(server):
    g = ch.Graph()
    m, pos, lat = c.model(g), c.cond(g), c.latent(g)
    sampler = g.node("ExactInvInversionSampler", method="exact", tolerance=float("nan"), iterations=4)
    sched = g.node("BasicScheduler", model=m, scheduler="simple", steps=3, denoise=1.0)
    out = c.sampler_custom(g, m, pos, pos, lat, sched, sampler=sampler)
    g.node("InvTestSaveTensor", latent=out.out(0), name="nan_tolerance")
    _node_error(server, g, sampler, "Inversion Sampler", "tolerance", ["is nan; it must be a finite number"],
                case="Inversion Sampler tolerance NaN (hand-edited JSON)")


# --------------------------------------------------------------------------------------------------- conditioning
@pytest.mark.server
def test_conditioning_of_the_wrong_width(server):
    """A 32-wide conditioning (another text encoder's) into the narrow SD1.5 UNet (cross-attention 768)."""
    g = ch.Graph()
    m = c.model(g, "sd15")
    pos = g.node("InvTestConditioning", tokens=4, dim=32, seed=1, zero=False, pooled_dim=32)
    inv = c.invert(g, "ExactInvDDIMInvert", m, pos, pos, c.latent(g), 2)
    g.node("InvTestSaveTensor", latent=inv.out(c.LATENT), name="bad_width")
    _node_error(server, g, inv, "DDIM Invert", "positive", ["width 32", "expects 768", "this model's text encoder"],
                case="conditioning of the wrong width")


class _BatchConditioning:
    """Test-only node (registered in the in-process ComfyUI only): a CONDITIONING with a batch of ``batch``."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"batch": ("INT", {"default": 2, "min": 1, "max": 64}),
                             "dim": ("INT", {"default": 8, "min": 1, "max": 4096})}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "build"
    CATEGORY = "testing/exact_inversion"

    def build(self, batch, dim):
        g = torch.Generator().manual_seed(batch)
        return ([[torch.randn(batch, 2, dim, generator=g), {"pooled_output": torch.zeros(batch, dim)}]],)


@pytest.mark.parametrize("cond_batch,latent_batch,hint", [
    (2, 3, "use 1 (shared by every latent) or 3 (one per latent)"),
    needs_fix("F2", 2, 1, "use a single conditioning"),
])
def test_conditioning_batch_does_not_match_the_latent(executor, monkeypatch, cond_batch, latent_batch, hint):
    """ComfyUI silently repeats or cuts a conditioning batch to the latent batch (comfy.utils.repeat_to_batch_size):
    2 prompts for 3 latents would invert latent 3 with prompt 1. The node must refuse (1 or B conditionings)."""
    monkeypatch.setitem(executor.nodes.NODE_CLASS_MAPPINGS, "HardenBatchConditioning", _BatchConditioning)
    g = ch.Graph()
    m, lat = c.model(g), c.latent(g, batch=latent_batch)
    pos = g.node("HardenBatchConditioning", batch=cond_batch, dim=8)
    neg = c.cond(g)
    inv = c.invert(g, "ExactInvExactInvert", m, pos, neg, lat, 3)
    g.node("InvTestSaveTensor", latent=inv.out(c.LATENT), name="bad_cond_batch")
    _node_error(executor, g, inv, "Exact Invert", "positive", [f"a batch of {cond_batch} conditionings", hint],
                case=f"conditioning batch {cond_batch} for a latent batch {latent_batch}")
