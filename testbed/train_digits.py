"""Train the conditional digits denoiser and its classifier on CPU (dev only; needs scikit-learn for the data).

    pip install --no-deps -r scripts/requirements-train.txt     # scikit-learn: only its bundled digits file is read
    .cache/comfy-host/venv/bin/python -m testbed.train_digits    # = --steps 1200 --batch 96 --minutes 5 --seed 0

Data: scikit-learn's 1797 handwritten digits (``testbed.digits``), 10 per class held out for evaluation (written to
``testbed/data/digits_eval.safetensors``), the rest trained on with random +-1 pixel shifts. Denoiser: v-prediction
MSE (as ``testbed.train_learned``: phi half uniform on [0, pi/2], half atan(sigma) with sigma log-uniform on
[0.02, 20]), the prompt's token embedding as context, replaced by the empty prompt (zeros) for ``--dropout`` of the
batch (classifier-free guidance training), AdamW with warm-up and cosine decay, EMA weights saved. Classifier: a
small CNN on clean latents with light noise augmentation. Deterministic given --seed, --steps and --threads.
Writes ``testbed/weights/digits_conditional.safetensors`` (keys ``net.*``, ``classifier.*`` in float16; config and
the training record in the metadata).
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from testbed.digits import (  # noqa: E402
    CONFIG,
    CONTEXT_DIM,
    EVAL_DATA,
    WEIGHTS,
    DigitClassifier,
    digits_to_latents,
    load_digits,
    make_net,
)
from testbed.learned import count_parameters, velocity_target  # noqa: E402
from testbed.train_learned import learning_rate, sample_phi, train_step  # noqa: E402

EVAL_PER_CLASS = 10


def split(labels: torch.Tensor, generator: torch.Generator):
    """(train indices, eval indices): EVAL_PER_CLASS random digits of each class held out."""
    held = []
    for k in range(10):
        idx = (labels == k).nonzero().flatten()
        held.append(idx[torch.randperm(idx.numel(), generator=generator)[:EVAL_PER_CLASS]])
    held = torch.cat(held).sort().values
    mask = torch.ones(labels.numel(), dtype=torch.bool)
    mask[held] = False
    return mask.nonzero().flatten(), held


def shifted(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random shifts by -1, 0 or +1 pixel (8x8 grid) along each axis, zero (blank) fill."""
    padded = F.pad(images, (1, 1, 1, 1))
    out = torch.empty_like(images)
    offs = torch.randint(0, 3, (images.shape[0], 2), generator=generator)
    for i, (dy, dx) in enumerate(offs.tolist()):
        out[i] = padded[i, dy:dy + 8, dx:dx + 8]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--classifier-steps", type=int, default=400)
    parser.add_argument("--minutes", type=float, default=5.0, help="wall-clock cap; stops early if reached")
    parser.add_argument("--batch", type=int, default=96)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--ema", type=float, default=0.995)
    parser.add_argument("--dropout", type=float, default=0.15, help="fraction trained with the empty prompt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    parser.add_argument("--eval-out", type=Path, default=EVAL_DATA)
    args = parser.parse_args(argv)

    from safetensors.torch import save_file

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    generator = torch.Generator().manual_seed(args.seed)
    images, labels = load_digits()
    train_idx, eval_idx = split(labels, generator)
    eval_latents = digits_to_latents(images[eval_idx]).contiguous()
    args.eval_out.parent.mkdir(parents=True, exist_ok=True)
    save_file({"latents": eval_latents, "labels": labels[eval_idx].contiguous()}, str(args.eval_out), metadata={
        "source": "scikit-learn bundled digits (sklearn/datasets/data/digits.csv.gz), UCI optdigits test set",
        "indices": json.dumps(eval_idx.tolist()), "encoding": "8x8 -> 16x16 bilinear, [-1, 1], 2x2 unshuffle"})
    train_images, train_labels = images[train_idx], labels[train_idx]

    net = make_net(CONFIG, CONTEXT_DIM)
    ema = copy.deepcopy(net).requires_grad_(False)
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.99))
    warmup = min(100, args.steps // 10)
    print(f"denoiser params {count_parameters(net)}, train {train_idx.numel()}, eval {eval_idx.numel()}",
          flush=True)
    start, running, history, stopped_early, step = time.time(), None, [], False, 0
    for step in range(args.steps):
        if time.time() - start > args.minutes * 60:
            stopped_early = True
            break
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args.steps, args.lr, warmup)
        pick = torch.randint(train_idx.numel(), (args.batch,), generator=generator)
        x0 = digits_to_latents(shifted(train_images[pick], generator))
        context = net.tokens(train_labels[pick])[:, None, :]
        drop = torch.rand(args.batch, generator=generator) < args.dropout
        context = torch.where(drop[:, None, None], torch.zeros_like(context), context)
        eps = torch.randn(x0.shape, generator=generator)
        phi = sample_phi(args.batch, generator)
        u = torch.cos(phi)[:, None, None, None] * x0 + torch.sin(phi)[:, None, None, None] * eps
        loss = (net(u, phi, context) - velocity_target(x0, eps, phi)).square().mean()
        train_step(net, ema, optimizer, loss, step, args.ema)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 100 == 0 or step == args.steps - 1:
            line = {"step": step, "loss": round(running, 5), "seconds": round(time.time() - start, 1)}
            history.append(line)
            print(json.dumps(line), flush=True)

    classifier = DigitClassifier()
    copt = torch.optim.AdamW(classifier.parameters(), lr=2e-3, weight_decay=0.01)
    for _ in range(args.classifier_steps):
        pick = torch.randint(train_idx.numel(), (args.batch,), generator=generator)
        x = digits_to_latents(shifted(train_images[pick], generator))
        x = x + 0.1 * torch.randn(x.shape, generator=generator)
        closs = F.cross_entropy(classifier(x), train_labels[pick])
        copt.zero_grad(set_to_none=True)
        closs.backward()
        copt.step()
    with torch.no_grad():
        accuracy = (classifier(eval_latents).argmax(1) == labels[eval_idx]).float().mean().item()
    print(f"classifier held-out accuracy {accuracy:.3f}", flush=True)

    # float16 on disk (1.4 MB; loaded as float32): testbed/weights/ stays under 5 MiB with the photo model
    state = {f"net.{k}": v.detach().half().contiguous() for k, v in ema.state_dict().items()}
    state.update({f"classifier.{k}": v.detach().half().contiguous() for k, v in classifier.state_dict().items()})
    config = dict(CONFIG, context_dim=CONTEXT_DIM)
    record = {"steps_run": step + 1 - int(stopped_early), "stopped_early": stopped_early, "history": history,
              "classifier_accuracy_heldout": accuracy, "dropout": args.dropout, "seed": args.seed,
              "batch": args.batch, "threads": args.threads, "seconds": round(time.time() - start, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(args.out), metadata={"config": json.dumps(config), "training": json.dumps(record)})
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB) and {args.eval_out}", flush=True)


if __name__ == "__main__":
    main()
