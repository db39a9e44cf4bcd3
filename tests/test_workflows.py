"""The example workflows (example_workflows/, defined in dev/devkit/example_workflows.py, written by
scripts/make_workflows.py).

* Every UI file is checked against the real host's ``/object_info``: node types exist, links are consistent both
  ways (ids, slots, socket types), widget values fit their inputs (count incl. control_after_generate and upload
  widgets, combo options, min/max, types), required sockets are connected; converting it back to an API prompt gives
  its API twin; and the files are what the generator writes now.
* Every API twin runs in the real host (the ``server`` fixture) with stand-in models, see :func:`standin_prompt`:
  checkpoint / UNet names -> the generated narrow SD1.5 model; CLIPTextEncode -> InvTestConditioning (77 x 768,
  seeded by the text, zeros for an empty text); LoadImage -> ImageScale -> VAEEncode -> an InvTestAnalyticLatent
  test latent (8 x 8); LoRA loaders are bypassed; text-encoder / VAE loaders, VAEDecode and image-only nodes are
  dropped; SaveImage / PreviewImage of a VAEDecode -> SaveLatent of its latent. Settings (steps, schedulers,
  samplers, cfg, method parameters, model patches such as ModelSamplingFlux / ModelSamplingDiscrete) are kept as
  written, so the flow-model workflow really samples in flow space. Reconstructions are compared with the test
  latent (InvTestCompare): exact methods must reproduce it, the others must be finite; edits must differ from the
  reconstruction. The random-weight stand-in cannot be inverted by approximate methods, so the sampling-back
  wiring of their workflows is checked once more with the inversion swapped for the exact solver.
* The showcase (scripts/showcase.sh, showcase/, demo_pack/) is not run in CI (it needs scikit-image): its prompts are
  checked against /object_info, and run in a server with demo_pack/ on the committed eval latents of its photos.

The checks of the files alone (no ComfyUI: twins, the validator on hand-made broken files, old and new save nodes)
run on the default host only (``host_independent``); everything checked against a host's /object_info or run in it
runs on every host.
"""
from __future__ import annotations

import copy
import json
import math
import urllib.request
import zlib

import pytest

import devkit
from devkit import example_workflows as ew, harness as ch, workflow_format as mw

REPO = ch.REPO_ROOT
WF_DIR = REPO / "example_workflows"
API_DIR = WF_DIR / "api"


NAMES = sorted(p.stem for p in WF_DIR.glob("*.json"))

# Reconstruction PSNR (dB, InvTestCompare: peak = max |test latent|) that exact paths must reach on the stand-in.
# The stand-in UNet has random weights, on which the approximate methods (DDIM, EasyInv, ReNoise, RNRI) drift far
# from the latent (measured: -5 to +3 dB at their workflow settings): their runs must only be finite, and their
# sampling-back wiring is checked by swapping in the exact solver (test_sampling_back_wiring_with_the_exact_solver).
EXACT_PSNR = 40.0
EXACT_WORKFLOWS = {"exact_invert_reconstruct", "flux_exact_invert_edit", "lcm_lora_noise_correct",
                   "sd15_inversion_sampler_custom", "sd15_invert_edit", "sd15_masked_edit"}
WIRING_SKIP = {
    "rnri_sdxl_turbo": "4 steps: on the random-weight stand-in UNet the inverse steps have no fixed point the exact "
                       "solver reaches (Exact Invert gives ~12 dB at 4 steps, ~67 dB at 10); the workflow samples "
                       "back through Inverted Sampler, which takes every setting from the INVERSION",
}


# ----------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def object_info(server):
    return server.object_info()


def _ui(name: str) -> dict:
    return json.loads((WF_DIR / f"{name}.json").read_text())


def _api(name: str) -> dict:
    return json.loads((API_DIR / f"{name}.json").read_text())


# ----------------------------------------------------------------------------------------------- the files
@pytest.mark.host_independent
def test_every_workflow_has_an_api_twin():
    assert len(NAMES) >= 9, NAMES
    twins = sorted(p.stem for p in API_DIR.glob("*.json"))
    assert twins == NAMES
    generated = sorted(f.name for f in ew.workflows())
    assert generated == NAMES, "example_workflows/ and devkit/example_workflows.py disagree"


def test_workflows_cover_every_pack_node(pack_nodes):
    used = {node["class_type"] for name in NAMES for node in _api(name).values()}
    missing = sorted(n["node_id"] for n in pack_nodes if n["node_id"] not in used)
    assert not missing, f"pack nodes with no example workflow: {missing}"


@pytest.mark.server
def test_templates_listed_by_the_host(server):
    """Workflow -> Browse Templates reads GET /workflow_templates: example_workflows/*.json of each pack."""
    listed = server._request("GET", "/workflow_templates")
    assert sorted(listed.get(ch.PACK_LINK_NAME, [])) == NAMES, listed


@pytest.mark.server
def test_template_thumbnails_served_by_the_host(server):
    """The template browser shows /api/workflow_templates/<pack>/<name>.jpg beside each listed workflow: the host
    serves every thumbnail, byte for byte, as a JPEG."""
    for name in NAMES:
        url = f"{server.url}/api/workflow_templates/{ch.PACK_LINK_NAME}/{name}.jpg"
        with urllib.request.urlopen(url, timeout=30) as resp:
            body, kind = resp.read(), resp.headers.get("Content-Type", "")
        assert kind.startswith("image/jpeg"), (name, kind)
        assert body == (WF_DIR / f"{name}.jpg").read_bytes(), name


@pytest.mark.server
@pytest.mark.parametrize("name", NAMES)
def test_ui_workflow_is_valid(object_info, name):
    ui = _ui(name)
    problems = mw.validate_ui(ui, object_info)
    assert not problems, f"{name}.json:\n  " + "\n  ".join(problems)
    assert any(n["type"] in mw.NOTE_TYPES for n in ui["nodes"]), f"{name}.json has no notes"
    assert mw.api_from_ui(ui, object_info) == _api(name), f"{name}.json does not queue its API twin"


@pytest.mark.server
def test_files_are_what_the_generator_writes(object_info):
    expected = ew.expected_files(object_info)
    stale = [str(p.relative_to(REPO)) for p, text in expected.items() if not p.exists() or p.read_text() != text]
    assert not stale, f"regenerate with `python scripts/make_workflows.py`: {stale}"


@pytest.mark.host_independent
def test_validator_catches_broken_files():
    """The checks above are only worth something if they fail on broken files."""
    info = {
        "KSampler": {"input": {"required": {
            "model": ["MODEL", {}], "seed": ["INT", {"default": 0, "min": 0, "max": 10}],
            "sampler_name": [["euler", "ddim"], {}], "cfg": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 5.0}]}},
            "input_order": {"required": ["model", "seed", "sampler_name", "cfg"]}, "output": ["LATENT"],
            "output_name": ["LATENT"]},
        "UNETLoader": {"input": {"required": {"unet_name": [["a.safetensors"], {}]}},
                       "input_order": {"required": ["unet_name"]}, "output": ["MODEL"], "output_name": ["MODEL"]},
    }
    api = {"1": {"class_type": "UNETLoader", "inputs": {"unet_name": "model.safetensors"}},
           "2": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "seed": 3, "sampler_name": "ddim",
                                                      "cfg": 2.0}}}
    ui = mw.ui_from_api(api, info, name="t")
    assert mw.validate_ui(ui, info) == []
    ks = next(n for n in ui["nodes"] if n["type"] == "KSampler")
    assert ks["widgets_values"] == [3, "fixed", "ddim", 2.0]      # control_after_generate after the seed
    assert mw.api_from_ui(ui, info) == {k: dict(v, _meta={"title": v["class_type"]}) for k, v in api.items()}

    def broken(mutate):
        bad = copy.deepcopy(ui)
        mutate(bad)
        return mw.validate_ui(bad, info)

    node = lambda u, t: next(n for n in u["nodes"] if n["type"] == t)  # noqa: E731
    assert broken(lambda u: node(u, "KSampler")["widgets_values"].remove("fixed"))
    assert broken(lambda u: node(u, "KSampler")["widgets_values"].__setitem__(2, "heun"))
    assert broken(lambda u: node(u, "KSampler")["widgets_values"].__setitem__(3, 9.0))
    assert broken(lambda u: node(u, "KSampler")["widgets_values"].__setitem__(0, 1.5))
    assert broken(lambda u: u["links"][0].__setitem__(5, "LATENT"))
    assert broken(lambda u: u["links"][0].__setitem__(4, 1))
    assert broken(lambda u: node(u, "KSampler")["inputs"][0].__setitem__("link", None))
    assert broken(lambda u: node(u, "KSampler").__setitem__("type", "KSamplerNope"))


@pytest.mark.host_independent
def test_files_fit_old_and_new_save_nodes():
    """ComfyUI 0.33.0 gave SaveImage an IMAGE output (0.3.52 / 0.3.75: none). A committed file must be the same
    whichever host generates it and valid on both: an output node lists no slot after its last linked one (the new
    frontend adds the missing one on load), every other node lists all its slots, and no node lists a slot its type
    lacks."""
    loader = {"input": {"required": {"n": [["a.png"], {}]}}, "input_order": {"required": ["n"]},
              "output": ["IMAGE"], "output_name": ["IMAGE"]}
    save = {"input": {"required": {"images": ["IMAGE", {}]}}, "input_order": {"required": ["images"]},
            "output_node": True}
    old = {"Loader": loader, "SaveImage": dict(save, output=[], output_name=[])}
    new = {"Loader": loader, "SaveImage": dict(save, output=["IMAGE"], output_name=["images"])}
    api = {"1": {"class_type": "Loader", "inputs": {"n": "a.png"}},
           "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}}
    ui_old, ui_new = mw.ui_from_api(api, old, name="t"), mw.ui_from_api(api, new, name="t")
    assert ui_old == ui_new
    assert next(n for n in ui_new["nodes"] if n["type"] == "SaveImage")["outputs"] == []
    assert mw.validate_ui(ui_new, old) == [] and mw.validate_ui(ui_new, new) == []

    chained = dict(api, **{"3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0]}}})
    ui = mw.ui_from_api(chained, new, name="t")                  # a linked output slot of an output node is kept
    assert [o["type"] for o in next(n for n in ui["nodes"] if n["id"] == 2)["outputs"]] == ["IMAGE"]
    assert mw.validate_ui(ui, new) == []
    assert any("1 outputs, the type has 0" in p for p in mw.validate_ui(ui, old))   # a slot the type lacks

    ui = mw.ui_from_api(api, new, name="t")
    next(n for n in ui["nodes"] if n["type"] == "Loader")["outputs"] = []          # a plain node must list them all
    ui["links"] = []
    next(n for n in ui["nodes"] if n["type"] == "SaveImage")["inputs"][0]["link"] = None
    assert any("only an output node may omit" in p for p in mw.validate_ui(ui, new))


# ----------------------------------------------------------------------------------------------- running them
STANDIN_LATENT = {"class_type": "InvTestAnalyticLatent",
                  "inputs": {"seed": 0, "batch": 1, "latent_width": 8, "latent_height": 8, "gmm_seed": 0,
                             "components": 3, "channels": 4, "latent_format": "sd15"}}
DROPPED = {"LoadImage", "ImageScale", "VAEDecode", "VAELoader", "DualCLIPLoader", "CLIPLoader", "TripleCLIPLoader",
           "ImageBlend", "PreviewImage"}


def _redirect(prompt: dict, old: str, new_link) -> None:
    for node in prompt.values():
        for key, value in list(node["inputs"].items()):
            if isinstance(value, list) and len(value) == 2 and value[0] == old:
                node["inputs"][key] = new_link(value[1])


def standin_prompt(api: dict, object_info: dict, name: str):
    """(prompt, checks): the API twin with stand-in models (module docstring); checks = [(kind, compare node id)]
    with kind "reconstruction" (InvTestCompare of the test latent and the reconstruction) or "edit" (reconstruction
    vs edit)."""
    prompt = {k: {"class_type": v["class_type"], "inputs": copy.deepcopy(v["inputs"])} for k, v in api.items()}
    titles = {k: v.get("_meta", {}).get("title", "") for k, v in api.items()}
    prompt["standin_latent"] = copy.deepcopy(STANDIN_LATENT)
    saved = {}                                       # SaveLatent id -> its latent link
    for node_id in list(api):
        node = prompt[node_id]
        kind, inputs = node["class_type"], node["inputs"]
        if kind == "CheckpointLoaderSimple":
            inputs["ckpt_name"] = ch.NARROW_CKPT
        elif kind == "UNETLoader":
            inputs.update(unet_name=ch.NARROW_UNET, weight_dtype="default")
        elif kind == "CLIPTextEncode":
            text = inputs["text"]
            prompt[node_id] = {"class_type": "InvTestConditioning", "inputs": {
                "tokens": 77, "dim": 768, "seed": zlib.crc32(text.encode()) % 2**31, "zero": not text.strip(),
                "pooled_dim": 768}}
        elif kind == "VAEEncode":
            _redirect(prompt, node_id, lambda slot: ["standin_latent", 0])
            del prompt[node_id]
        elif kind in ("LoraLoaderModelOnly", "LoraLoader"):
            model = inputs["model"]
            _redirect(prompt, node_id, lambda slot, model=model: model)
            del prompt[node_id]
        elif kind == "SaveImage":
            source = api[inputs["images"][0]]
            assert source["class_type"] == "VAEDecode", f"{name}: SaveImage of a {source['class_type']}"
            link = source["inputs"]["samples"]
            prompt[node_id] = {"class_type": "SaveLatent",
                               "inputs": {"samples": link, "filename_prefix": f"workflows/{name}_{node_id}"}}
            saved[node_id] = link
    for node_id in [k for k in prompt if prompt[k]["class_type"] in DROPPED]:
        del prompt[node_id]
    # drop nodes left with a dangling link (image-only branches), then everything no output needs
    changed = True
    while changed:
        changed = False
        for node_id in list(prompt):
            links = prompt[node_id]["inputs"].values()
            if any(isinstance(v, list) and len(v) == 2 and v[0] not in prompt for v in links):
                del prompt[node_id]
                changed = True
    outputs = [k for k, v in prompt.items() if object_info[v["class_type"]].get("output_node")]
    needed, stack = set(), list(outputs)
    while stack:
        node_id = stack.pop()
        if node_id in needed:
            continue
        needed.add(node_id)
        stack += [v[0] for v in prompt[node_id]["inputs"].values() if isinstance(v, list) and len(v) == 2]
    prompt = {k: v for k, v in prompt.items() if k in needed}

    checks = []
    recon = [k for k in saved if titles[k].startswith("Reconstruction")]
    edits = [k for k in saved if titles[k].startswith("Edit")]
    for k in recon:
        cid = f"check_{k}"
        prompt[cid] = {"class_type": "InvTestCompare", "inputs": {"a": ["standin_latent", 0], "b": saved[k]}}
        checks.append(("reconstruction", cid))
    for k in edits:
        cid = f"check_{k}"
        prompt[cid] = {"class_type": "InvTestCompare", "inputs": {"a": saved[recon[0]], "b": saved[k]}}
        checks.append(("edit", cid))
    return prompt, checks


APPROXIMATE = {"ExactInvDDIMInvert", "ExactInvReNoiseInvert", "ExactInvEasyInvInvert", "ExactInvRNRIInvert"}
COMMON_INPUTS = ("model", "positive", "negative", "latent", "steps", "scheduler", "cfg", "denoise", "sigmas")


def swapped_to_exact(prompt: dict) -> tuple[dict, int]:
    """The prompt with every approximate inversion replaced by the exact solver (same model, conditioning, latent,
    schedule and cfg; Noise Correct: exact solver and exact correction; Inversion Sampler: method exact), and how
    many were swapped. Sampling back must then reproduce the latent: this checks the workflow's hand-off wiring
    (steps / scheduler / cfg / conditioning / sampler of the sampling-back nodes) whatever the method's accuracy."""
    prompt = copy.deepcopy(prompt)
    swapped = 0
    for node in prompt.values():
        kind, inputs = node["class_type"], node["inputs"]
        if kind in APPROXIMATE:
            node["class_type"] = "ExactInvExactInvert"
            node["inputs"] = {k: v for k, v in inputs.items() if k in COMMON_INPUTS}
            node["inputs"].update(tolerance=1e-4, max_calls=30, memory=3, fallback=True)
            swapped += 1
        elif kind == "ExactInvNoiseCorrect" and (inputs["solver"], inputs["correction"]) != ("exact", "exact"):
            inputs.update(solver="exact", correction="exact", iterations=29)
            swapped += 1
        elif kind == "ExactInvInversionSampler" and inputs["method"] != "exact":
            inputs.update(method="exact", tolerance=1e-4, iterations=30)
            swapped += 1
    return prompt, swapped


@pytest.mark.server
@pytest.mark.parametrize("name", NAMES)
def test_api_twin_runs_with_standin_models(server, object_info, name):
    api = _api(name)
    prompt, checks = standin_prompt(api, object_info, name)
    kept = {v["class_type"] for v in prompt.values()}
    pack_nodes_in_twin = {v["class_type"] for v in api.values() if v["class_type"].startswith("ExactInv")}
    assert pack_nodes_in_twin <= kept, f"stand-in rewriting lost pack nodes {pack_nodes_in_twin - kept}"
    assert any(kind == "reconstruction" for kind, _ in checks), f"{name}: no reconstruction output"

    outputs = server.run(prompt, timeout=600)

    for kind, cid in checks:
        ui = outputs[cid]
        assert ui["shape"] == [1, 4, 8, 8]
        psnr = ui["psnr"][0]
        if kind == "reconstruction":
            print(f"{name}: reconstruction PSNR {psnr:.2f} dB")
            assert math.isfinite(psnr), f"{name}: reconstruction is not finite ({ui})"
            if name in EXACT_WORKFLOWS:
                assert psnr >= EXACT_PSNR, f"{name}: reconstruction PSNR {psnr:.2f} dB < {EXACT_PSNR} dB ({ui})"
        else:
            assert math.isfinite(psnr) and ui["max_abs"][0] > 0, f"{name}: the edit equals the reconstruction"
    for node_id, node in prompt.items():
        if node["class_type"] == "SaveLatent":
            assert outputs[node_id]["latents"], f"{name}: SaveLatent {node_id} wrote nothing"


@pytest.mark.server
@pytest.mark.parametrize("name", sorted(n for n in NAMES if n not in EXACT_WORKFLOWS))
def test_sampling_back_wiring_with_the_exact_solver(server, object_info, name):
    """The approximate methods cannot reconstruct on the random-weight stand-in UNet, so their workflows' sampling
    paths are checked with the inversion swapped for the exact solver (see ``swapped_to_exact``)."""
    if name in WIRING_SKIP:
        pytest.skip(WIRING_SKIP[name])
    prompt, checks = standin_prompt(_api(name), object_info, name)
    prompt, swapped = swapped_to_exact(prompt)
    assert swapped, f"{name}: nothing to swap; list it in EXACT_WORKFLOWS"
    outputs = server.run(prompt, timeout=600)
    for kind, cid in checks:
        if kind == "reconstruction":
            psnr = outputs[cid]["psnr"][0]
            print(f"{name}: exact-swapped reconstruction PSNR {psnr:.2f} dB")
            assert psnr >= EXACT_PSNR, f"{name}: sampling back the exact inversion gives {psnr:.2f} dB"


# ----------------------------------------------------------------------------------------------- the showcase
@pytest.mark.server
def test_showcase_prompts_fit_the_pack(object_info):
    """scripts/showcase.sh builds its prompts in showcase/prompts.py (run only by the showcase, which needs
    scikit-image): every pack / stock node there must get inputs the host knows, all required ones, with values that
    fit. The demo pack's own nodes (InvDemo*) are not loaded in the test host and are skipped."""
    devkit.import_repo_package("showcase")   # the repo root never goes on sys.path
    from showcase.methods import METHODS
    from showcase.prompts import method_prompt, original_prompt
    prompts = [original_prompt("camera", 64)] + [method_prompt(m, "camera", 64, 10) for m in METHODS]
    assert {m.node for m in METHODS} >= {"ExactInvDDIMInvert", "ExactInvReNoiseInvert", "ExactInvEasyInvInvert",
                                         "ExactInvRNRIInvert", "ExactInvExactInvert"}
    for prompt in prompts:
        for node_id, node in prompt.items():
            info = object_info.get(node["class_type"])
            if node["class_type"].startswith("InvDemo"):
                continue
            assert info is not None, f"{node['class_type']} not in /object_info"
            specs = {n: (s, r) for n, s, r in mw.ordered_inputs(info)}
            assert set(node["inputs"]) <= set(specs), f"{node_id}: unknown inputs {set(node['inputs']) - set(specs)}"
            for name, (spec, required) in specs.items():
                if required:
                    assert name in node["inputs"], f"{node_id} ({node['class_type']}): missing input {name}"
                value = node["inputs"].get(name)
                if name in node["inputs"] and mw.is_widget(spec) and not isinstance(value, list):
                    problem = mw.check_widget_value(name, spec, value)
                    assert problem is None, f"{node_id} ({node['class_type']}): {problem}"


@pytest.mark.server
def test_showcase_prompts_run_with_the_demo_pack(demo_server):
    """The showcase's prompts through the demo pack, with the committed eval latents of three of its photographs
    (camera, chelsea, coins at 64 px, the same latents Photo Latent makes with scikit-image) instead of Photo Latent,
    4 steps: the demo nodes load, every method inverts and samples back, the report carries per-step landing errors
    and PSNRs, and the exact solver reconstructs."""
    devkit.import_repo_package("showcase")   # the repo root never goes on sys.path
    from showcase.methods import METHODS
    from showcase.prompts import method_prompt
    failed = [ln for ln in demo_server.import_failures() if "exact_inversion" in ln]
    assert not failed, demo_server.log_tail()
    steps = 4
    for method in METHODS:
        prompt = method_prompt(method, "camera", 64, steps)
        prompt["photos"] = {"class_type": "InvTestEvalLatents",
                            "inputs": {"split": "held_out_whole64", "count": 3, "latent_format": "identity"}}
        outputs = demo_server.run(prompt, timeout=600)
        report = outputs["report"]["report"][0]
        assert report["shape"] == [3, 4, 32, 32] and report["steps"] == steps
        assert len(report["landing_error"]) == steps
        assert all(math.isfinite(e) for s in report["landing_error"] for e in s["error"])
        assert report["model_calls"] == outputs["invert"]["inversion"][0]["model_calls"] > 0
        assert len(outputs["save"]["images"]) == 3
        if method.key == "exact":
            assert min(report["latent_psnr"]) > 35, report["latent_psnr"]
        else:
            assert all(math.isfinite(p) for p in report["latent_psnr"]), report["latent_psnr"]
