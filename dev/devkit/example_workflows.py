"""The example workflows, defined in Python: ``example_workflows/<name>.json`` (ComfyUI UI format, listed by
Workflow -> Browse Templates) and their API-format twins ``example_workflows/api/<name>.json`` (what POST /prompt
runs; the tests execute them with stand-in models). ``scripts/make_workflows.py`` writes them.

The graphs are built with :class:`Flow` (``WORKFLOW_BUILDERS``). The API twin is the graph itself; the UI file is
made from it and a running ComfyUI's ``/object_info`` by ``devkit.workflow_format.ui_from_api``. Notes
("MarkdownNote" nodes) sit next to the nodes whose settings matter. ``expected_files(object_info)`` is every file
with its text.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import REPO_ROOT
from .workflow_format import dumps, ui_from_api, validate_ui

OUT_DIR = REPO_ROOT / "example_workflows"
API_DIR_NAME = "api"


# ------------------------------------------------------------------------------------------ graph definitions
@dataclass
class Ref:
    node_id: int
    slot: int = 0

    def __getitem__(self, slot: int) -> "Ref":
        return Ref(self.node_id, slot)


@dataclass
class Flow:
    """An example workflow: API nodes (ids 1..n in creation order), titles and notes."""

    name: str
    title: str
    about: str
    nodes: dict = field(default_factory=dict)        # id -> {"class_type", "inputs", "_meta": {"title"}}
    notes: list = field(default_factory=list)        # (text, anchor node id or None)

    def node(self, class_type: str, title: str | None = None, note: str | None = None, **inputs) -> Ref:
        node_id = len(self.nodes) + 1
        api_inputs = {k: ([str(v.node_id), v.slot] if isinstance(v, Ref) else v) for k, v in inputs.items()}
        self.nodes[node_id] = {"class_type": class_type, "inputs": api_inputs,
                               "_meta": {"title": title or class_type}}
        if note:
            self.notes.append((note, node_id))
        return Ref(node_id)

    def api(self) -> dict:
        return {str(k): copy.deepcopy(v) for k, v in self.nodes.items()}


# Model files the workflows name (what a user downloads; the tests swap them for generated stand-ins).
SD15_CKPT = "v1-5-pruned-emaonly-fp16.safetensors"
SDXL_CKPT = "sd_xl_base_1.0.safetensors"
SDXL_TURBO_CKPT = "sd_xl_turbo_1.0_fp16.safetensors"
LCM_LORA_SD15 = "lcm-lora-sdv1-5.safetensors"
FLUX_UNET = "flux1-dev.safetensors"
FLUX_CLIP_L = "clip_l.safetensors"
FLUX_T5 = "t5xxl_fp16.safetensors"
FLUX_VAE = "ae.safetensors"
INPUT_IMAGE = "example.png"      # ships in ComfyUI's input/ folder

SOURCE_PROMPT = "a photograph"
EDIT_PROMPT = "a watercolor painting"

NOTE_PROMPT = ("**Prompt.** Describe the image you invert (or leave it empty). Sampling back with the *same* "
               "conditioning and cfg reproduces the image; a different prompt edits it.")
NOTE_CFG1 = ("**cfg 1.** Invert at cfg 1: it is the most invertible setting and needs one model evaluation per "
             "call instead of two. Sample back with the same cfg to reproduce the image.")


def load_image(f: Flow, size: int) -> Ref:
    """The input image, scaled (and center-cropped) to ``size`` x ``size``."""
    image = f.node("LoadImage", title="Image to invert", image=INPUT_IMAGE)
    return f.node("ImageScale", image=image, upscale_method="lanczos", width=size, height=size, crop="center")


def image_to_latent(f: Flow, vae: Ref, size: int) -> Ref:
    return f.node("VAEEncode", pixels=load_image(f, size), vae=vae)


def prompts(f: Flow, clip: Ref, edit: bool = True) -> tuple[Ref, Ref, Ref | None]:
    """(source, empty negative, edit) prompts; without ``edit`` the source is just "Prompt" and edit is None."""
    pos = f.node("CLIPTextEncode", title="Source prompt" if edit else "Prompt", note=NOTE_PROMPT, text=SOURCE_PROMPT,
                 clip=clip)
    neg = f.node("CLIPTextEncode", title="Negative prompt", text="", clip=clip)
    return pos, neg, (f.node("CLIPTextEncode", title="Edit prompt", text=EDIT_PROMPT, clip=clip) if edit else None)


@dataclass
class Sources:
    """What a checkpoint graph starts from: the checkpoint, the encoded image and the prompts."""

    ckpt: Ref
    latent: Ref
    pos: Ref
    neg: Ref
    edit: Ref | None

    @property
    def vae(self) -> Ref:
        return self.ckpt[2]


def load_sources(f: Flow, ckpt_name: str, size: int, edit: bool = True) -> Sources:
    ckpt = f.node("CheckpointLoaderSimple", ckpt_name=ckpt_name)
    latent = image_to_latent(f, ckpt[2], size)
    return Sources(ckpt, latent, *prompts(f, ckpt[1], edit))


def invert_inputs(model: Ref, positive: Ref, negative: Ref, latent: Ref, steps: int, scheduler: str) -> dict:
    """The inputs every invert node shares, at cfg 1 and a full inversion (denoise 1)."""
    return dict(model=model, positive=positive, negative=negative, latent=latent, steps=steps, scheduler=scheduler,
                cfg=1.0, denoise=1.0)


def stock_ksampler(f: Flow, title: str, model: Ref, positive: Ref, negative: Ref, latent_image: Ref, steps: int,
                   scheduler: str, cfg: float, note: str | None = None) -> Ref:
    """ComfyUI's KSamplerAdvanced set up to sample an inverted LATENT back: no added noise, euler, all steps."""
    return f.node("KSamplerAdvanced", title=title, note=note, model=model, add_noise="disable", noise_seed=0,
                  steps=steps, cfg=cfg, sampler_name="euler", scheduler=scheduler, positive=positive,
                  negative=negative, latent_image=latent_image, start_at_step=0, end_at_step=10000,
                  return_with_leftover_noise="disable")


def inverted_samplers(f: Flow, s: Sources, inversion: Ref, edit_negative: Ref, edit_cfg: float,
                      edit_note: str) -> tuple[Ref, Ref]:
    """Inverted Sampler twice: the reconstruction (source prompts, cfg 1) and the edit (edit prompt)."""
    recon = f.node("ExactInvInvertedSampler", title="Reconstruction", model=s.ckpt, positive=s.pos, negative=s.neg,
                   cfg=1.0, inversion=inversion, edit_strength=1.0, residuals="all")
    edited = f.node("ExactInvInvertedSampler", title="Edit", note=edit_note, model=s.ckpt, positive=s.edit,
                    negative=edit_negative, cfg=edit_cfg, inversion=inversion, edit_strength=1.0, residuals="all")
    return recon, edited


def decode_and_save(f: Flow, latent: Ref, vae: Ref, prefix: str, title: str) -> Ref:
    decoded = f.node("VAEDecode", samples=latent, vae=vae)
    return f.node("SaveImage", title=title, images=decoded, filename_prefix=f"exact_inversion/{prefix}")


def save_results(f: Flow, vae: Ref, prefix: str, recon: Ref, edited: Ref | None = None) -> None:
    """Decode and save the reconstruction (``<prefix>_reconstruction``) and the edit, if any (``<prefix>_edit``)."""
    decode_and_save(f, recon, vae, f"{prefix}_reconstruction", "Reconstruction")
    if edited is not None:
        decode_and_save(f, edited, vae, f"{prefix}_edit", "Edit")


# Exact Invert's widget values in every workflow: the node's defaults (nodes/invert_nodes.py)
EXACT_INVERT_DEFAULTS = dict(tolerance=0.0001, max_calls=30, memory=3, fallback=True, target_psnr=40.0,
                             refinements=2, candidates=True)
ODE_INVERT_DEFAULTS = dict(bottom_substeps=8, substeps=1, bottom_floor=0.05, mirror="auto")


def sd15_renoise() -> Flow:
    f = Flow("sd15_renoise_reconstruct_edit", "SD1.5: ReNoise inversion -> reconstruction and edit",
             "# ReNoise inversion on SD1.5\n\nInverts an image with **ReNoise** (Garibi et al., ECCV 2024) over a "
             "50-step DDIM schedule (`ddim_uniform` + euler = DDIM), then samples it back twice with **Inverted "
             "Sampler**: with the source prompt (reconstruction) and with a new prompt (edit).\n\nModel: "
             f"`{SD15_CKPT}` in `models/checkpoints`. Image: any picture (LoadImage).")
    s = load_sources(f, SD15_CKPT, 512)
    inv = f.node("ExactInvReNoiseInvert", note=(
        "**ReNoise.** Each of the 50 inverse steps re-noises `iterations` times with the model and averages the "
        "last estimates (`average_start`..`average_end`, here the last two of 3). `regularize` (the paper's pair + "
        "patch-KL losses) is off: on the edit benchmark it did not make edits succeed more and put them 4-54 dB "
        "further from the ideal edit, and it costs one model call per step and 20 dB or more of reconstruction; turn "
        "it on to reproduce the paper. The official SDXL-Turbo setting is 9 iterations, window 8..10.\n\n"
        "`steps`, `scheduler` and `cfg` must match when sampling back: Inverted Sampler takes them from the "
        "INVERSION."),
        **invert_inputs(s.ckpt, s.pos, s.neg, s.latent, steps=50, scheduler="ddim_uniform"),
        iterations=3, average=True, average_start=2, average_end=4, first_step="first",
        regularize=False, lambda_pair=20.0, lambda_kl=0.065, seed=0)
    recon, edited = inverted_samplers(f, s, inv[1], edit_negative=s.pos, edit_cfg=2.0, edit_note=(
        "**Edit.** The same inversion sampled with the edit prompt, the source prompt as negative (as the official "
        "ReNoise code). Raise `cfg` (1.5-4) for a stronger edit; cfg 1 keeps the layout closest."))
    save_results(f, s.vae, "sd15_renoise", recon, edited)
    return f


def sd15_ddim_ksampler() -> Flow:
    f = Flow("sd15_ddim_invert_ksampler", "SD1.5: DDIM inversion -> stock KSamplerAdvanced",
             "# DDIM inversion, sampled back by a stock KSampler\n\nThe classic 'unsampler': **DDIM Invert** (one "
             "model call per step, approximate) hands its LATENT to ComfyUI's own **KSamplerAdvanced** with "
             "`add_noise` disabled and the same steps / scheduler / cfg, sampler `euler`. Fast, but the "
             "reconstruction drifts at few steps; **Exact Invert** removes the drift.\n\n"
             f"Model: `{SD15_CKPT}`.")
    s = load_sources(f, SD15_CKPT, 512, edit=False)
    inv = f.node("ExactInvDDIMInvert", note=NOTE_CFG1,
                 **invert_inputs(s.ckpt, s.pos, s.neg, s.latent, steps=50, scheduler="ddim_uniform"),
                 convention="target")
    sampled = stock_ksampler(f, "Sample back (stock)", s.ckpt, s.pos, s.neg, inv[0], steps=50,
                             scheduler="ddim_uniform", cfg=1.0, note=(
        "**Sampling back with a stock node.** `add_noise` disable, `start_at_step` 0, `end_at_step` 10000, sampler "
        "`euler`, and the inversion's steps, scheduler and cfg. Any other sampler or schedule gives a different "
        "image."))
    save_results(f, s.vae, "sd15_ddim", sampled)
    return f


def sdxl_turbo_renoise() -> Flow:
    f = Flow("sdxl_turbo_renoise_noise_correct", "SDXL-Turbo: ReNoise 4 steps, euler_ancestral + Noise Correct",
             "# The ReNoise paper's setup: SDXL-Turbo, 4 steps, euler_ancestral\n\n**Noise Correct** inverts the "
             "stochastic euler_ancestral sampler: every step is solved with ReNoise (9 iterations) for a seeded noise, "
             "then the noise is corrected towards the one that lands exactly on the image (`damped`: the official "
             "10 x 1.8 rule; `exact`: exactly). **Inverted Sampler** replays the stored noises: with the source "
             "prompt it reconstructs, with a new prompt it edits.\n\n"
             f"Model: `{SDXL_TURBO_CKPT}` in `models/checkpoints`.")
    s = load_sources(f, SDXL_TURBO_CKPT, 512)
    inv = f.node("ExactInvNoiseCorrect", note=(
        "**Paper settings.** 4 steps, `sgm_uniform` (the turbo 'trailing' timesteps 999/749/499/249), cfg 1, "
        "euler_ancestral eta 1, ReNoise 9 iterations, damped correction, seed 7865 (the official seed). "
        "`correction` exact makes the reconstruction exact at the cost of less Gaussian noise; `solver` exact uses "
        "the adaptive solver instead of ReNoise (fewer model calls)."),
        **invert_inputs(s.ckpt, s.pos, s.neg, s.latent, steps=4, scheduler="sgm_uniform"),
        sampler_name="euler_ancestral", eta=1.0, s_noise=1.0, noise_seed=7865, correction="damped",
        solver="renoise", iterations=9)
    recon, edited = inverted_samplers(f, s, inv[1], edit_negative=s.neg, edit_cfg=1.0, edit_note=(
        "**Edit** with the stored noises and the edit prompt. SDXL-Turbo is trained for cfg 1; keep it at 1-1.5."))
    save_results(f, s.vae, "sdxl_turbo_renoise", recon, edited)
    return f


def lcm_lora() -> Flow:
    f = Flow("lcm_lora_noise_correct", "LCM-LoRA: inversion with noise correction",
             "# LCM (SD1.5 + LCM-LoRA) inversion with noise correction\n\nThe LCM sampler injects fresh noise at "
             "every step; **Noise Correct** (sampler `lcm`) inverts it and stores, per step, the noise that lands "
             "exactly on the image. Sampling back uses stock **SamplerCustomAdvanced** with the inversion's NOISE "
             "and SIGMAS and **Replay Sampler** (ComfyUI's own lcm sampler replaying the stored noises).\n\n"
             f"Models: `{SD15_CKPT}` (checkpoints) and `{LCM_LORA_SD15}` (loras; the LCM-LoRA for SD1.5, "
             "renamed).")
    ckpt = f.node("CheckpointLoaderSimple", ckpt_name=SD15_CKPT)
    lora = f.node("LoraLoaderModelOnly", model=ckpt, lora_name=LCM_LORA_SD15, strength_model=1.0)
    model = f.node("ModelSamplingDiscrete", note=(
        "**LCM sampling.** `sampling` lcm is required: it is what the lcm sampler and the inversion of it "
        "assume."), model=lora, sampling="lcm", zsnr=False)
    latent = image_to_latent(f, ckpt[2], 512)
    pos, neg, _ = prompts(f, ckpt[1], edit=False)
    inv = f.node("ExactInvNoiseCorrect", note=(
        "**LCM settings.** 4 steps, `sgm_uniform`, cfg 1, sampler `lcm`. `correction` exact + `solver` exact give "
        "an exact reconstruction; `iterations` is the per-step model-call budget minus one."),
        **invert_inputs(model, pos, neg, latent, steps=4, scheduler="sgm_uniform"),
        sampler_name="lcm", eta=1.0, s_noise=1.0, noise_seed=0, correction="exact", solver="exact", iterations=9)
    guider = f.node("CFGGuider", model=model, positive=pos, negative=neg, cfg=1.0)
    replay = f.node("ExactInvReplaySampler", inversion=inv[1])
    sampled = f.node("SamplerCustomAdvanced", title="Sample back (stock)", note=(
        "**Stock custom sampling.** NOISE and SIGMAS come from the inversion, `latent_image` is the encoded image "
        "(its shape and, for partial inversions, its content), the sampler replays the stored noises."),
        noise=inv[2], guider=guider, sampler=replay, sigmas=inv[3], latent_image=latent)
    save_results(f, ckpt[2], "lcm", sampled[0])
    return f


def easyinv(preset: str) -> Flow:
    if preset == "sd1":
        name, ckpt_name, size, label = "easyinv_sd15", SD15_CKPT, 512, "SD1.5"
    else:
        name, ckpt_name, size, label = "easyinv_sdxl", SDXL_CKPT, 1024, "SDXL"
    f = Flow(name, f"{label}: EasyInv inversion (preset {preset})",
             f"# EasyInv on {label} (preset `{preset}`)\n\n**EasyInv** (Zhang et al., ICML 2025) is DDIM inversion "
             "that blends each latent with the previous one over a window of steps: one model call per step, "
             "usually closer than plain DDIM. Presets are the official settings (sd1: eta 0.5, window 5%-25%; "
             "sdxl: eta 0.8, window 85%-95%).\n\n"
             f"Model: `{ckpt_name}` in `models/checkpoints`.")
    s = load_sources(f, ckpt_name, size)
    inv = f.node("ExactInvEasyInvInvert", note=(
        f"**Preset `{preset}`.** `eta`, `start` and `length` are only read with preset `custom`. `order` before is "
        "the official code behind the paper's numbers."),
        **invert_inputs(s.ckpt, s.pos, s.neg, s.latent, steps=50, scheduler="ddim_uniform"),
        preset=preset, eta=0.5 if preset == "sd1" else 0.8, start=0.05 if preset == "sd1" else 0.85,
        length=0.2 if preset == "sd1" else 0.1, order="before")
    if preset == "sd1":
        recon = stock_ksampler(f, "Reconstruction (stock)", s.ckpt, s.pos, s.neg, inv[0], steps=50,
                               scheduler="ddim_uniform", cfg=1.0, note=(
            "**Stock hand-off.** The LATENT output goes to KSamplerAdvanced: `add_noise` disable, sampler euler, "
            "same steps / scheduler / cfg, start 0, end 10000."))
        edited = stock_ksampler(f, "Edit (stock)", s.ckpt, s.edit, s.pos, inv[0], steps=50, scheduler="ddim_uniform",
                                cfg=2.0)
    else:
        recon, edited = inverted_samplers(f, s, inv[1], edit_negative=s.pos, edit_cfg=2.0, edit_note=(
            "**Edit.** Raise `cfg` for a stronger edit (the EasyInv SDXL code inverts and edits at guidance 5; cfg 1 "
            "reconstructs best)."))
    save_results(f, s.vae, name, recon, edited)
    return f


def rnri_sdxl_turbo() -> Flow:
    f = Flow("rnri_sdxl_turbo", "SDXL-Turbo: RNRI (Newton-Raphson) inversion",
             "# RNRI on SDXL-Turbo\n\n**RNRI** (Samuel et al., ICLR 2025) solves each inverse step with "
             "Newton-Raphson and a Gaussian prior that keeps the latent in distribution: a few model calls per step, "
             "close reconstructions at 4 steps.\n\n"
             f"Model: `{SDXL_TURBO_CKPT}` in `models/checkpoints`.")
    s = load_sources(f, SDXL_TURBO_CKPT, 512)
    inv = f.node("ExactInvRNRIInvert", note=(
        "**variant.** `newton` differentiates the model (one backward pass per iteration, more memory); where the "
        "model cannot be differentiated (fp8 weights, some attention kernels) it falls back to `released`, the "
        "official Jacobian-free update, and says so in the log. Official: 2 iterations, prior weight 0.1. "
        "`denoise` 0.6 inverts only the last steps, as the official demo."),
        **invert_inputs(s.ckpt, s.pos, s.neg, s.latent, steps=4, scheduler="sgm_uniform"),
        variant="newton", iterations=2, prior_weight=0.1)
    recon, edited = inverted_samplers(f, s, inv[1], edit_negative=s.neg, edit_cfg=1.2, edit_note=(
        "**Edit.** The official RNRI demo edits at cfg 1.2 with an empty negative prompt."))
    save_results(f, s.vae, "rnri_sdxl_turbo", recon, edited)
    return f


def flux_exact() -> Flow:
    f = Flow("flux_exact_invert_edit", "Flux: exact inversion and edit through NOISE",
             "# Flux inversion and edit (rectified flow)\n\nA full inversion of a flow model ends at sigma 1, where "
             "the start latent is pure noise: a LATENT cannot carry it (the sampler multiplies it by 1 - sigma = 0, "
             "so the invert node's LATENT output is zeros). The **NOISE** output can: stock "
             "**SamplerCustomAdvanced** with that NOISE, the inversion's SIGMAS and the encoded image as "
             "`latent_image` starts exactly at the inverted latent. Same source prompt: reconstruction; new prompt: "
             "edit.\n\nModels: `flux1-dev.safetensors` (diffusion_models), `clip_l.safetensors` + "
             "`t5xxl_fp16.safetensors` (text_encoders), `ae.safetensors` (vae). SD3 works the same way.")
    unet = f.node("UNETLoader", unet_name=FLUX_UNET, weight_dtype="default")
    clip = f.node("DualCLIPLoader", clip_name1=FLUX_CLIP_L, clip_name2=FLUX_T5, type="flux", device="default")
    vae = f.node("VAELoader", vae_name=FLUX_VAE)
    model = f.node("ModelSamplingFlux", note=(
        "**Shift.** Set width/height to the image size: Flux's schedule shift depends on it, and inversion and "
        "sampling must use the same schedule."),
        model=unet, max_shift=1.15, base_shift=0.5, width=1024, height=1024)
    latent = image_to_latent(f, vae, 1024)
    pos = f.node("CLIPTextEncode", title="Source prompt", note=NOTE_PROMPT, text=SOURCE_PROMPT, clip=clip)
    edit = f.node("CLIPTextEncode", title="Edit prompt", text=EDIT_PROMPT, clip=clip)
    pos_g = f.node("FluxGuidance", title="Source guidance", conditioning=pos, guidance=3.5)
    edit_g = f.node("FluxGuidance", title="Edit guidance", conditioning=edit, guidance=3.5)
    inv = f.node("ExactInvExactInvert", note=(
        "**Exact Invert** at cfg 1 (Flux dev is guidance-distilled: guidance goes through FluxGuidance, not cfg). "
        "Use its **noise** and **sigmas** outputs, not the LATENT."),
        **invert_inputs(model, pos_g, pos_g, latent, steps=28, scheduler="simple"),
        **EXACT_INVERT_DEFAULTS)
    sampler = f.node("KSamplerSelect", title="euler (the inverted sampler)", sampler_name="euler")
    recon_guider = f.node("BasicGuider", model=model, conditioning=pos_g)
    edit_guider = f.node("BasicGuider", model=model, conditioning=edit_g)
    recon = f.node("SamplerCustomAdvanced", title="Reconstruction", noise=inv[2], guider=recon_guider,
                   sampler=sampler, sigmas=inv[3], latent_image=latent)
    edited = f.node("SamplerCustomAdvanced", title="Edit", note=(
        "**Edit** = the same NOISE and SIGMAS with the edit prompt's guider."),
        noise=inv[2], guider=edit_guider, sampler=sampler, sigmas=inv[3], latent_image=latent)
    save_results(f, vae, "flux", recon[0], edited[0])
    return f


def exact_one_node() -> Flow:
    f = Flow("exact_invert_reconstruct", "Exact Invert: give me my image back",
             "# Give me my image back: Exact Invert\n\n**Exact Invert** solves every inverse sampler step to a "
             "tolerance (Anderson-accelerated fixed point, ReNoise fallback), then samples the result back itself "
             "and measures the reconstruction of every image; images below **target_psnr** get DDIM and ReNoise "
             "candidates and refinement passes, and each keeps its best verified answer. Its output (and the log) "
             "says what it measured: mean, worst image, images under 30 dB. **Inverted Sampler** samples it back in "
             "one node. The difference image should be black.\n\n"
             f"Model: `{SD15_CKPT}` (any SD1.x/SDXL/SD3/Flux model works the same way).")
    ckpt = f.node("CheckpointLoaderSimple", ckpt_name=SD15_CKPT)
    scaled = load_image(f, 512)
    latent = f.node("VAEEncode", pixels=scaled, vae=ckpt[2])
    pos = f.node("CLIPTextEncode", title="Prompt", note=NOTE_PROMPT, text="", clip=ckpt[1])
    inv = f.node("ExactInvExactInvert", note=(
        "**target_psnr** is what sampling back must reach (dB); the node checks it on every image. **tolerance** "
        "is the landing error allowed per step (the sampler can amplify it on some images, which the check "
        "catches). **max_calls** caps the model calls of one step; **refinements** the extra passes."),
        **invert_inputs(ckpt, pos, pos, latent, steps=20, scheduler="normal"),
        **EXACT_INVERT_DEFAULTS)
    recon = f.node("ExactInvInvertedSampler", title="Sample back", model=ckpt, positive=pos, negative=pos, cfg=1.0,
                   inversion=inv[1], edit_strength=1.0, residuals="all")
    decoded = f.node("VAEDecode", samples=recon, vae=ckpt[2])
    f.node("SaveImage", title="Reconstruction", images=decoded,
           filename_prefix="exact_inversion/exact_reconstruction")
    diff = f.node("ImageBlend", title="Difference (should be black)", image1=scaled, image2=decoded,
                  blend_factor=1.0, blend_mode="difference")
    f.node("PreviewImage", images=diff)
    return f


def sd15_inversion_sampler() -> Flow:
    f = Flow("sd15_inversion_sampler_custom", "SD1.5: Inversion Sampler inside stock custom sampling",
             "# Inversion as a SAMPLER\n\n**Inversion Sampler** is a SAMPLER that inverts instead of denoising: "
             "stock **SamplerCustom** with `add_noise` off, any SIGMAS (here BasicScheduler) and the encoded image "
             "gives the inverted LATENT; a second SamplerCustom with euler and the same SIGMAS samples it back. Use "
             "it to compose inversion with other custom-sampling nodes.\n\n"
             f"Model: `{SD15_CKPT}`.")
    s = load_sources(f, SD15_CKPT, 512, edit=False)
    sigmas = f.node("BasicScheduler", model=s.ckpt, scheduler="normal", steps=20, denoise=1.0)
    inverter = f.node("ExactInvInversionSampler", note=(
        "**method** exact is Exact Invert's solver with its end-to-end check (the log line reports the "
        "reconstruction); renoise, easyinv and ddim are also available. The sampler accepts BasicScheduler order "
        "or FlipSigmas order."), method="exact", tolerance=0.0001, iterations=30)
    inverted = f.node("SamplerCustom", title="Invert", note=(
        "**add_noise off**: an inversion starts from the image itself."),
        model=s.ckpt, add_noise=False, noise_seed=0, cfg=1.0, positive=s.pos, negative=s.neg, sampler=inverter,
        sigmas=sigmas, latent_image=s.latent)
    euler = f.node("KSamplerSelect", sampler_name="euler")
    sampled = f.node("SamplerCustom", title="Sample back", model=s.ckpt, add_noise=False, noise_seed=0, cfg=1.0,
                     positive=s.pos, negative=s.neg, sampler=euler, sigmas=sigmas, latent_image=inverted[0])
    save_results(f, s.vae, "sd15_inversion_sampler", sampled[0])
    return f


def sd15_invert_edit() -> Flow:
    f = Flow("sd15_invert_edit", "SD1.5: invert -> edit (the measured edit settings)",
             "# Invert -> edit\n\n**ODE Invert** inverts the image with its own prompt at cfg 1 along the "
             "continuous probability-flow ODE; **Inverted Sampler** samples it back with the source prompt "
             "(reconstruction: exact, through the stored residuals) and with the edit prompt (edit). The settings "
             "are the ones the edit front chose (`benchmarks/EDIT_FRONT.md`, measured against the continuous ideal "
             "edit on a hard class-conditional ground truth): ODE Invert with its defaults at cfg 1, residuals all, "
             "edit at cfg 3 with the empty prompt as negative. In CI this workflow runs on the conditional digits "
             "demo model (a 3 edited into an 8).\n\n"
             f"Model: `{SD15_CKPT}`. Image: any picture (LoadImage).")
    s = load_sources(f, SD15_CKPT, 512)
    inv = f.node("ExactInvODEInvert", note=(
        "**Invert at cfg 1** with the prompt that describes the image (inverting at the edit's cfg put edits about "
        "10 dB further from the ideal edit). ODE Invert finds the noise the continuous flow reaches, which edits "
        "closest to the ideal edit at every step count measured; Exact Invert's exact preimage edits worst at "
        "few steps (README, \"Edits against the continuous ideal\")."),
        **invert_inputs(s.ckpt, s.pos, s.neg, s.latent, steps=25, scheduler="normal"),
        **ODE_INVERT_DEFAULTS)
    recon, edited = inverted_samplers(f, s, inv[1], edit_negative=s.neg, edit_cfg=3.0, edit_note=(
        "**Edit** with the edit prompt, the empty prompt as negative, cfg 3: higher cfg makes the edit stronger and "
        "moves it away from the source (measured: cfg 1 -> 3 -> 7.5 raised success and lowered preservation). "
        "`edit_strength` below 1 replays the first steps of the source: more of its structure is kept."))
    save_results(f, s.vae, "sd15_invert_edit", recon, edited)
    return f


def sd15_masked_edit() -> Flow:
    f = Flow("sd15_masked_edit", "SD1.5: masked edit (invert, edit inside a mask, keep the rest)",
             "# Masked edit: invert -> edit inside a mask\n\n**ODE Invert** inverts the whole image; **Inverted "
             "Sampler** samples it back with the edit prompt from a LATENT that carries a **noise_mask** "
             "(SetLatentNoiseMask): inside the mask the edit, outside it every step uses the source image's own "
             "stored trajectory, so the result outside the mask is the source exactly (measured on the "
             "class-conditional ground truth: >160 dB outside, `benchmarks/EDIT_RESULTS.md`).\n\n"
             f"Model: `{SD15_CKPT}`. Image: any picture (LoadImage).")
    s = load_sources(f, SD15_CKPT, 512)
    blank = f.node("SolidMask", title="Mask canvas (keep)", value=0.0, width=512, height=512)
    area = f.node("SolidMask", title="Edited area", value=1.0, width=256, height=512)
    mask = f.node("MaskComposite", title="Mask: left half", note=(
        "**Mask.** 1 = edit, 0 = keep. Here the left half; paint your own in LoadImage's mask editor and connect "
        "its MASK output to SetLatentNoiseMask instead."),
        destination=blank, source=area, x=0, y=0, operation="add")
    masked = f.node("SetLatentNoiseMask", samples=s.latent, mask=mask)
    inv = f.node("ExactInvODEInvert", note=(
        "**Invert at cfg 1** with the source prompt: on the edit benchmark inverting at the edit's cfg lowered the "
        "edit's match to the ideal edit by about 10 dB. The invert node inverts the whole latent (the trajectory "
        "outside the mask is what keeps the background)."),
        **invert_inputs(s.ckpt, s.pos, s.neg, s.latent, steps=25, scheduler="normal"),
        **ODE_INVERT_DEFAULTS)
    recon = f.node("ExactInvInvertedSampler", title="Reconstruction", model=s.ckpt, positive=s.pos, negative=s.neg,
                   cfg=1.0, inversion=inv[1], edit_strength=1.0, residuals="all")
    edited = f.node("ExactInvInvertedSampler", title="Edit", note=(
        "**Masked edit.** The masked LATENT goes to `latent`: inside the mask the edit prompt, outside the stored "
        "source trajectory, blended per step as ComfyUI's own inpainting does. `edit_strength` below 1 replays the "
        "first steps of the source everywhere (more structure kept); raise `cfg` (3-5) for a stronger edit."),
        model=s.ckpt, positive=s.edit, negative=s.neg, cfg=3.0, inversion=inv[1], latent=masked, edit_strength=1.0,
        residuals="all")
    save_results(f, s.vae, "sd15_masked_edit", recon, edited)
    return f


WORKFLOW_BUILDERS: list[Callable[[], Flow]] = [
    sd15_renoise, sd15_ddim_ksampler, sdxl_turbo_renoise, lcm_lora, lambda: easyinv("sd1"), lambda: easyinv("sdxl"),
    rnri_sdxl_turbo, flux_exact, exact_one_node, sd15_inversion_sampler, sd15_invert_edit, sd15_masked_edit,
]


def workflows() -> list[Flow]:
    return [build() for build in WORKFLOW_BUILDERS]


# ------------------------------------------------------------------------------------------ files
def render(object_info: dict) -> dict[str, tuple[dict, dict]]:
    """{name: (ui, api)} for every workflow."""
    out = {}
    for flow in workflows():
        api = flow.api()
        notes = [(flow.about, None)] + list(flow.notes)
        ui = ui_from_api(api, object_info, notes, flow.name)
        problems = validate_ui(ui, object_info)
        if problems:
            raise ValueError(f"{flow.name}: generated UI workflow is invalid:\n  " + "\n  ".join(problems))
        out[flow.name] = (ui, api)
    return out


def expected_files(object_info: dict, out_dir: Path = OUT_DIR) -> dict[Path, str]:
    files = {}
    for name, (ui, api) in render(object_info).items():
        files[out_dir / f"{name}.json"] = dumps(ui)
        files[out_dir / API_DIR_NAME / f"{name}.json"] = dumps(api)
    return files
