"""Write the test model files into a ComfyUI ``models/`` directory.

Usage (with the ComfyUI interpreter): ``python build_models.py COMFYUI_DIR MODELS_DIR``

Writes (fp16 safetensors, weights N(0, 0.02) from fixed seeds, norms 1/0):
  diffusion_models/sd15narrow_unet_fp16.safetensors   one-level 320-ch SD1.5 UNet (UNETLoader; detected as SD15)
  checkpoints/sd15narrow_ckpt_fp16.safetensors        same weights under model.diffusion_model. (CheckpointLoaderSimple)
  diffusion_models/tiny_unet_fp16.safetensors         32-ch UNet for the TinySD15 config the support pack registers
"""
from __future__ import annotations

import os
import sys
import time

NARROW_SEED = 1234
TINY_SEED = 4321
FILES = {
    "narrow_unet": ("diffusion_models", "sd15narrow_unet_fp16.safetensors"),
    "narrow_ckpt": ("checkpoints", "sd15narrow_ckpt_fp16.safetensors"),
    "tiny_unet": ("diffusion_models", "tiny_unet_fp16.safetensors"),
}


def main(comfy_dir: str, models_dir: str) -> None:
    t0 = time.perf_counter()
    sys.path.insert(0, os.path.abspath(comfy_dir))
    from comfy.cli_args import args

    args.cpu = True  # before comfy.model_management is imported
    import safetensors.torch
    import torch

    import inv_test_models as itm  # this script's own directory is sys.path[0]

    def save(kind: str, state_dict: dict) -> None:
        sub, name = FILES[kind]
        os.makedirs(os.path.join(models_dir, sub), exist_ok=True)
        sd = {k: v.detach().to(torch.float16).contiguous() for k, v in state_dict.items()}
        safetensors.torch.save_file(sd, os.path.join(models_dir, sub, name))

    narrow = itm.build_base_model(itm.comfy.supported_models.SD15, itm.SD15_NARROW_UNET, NARROW_SEED)
    sd = narrow.diffusion_model.state_dict()
    save("narrow_unet", sd)
    save("narrow_ckpt", {"model.diffusion_model." + k: v for k, v in sd.items()})
    tiny = itm.build_base_model(itm.TinySD15, itm.TINY_UNET, TINY_SEED)
    save("tiny_unet", tiny.diffusion_model.state_dict())
    print(f"build_models: wrote {len(FILES)} files to {models_dir} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
