"""Train the test-bed's learned denoiser on CPU on real photographs (dev only; needs scikit-image).

    /work/devvenv/bin/python -m testbed.train_learned        # = --steps 700 --minutes 9 --threads 1 --seed 0

The defaults train the first model ("learned_a" in ``testbed.learned.MODELS``); the options choose another one's
width/depth (--channels, --blocks-per-level, --embedding-dim, --fourier-features, --groups), seed, held-out photos
(--held-out), crop size and pyramid ratio, and output paths; ``testbed/README.md`` gives each committed model's
command. ``--eval-only`` writes just the eval set (e.g. a larger one with --eval-count 64 for an existing model).

Random 32x32-pixel crops (random downscale via an image pyramid, random horizontal flips) of the training photos
become 4x16x16 latents (``testbed.photos``). The noise angle phi is drawn half uniform on [0, pi/2] and half as
atan(sigma) with sigma log-uniform in [0.02, 20], covering ComfyUI's VE (phi = atan(sigma)) and flow ranges. Loss:
MSE on the velocity v = alpha * eps - beta * x0 (Salimans & Ho 2022, sec. 4); AdamW, linear warm-up then cosine
decay, EMA of the weights (the EMA weights are saved). Deterministic given --seed, --steps and --threads (checked:
two runs give bit-identical weights);
--minutes is a safety cap that ends training early (recorded in the metadata as ``stopped_early``).
Writes ``testbed/weights/learned_denoiser.safetensors`` and ``testbed/data/eval_latents.safetensors`` (--out,
--eval-out). The eval crops are always 32x32 pixels (4x16x16 latents), whatever --crop trains on.
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from testbed.learned import DEFAULT_CONFIG, UNet, count_parameters, velocity_target  # noqa: E402
from testbed.photos import HELD_OUT, load_photo, load_photos, luma, photos_to_latents, pyramid, split_photos  # noqa: E402

CROP = 32                       # pixels; latents are 4 x CROP/2 x CROP/2 (the eval crops' size, always)
EVAL_PER_SET = 8
RATIO = 2 ** -0.5               # pyramid: each level is the previous one downscaled by this


def photo_pyramids(names, smallest: int = CROP, ratio: float = RATIO):
    return [pyramid(luma(load_photo(name)[None])[0], smallest=smallest, ratio=ratio) for name in names]


def random_crops(pyramids, batch: int, generator: torch.Generator, crop: int = CROP) -> torch.Tensor:
    """[batch, 1, crop, crop] crops: a uniform photo, a uniform pyramid level, a uniform position, a random flip."""
    crops = []
    photo = torch.randint(len(pyramids), (batch,), generator=generator).tolist()
    for i in photo:
        levels = pyramids[i]
        level = levels[int(torch.randint(len(levels), (1,), generator=generator))]
        h, w = level.shape[-2:]
        top = int(torch.randint(h - crop + 1, (1,), generator=generator))
        left = int(torch.randint(w - crop + 1, (1,), generator=generator))
        piece = level[:, top:top + crop, left:left + crop]
        if bool(torch.rand((), generator=generator) < 0.5):
            piece = piece.flip(-1)
        crops.append(piece)
    return torch.stack(crops)


def sample_phi(batch: int, generator: torch.Generator) -> torch.Tensor:
    """Half uniform on [0, pi/2], half atan(sigma) with log sigma uniform on [log 0.02, log 20]."""
    uniform = torch.rand(batch, generator=generator) * (math.pi / 2)
    log_sigma = math.log(0.02) + torch.rand(batch, generator=generator) * (math.log(20.0) - math.log(0.02))
    from_sigma = torch.atan(log_sigma.exp())
    pick = torch.rand(batch, generator=generator) < 0.5
    return torch.where(pick, uniform, from_sigma)


def train_step(net, ema, optimizer, loss: torch.Tensor, step: int, ema_rate: float) -> None:
    """One optimiser step on ``loss`` (gradient norm clipped at 1), then the EMA copy moves toward the weights with
    decay min(ema_rate, (1 + step) / (10 + step)) (a short warm-up of the average)."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    optimizer.step()
    decay = min(ema_rate, (1 + step) / (10 + step))
    with torch.no_grad():
        for p_ema, p in zip(ema.parameters(), net.parameters(), strict=True):
            p_ema.lerp_(p, 1 - decay)


def learning_rate(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def overlaps(a: tuple, b: tuple) -> bool:
    """Two crops (photo, level, top, left) of the same photo and level that share more than half their area."""
    if a[:2] != b[:2]:
        return False
    return max(0, CROP - abs(a[2] - b[2])) * max(0, CROP - abs(a[3] - b[3])) > CROP * CROP / 2


def tile_pool(pyramids) -> list[tuple]:
    """Every CROP x CROP tile of a grid of stride CROP on every level: (photo, level, top, left)."""
    return [(i, j, top, left) for i, levels in enumerate(pyramids) for j, level in enumerate(levels)
            for top in range(0, level.shape[-2] - CROP + 1, CROP)
            for left in range(0, level.shape[-1] - CROP + 1, CROP)]


def eval_latents(seed: int, held_out=HELD_OUT, count: int = EVAL_PER_SET, ratio: float = RATIO,
                 tiles: bool = False) -> tuple[dict[str, torch.Tensor], dict]:
    """Fixed eval sets: ``count`` crops (4x16x16 latents) from held-out and from training photos, plus the
    held-out photos' center squares at 64 px (4x32x32 latents) for resolution checks. The first held-out crops are
    the held-out photos whole (coarsest pyramid level, centered). The others are a random photo, level and
    position, or with ``tiles`` distinct grid tiles: the photos in turn, a random level, a random tile of it not
    overlapping a crop already taken by more than half (so a large set has no repeats)."""
    held_out, train = split_photos(held_out)
    generator = torch.Generator().manual_seed(seed + 12345)
    out, sources = {}, {}
    for key, names in (("heldout", held_out), ("train", train)):
        pyramids = photo_pyramids(names, ratio=ratio)
        pool = tile_pool(pyramids)
        crops, where = [], []
        for k in range(count):
            if key == "heldout" and k < len(names):      # each held-out photo whole (coarsest level, centered)
                i = k
                j = len(pyramids[i]) - 1
                h, w = pyramids[i][j].shape[-2:]
                top, left = (h - CROP) // 2, (w - CROP) // 2
            elif tiles:                                   # photos in turn, a random level, a random free tile
                photos = sorted({tile[0] for tile in pool}, key=lambda p: (p - k) % len(names))
                levels = sorted({tile[1] for tile in pool if tile[0] == photos[0]})
                j = levels[int(torch.randint(len(levels), (1,), generator=generator))]
                free = [tile for tile in pool if tile[:2] == (photos[0], j)]
                i, j, top, left = free[int(torch.randint(len(free), (1,), generator=generator))]
            else:                                         # a random photo, level and position
                i = int(torch.randint(len(names), (1,), generator=generator))
                j = int(torch.randint(len(pyramids[i]), (1,), generator=generator))
                h, w = pyramids[i][j].shape[-2:]
                top = int(torch.randint(h - CROP + 1, (1,), generator=generator))
                left = int(torch.randint(w - CROP + 1, (1,), generator=generator))
            crops.append(pyramids[i][j][:, top:top + CROP, left:left + CROP])
            where.append({"photo": names[i], "level": j, "top": top, "left": left})
            pool = [tile for tile in pool if not overlaps(tile, (i, j, top, left))]
        out[f"{key}_crops"] = photos_to_latents(torch.stack(crops)).contiguous()
        sources[f"{key}_crops"] = where
    out["heldout_whole64"] = photos_to_latents(load_photos(held_out, size=64)).contiguous()
    sources["heldout_whole64"] = [{"photo": name, "center_square_resized_to": 64} for name in held_out]
    return out, sources


def int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def name_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def network_config(args) -> dict:
    """DEFAULT_CONFIG with the options the command line set."""
    config = dict(DEFAULT_CONFIG)
    for key in ("channels", "blocks_per_level", "embedding_dim", "fourier_features", "groups"):
        if getattr(args, key) is not None:
            config[key] = getattr(args, key)
    return config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=700)
    parser.add_argument("--minutes", type=float, default=9.0, help="wall-clock cap; stops early if reached")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--ema", type=float, default=0.998)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="1 is faster on the shared 2-core machine")
    parser.add_argument("--out", type=Path, default=ROOT / "testbed" / "weights" / "learned_denoiser.safetensors")
    parser.add_argument("--eval-out", type=Path, default=ROOT / "testbed" / "data" / "eval_latents.safetensors")
    parser.add_argument("--eval-count", type=int, default=EVAL_PER_SET, help="crops per eval set (held out, train)")
    parser.add_argument("--eval-tiles", action="store_true",
                        help="eval crops as distinct grid tiles "
                        "(default: random positions, as eval_latents.safetensors)")
    parser.add_argument("--eval-only", action="store_true", help="write the eval set and stop (no training)")
    parser.add_argument("--held-out", type=name_list, default=HELD_OUT, help="comma-separated photos never trained on")
    parser.add_argument("--crop", type=int, default=CROP, help="training crop in pixels (a multiple of 8)")
    parser.add_argument("--pyramid-ratio", type=float, default=RATIO, help="downscale between pyramid levels")
    parser.add_argument("--channels", type=int_list, default=None, help=f"e.g. 16,32,64 (default "
                        f"{','.join(map(str, DEFAULT_CONFIG['channels']))})")
    parser.add_argument("--blocks-per-level", type=int, default=None)
    parser.add_argument("--embedding-dim", type=int, default=None)
    parser.add_argument("--fourier-features", type=int, default=None)
    parser.add_argument("--groups", type=int, default=None)
    args = parser.parse_args(argv)
    held_out, train = split_photos(args.held_out)
    if args.crop % 8 or args.crop < 8:
        parser.error("--crop must be a positive multiple of 8 (latents of crop/2 pixels, divisible by 4)")
    config = network_config(args)
    command = "python -m testbed.train_learned " + " ".join(sys.argv[1:] if argv is None else argv)

    import skimage
    from safetensors.torch import save_file

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    generator = torch.Generator().manual_seed(args.seed)

    eval_sets, eval_sources = eval_latents(args.seed, held_out, args.eval_count, args.pyramid_ratio, args.eval_tiles)
    args.eval_out.parent.mkdir(parents=True, exist_ok=True)
    save_file(eval_sets, str(args.eval_out), metadata={
        "sources": json.dumps(eval_sources), "held_out_photos": json.dumps(held_out),
        "train_photos": json.dumps(train), "crop_pixels": str(CROP), "seed": str(args.seed),
        "pyramid_ratio": str(args.pyramid_ratio), "command": command,
        "sampling": "grid tiles, no two overlapping by more than half" if args.eval_tiles else "random positions",
        "encoding": "BT.601 luma of [-1, 1] RGB, then 2x2 pixel unshuffle (testbed.photos.photos_to_latents)",
        "scikit_image": skimage.__version__})
    if args.eval_only:
        print(f"saved {args.eval_out}: " + ", ".join(f"{k} {list(v.shape)}" for k, v in eval_sets.items()))
        return
    heldout = eval_sets["heldout_crops"]

    pyramids = photo_pyramids(train, smallest=args.crop, ratio=args.pyramid_ratio)
    net = UNet(**config)
    ema = copy.deepcopy(net).requires_grad_(False)
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.99))
    warmup = min(100, args.steps // 10)
    print(f"params {count_parameters(net)}, config {config}, train photos {len(train)}, held out {held_out}, "
          f"crop {args.crop}, steps {args.steps}, batch {args.batch}", flush=True)

    eval_gen = torch.Generator().manual_seed(777)
    eval_eps = torch.randn(heldout.shape, generator=eval_gen)
    eval_phi = torch.linspace(0.05, 1.5, heldout.shape[0])

    def heldout_loss(model):
        with torch.no_grad():
            u = torch.cos(eval_phi)[:, None, None, None] * heldout + torch.sin(eval_phi)[:, None, None, None] * eval_eps
            return (model(u, eval_phi) - velocity_target(heldout, eval_eps, eval_phi)).square().mean().item()

    start, running, history, step = time.time(), None, [], 0
    stopped_early = False
    for step in range(args.steps):
        if time.time() - start > args.minutes * 60:
            stopped_early = True
            break
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args.steps, args.lr, warmup)
        x0 = photos_to_latents(random_crops(pyramids, args.batch, generator, args.crop))
        eps = torch.randn(x0.shape, generator=generator)
        phi = sample_phi(args.batch, generator)
        u = torch.cos(phi)[:, None, None, None] * x0 + torch.sin(phi)[:, None, None, None] * eps
        loss = (net(u, phi) - velocity_target(x0, eps, phi)).square().mean()
        train_step(net, ema, optimizer, loss, step, args.ema)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 50 == 0 or step == args.steps - 1:
            line = {"step": step, "loss": round(running, 5), "lr": round(optimizer.param_groups[0]["lr"], 6),
                    "seconds": round(time.time() - start, 1)}
            if step % 200 == 0 or step == args.steps - 1:
                line["heldout_v_mse_ema"] = round(heldout_loss(ema), 5)
            history.append(line)
            print(json.dumps(line), flush=True)

    steps_done = step + (0 if stopped_early else 1)
    seconds = time.time() - start
    final = {"steps": steps_done, "loss": round(running, 5), "heldout_v_mse_ema": round(heldout_loss(ema), 5),
             "seconds": round(seconds, 1)}
    print(json.dumps(final), flush=True)
    state = {k: v.detach().float().contiguous() for k, v in ema.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(args.out), metadata={
        "config": json.dumps(ema.config), "parameters": str(count_parameters(ema)),
        "prediction": "v = alpha*eps - beta*x0 on u = alpha*x0 + beta*eps, conditioned on phi = atan2(beta, alpha)",
        "train_photos": json.dumps(train), "held_out_photos": json.dumps(held_out), "crop_pixels": str(args.crop),
        "pyramid_ratio": str(args.pyramid_ratio), "eval_latents": args.eval_out.name, "command": command,
        "steps": str(steps_done), "planned_steps": str(args.steps), "stopped_early": str(stopped_early),
        "batch": str(args.batch), "lr": str(args.lr), "ema": str(args.ema), "seed": str(args.seed),
        "final_loss": str(final["loss"]), "final_heldout_v_mse": str(final["heldout_v_mse_ema"]),
        "train_seconds": str(final["seconds"]), "threads": str(args.threads),
        "torch": torch.__version__, "scikit_image": skimage.__version__,
        "loss_history": json.dumps(history)})
    print(f"saved {args.out} ({args.out.stat().st_size / 1e6:.2f} MB) and {args.eval_out}", flush=True)


if __name__ == "__main__":
    main()
