"""The nodes in a real ComfyUI server: registration (/object_info) and interrupting a long inversion."""
from __future__ import annotations

import time

import pytest

torch = pytest.importorskip("torch")

import node_graphs as c  # noqa: E402
from devkit import harness as ch  # noqa: E402

COMMON_INPUTS = ["model", "positive", "negative", "latent", "steps", "scheduler", "cfg", "denoise"]
INVERT_OUTPUTS = ["LATENT", "INVERSION", "NOISE", "SIGMAS"]
NODES = {
    # node id: (display name, own required inputs after the common ones, outputs)
    "ExactInvExactInvert": ("Exact Invert", ["tolerance", "max_calls", "memory", "fallback"], INVERT_OUTPUTS),
    "ExactInvDDIMInvert": ("DDIM Invert", ["convention"], INVERT_OUTPUTS),
    "ExactInvReNoiseInvert": ("ReNoise Invert", ["iterations", "average", "average_start", "average_end",
                                                 "first_step", "regularize", "lambda_pair", "lambda_kl", "seed"],
                              INVERT_OUTPUTS),
    "ExactInvEasyInvInvert": ("EasyInv Invert", ["preset", "eta", "start", "length", "order"], INVERT_OUTPUTS),
    "ExactInvRNRIInvert": ("RNRI Invert", ["variant", "iterations", "prior_weight"], INVERT_OUTPUTS),
    "ExactInvNoiseCorrect": ("Noise Correct", ["sampler_name", "eta", "s_noise", "noise_seed", "correction",
                                               "solver", "iterations"], INVERT_OUTPUTS),
    "ExactInvInvertedSampler": ("Inverted Sampler", None, ["LATENT"]),
    "ExactInvInversionSampler": ("Inversion Sampler", None, ["SAMPLER"]),
    "ExactInvReplaySampler": ("Replay Sampler", None, ["SAMPLER"]),
}
# optional method inputs (added after the first release: optional, so saved workflows and API prompts without them
# still validate), listed before the optional SIGMAS socket
OPTIONAL = {"ExactInvExactInvert": ["target_psnr", "refinements", "candidates"]}


@pytest.mark.server
def test_nodes_registered_with_schema(server):
    info = server.object_info()
    for node_id, (display, own, outputs) in NODES.items():
        assert node_id in info, f"{node_id} missing\n{server.log_tail()}"
        entry = info[node_id]
        assert entry["display_name"] == display
        assert entry["category"] == "inversion"
        assert entry["output"] == outputs
        assert entry["description"]
        if own is not None:
            assert entry["input_order"]["required"] == COMMON_INPUTS + own
            assert entry["input_order"].get("optional") == OPTIONAL.get(node_id, []) + ["sigmas"]
            scheduler = entry["input"]["required"]["scheduler"]
            options = scheduler[1]["options"] if scheduler[0] == "COMBO" else scheduler[0]
            assert options == info["KSampler"]["input"]["required"]["scheduler"][0]
            for name in own:   # every method parameter explains itself
                assert entry["input"]["required"][name][1].get("tooltip"), (node_id, name)
            for name in OPTIONAL.get(node_id, []):
                assert entry["input"]["optional"][name][1].get("tooltip"), (node_id, name)
    for node_id, entry in info.items():     # every pack node says what it does in the node library
        if node_id.startswith("ExactInv"):
            assert len(entry.get("description", "")) > 40, node_id


@pytest.mark.server
def test_interrupt_stops_a_long_inversion_within_a_model_call(server):
    """POST /interrupt while a 3000-step inversion of the narrow SD1.5 UNet runs: the prompt ends as interrupted
    within about one model call (plus HTTP polling), far before the inversion would finish."""
    g = ch.Graph()
    m, pos, lat = c.model(g, "sd15"), c.cond(g, "sd15"), c.latent(g, seed=11)
    inv = c.invert(g, "ExactInvDDIMInvert", m, pos, pos, lat, 3000, scheduler="karras")
    g.node("InvTestSaveTensor", latent=inv.out(c.LATENT), name="interrupted")
    prompt_id = server.submit(g, fresh=True)     # nothing from the cache: the inversion must really run
    t0 = time.monotonic()
    while not any(item[1] == prompt_id for item in server.queue()["queue_running"]):
        assert time.monotonic() - t0 < 60, "the prompt never started"
        time.sleep(0.05)
    time.sleep(3.0)                      # loaders done, the inversion is under way
    assert server.history(prompt_id) == {}, "the inversion finished before it could be interrupted"
    t_interrupt = time.monotonic()
    server.interrupt()
    with pytest.raises(ch.PromptInterrupted) as info:
        server.wait(prompt_id, timeout=60)
    elapsed = time.monotonic() - t_interrupt
    print(f"\ninterrupt honoured after {elapsed:.2f} s ({info.value})")
    assert "ExactInvDDIMInvert" in str(info.value)
    assert elapsed < 5.0
