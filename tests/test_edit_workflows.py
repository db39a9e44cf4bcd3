"""The edit workflows (example_workflows/api/sd15_invert_edit.json, sd15_masked_edit.json) run in a real ComfyUI
server on the conditional digits demo model (demo_pack/ + testbed/digits.py), where an edit can be scored: the
checkpoint becomes Digits Demo Model, the image a held-out handwritten 3 (Digit Latent), the source prompt "3", the
edit prompt "8", the negative the empty prompt; every other setting (steps, scheduler, cfg, mask, method
parameters) is the workflow's own. The showcase's edit prompts run there too (fewer methods).

Measured (4 digits, 25 steps): reconstruction 59-62 dB, the edit read as an 8 with p 0.90-1.00 (as a 3: 0.00),
and the masked edit leaves the unmasked half exactly as it was.
"""
from __future__ import annotations

import copy
import json

import pytest

import devkit
from devkit import harness as ch

REPO = ch.REPO_ROOT
API_DIR = REPO / "example_workflows" / "api"
COUNT = 4
TEXTS = {"Source prompt": "3", "Edit prompt": "8", "Negative prompt": ""}


def on_digits(name: str) -> tuple[dict, dict]:
    """(prompt, {title: latent link of a saved image}) of a workflow's API twin on the digits demo model."""
    api = json.loads((API_DIR / f"{name}.json").read_text())
    prompt = {k: {"class_type": v["class_type"], "inputs": copy.deepcopy(v["inputs"])} for k, v in api.items()}
    saved = {}
    for node_id, node in api.items():
        kind, title = node["class_type"], node.get("_meta", {}).get("title", "")
        if kind == "CheckpointLoaderSimple":
            prompt[node_id] = {"class_type": "InvDemoDigitsModel", "inputs": {"sampling": "eps"}}
        elif kind == "VAEEncode":
            prompt[node_id] = {"class_type": "InvDemoDigitLatent", "inputs": {"digit": 3, "count": COUNT}}
        elif kind == "CLIPTextEncode":
            prompt[node_id] = {"class_type": "InvDemoDigitPrompt", "inputs": {"text": TEXTS[title]}}
        elif kind == "SaveImage":
            saved[title] = api[node["inputs"]["images"][0]]["inputs"]["samples"]
            del prompt[node_id]
        elif kind in ("LoadImage", "ImageScale", "VAEDecode"):
            del prompt[node_id]
    source = [k for k, v in prompt.items() if v["class_type"] == "InvDemoDigitLatent"][0]
    prompt["report"] = {"class_type": "InvDemoEditReport", "inputs": {
        "source": [source, 0], "reconstruction": saved["Reconstruction"], "edited": saved["Edit"],
        "source_digit": 3, "target_digit": 8, "label": name}}
    return prompt, {"source": [source, 0], **saved}


@pytest.mark.server
def test_invert_edit_workflow_edits_a_three_into_an_eight(demo_server):
    prompt, _ = on_digits("sd15_invert_edit")
    out = demo_server.run(prompt, timeout=600)
    r = out["report"]["edit"][0]
    print(f"\ninvert -> edit: reconstruction {[round(v, 1) for v in r['reconstruction_psnr']]} dB, "
          f"p(8) {[round(v, 2) for v in r['success']]}, p(3) {[round(v, 2) for v in r['source_class']]}, "
          f"PSNR to source {[round(v, 1) for v in r['source_psnr']]} dB")
    assert min(r["reconstruction_psnr"]) >= 40.0
    assert sum(p > 0.5 for p in r["success"]) >= COUNT - 1
    assert max(r["source_class"]) < 0.5


@pytest.mark.server
def test_masked_edit_workflow_keeps_the_unmasked_half(demo_server):
    prompt, links = on_digits("sd15_masked_edit")
    # the mask covers the left half of the image: the right half (latent columns 4..7) must be the source's
    for key in ("source", "Edit"):
        prompt[f"keep_{key}"] = {"class_type": "InvTestSaveTensor", "inputs": {"latent": links[key],
                                                                               "name": f"masked_{key}"}}
    out = demo_server.run(prompt, timeout=600)
    r = out["report"]["edit"][0]
    src, edit = (demo_server.load_tensor(out, f"keep_{k}").double() for k in ("source", "Edit"))
    right = (edit[..., 4:] - src[..., 4:]).abs().max().item()
    left = (edit[..., :4] - src[..., :4]).abs().amax(dim=(1, 2, 3))
    print(f"\nmasked edit: right half max |diff| {right:.2g}, left half {left.tolist()}, "
          f"p(8) {[round(v, 2) for v in r['success']]}")
    assert src.shape == (COUNT, 4, 8, 8)
    assert right <= 1e-6
    assert (left > 0.1).all()                                     # the left half did change
    assert max(r["source_psnr"]) < 60.0                          # the left half did change
    assert min(r["reconstruction_psnr"]) >= 40.0


@pytest.mark.server
def test_showcase_edit_prompts_run_on_the_digits_model(demo_server):
    devkit.import_repo_package("showcase")   # the repo root never goes on sys.path
    from showcase import edits
    for method in [m for m in edits.EDIT_METHODS if m.key in ("exact", "img2img")]:
        out = demo_server.run(edits.edit_prompt(method, 3, 8, COUNT, 10), timeout=600)
        row = edits.summarise(out, method)
        assert set(row["edits"]) == {"1", "3", "7.5"}
        assert len(out["save_edit"]["images"]) == COUNT
        if method.key == "exact":
            assert min(row["reconstruction_psnr"]) >= 40.0
            assert row["model_calls"] > 0
