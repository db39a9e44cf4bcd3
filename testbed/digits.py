"""A small *conditional* learned denoiser on handwritten digits, its prompt encoder and its classifier.

Data: the 1797 8x8 handwritten digits that scikit-learn ships inside its wheel (``sklearn/datasets/data/
digits.csv.gz``, the UCI "Optical Recognition of Handwritten Digits" test set), read as a file, never downloaded.
Each digit is upscaled to 16x16 pixels in [-1, 1] (ink = +1) and goes through the fixed lossless "VAE" of
``testbed.photos`` (2x2 pixel unshuffle): a [4, 8, 8] latent. scikit-learn is a dev-only dependency
(``scripts/requirements-train.txt``): tests and the showcase read the committed ``testbed/data/digits_eval``.

Prompt stand-in: :class:`PromptEncoder` maps the words of a prompt to learned token embeddings in ComfyUI's
CONDITIONING layout ([1, tokens, dim]); digit words ("three") and numerals ("3") are the vocabulary, every other
word is ignored, and a prompt without one is the empty prompt: one zero token, the unconditional branch. The
network (:class:`ConditionalUNet`, ``testbed.learned.UNet`` plus the mean token embedding added to its noise
embedding) was trained with classifier-free-guidance dropout (the context zeroed for a fraction of the batch),
so ComfyUI's cfg with the empty prompt as negative works as on a text-to-image model.

:class:`DigitClassifier` (a small CNN on the latents) scores edits: the probability of the target digit.
"""
from __future__ import annotations

import gzip
import importlib.util
import json
import re
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from inversion_core.spaces import check_parametrization, per_sample, unit_signal_noise
from testbed.learned import UNet, phi_features
from testbed.photos import latents_to_images, photos_to_latents

WEIGHTS = Path(__file__).resolve().parent / "weights" / "digits_conditional.safetensors"
EVAL_DATA = Path(__file__).resolve().parent / "data" / "digits_eval.safetensors"
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
CONTEXT_DIM = 32
CONFIG = {"in_channels": 4, "channels": [32, 64, 64], "blocks_per_level": 1, "embedding_dim": 96,
          "fourier_features": 16, "groups": 8}
PIXELS = 16


# ----------------------------------------------------------------------------------------------------- data
def sklearn_digits_file() -> Path:
    """The digits CSV inside the installed scikit-learn wheel (the package is located, not imported)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("scikit-learn is not installed (pip install -r scripts/requirements-train.txt)")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "digits.csv.gz"
    if not path.is_file():
        raise RuntimeError(f"scikit-learn has no digits file at {path}")
    return path


def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """(images [1797, 8, 8] in 0..16, labels [1797]) from scikit-learn's bundled CSV."""
    rows = []
    with gzip.open(sklearn_digits_file(), "rt") as f:
        for line in f:
            if line.strip():
                rows.append([float(v) for v in line.split(",")])
    data = torch.tensor(rows, dtype=torch.float32)
    return data[:, :64].reshape(-1, 8, 8), data[:, 64].to(torch.long)


def digits_to_latents(images: torch.Tensor) -> torch.Tensor:
    """[N, 8, 8] in 0..16 -> [N, 4, 8, 8] latents (16x16 px in [-1, 1], bilinear upscale, then the photo VAE)."""
    pixels = F.interpolate(images[:, None].float() / 8.0 - 1.0, size=(PIXELS, PIXELS), mode="bilinear",
                           align_corners=False)
    return photos_to_latents(pixels.clamp(-1.0, 1.0))


def latents_to_digits(latents: torch.Tensor) -> torch.Tensor:
    """[N, 4, 8, 8] -> grayscale [N, 1, 16, 16] in [-1, 1] (the exact inverse of the photo VAE)."""
    return latents_to_images(latents)


# ----------------------------------------------------------------------------------------------------- prompts
def tokenize(prompt: str) -> list[int]:
    """Vocabulary ids of the digit words / numerals in a prompt, in order (other words are ignored)."""
    ids = []
    for word in re.findall(r"[a-z]+|\d", str(prompt).lower()):
        if word in WORDS:
            ids.append(WORDS.index(word))
        elif word.isdigit():
            ids.append(int(word))
    return ids


class PromptEncoder:
    """Words -> CONDITIONING tensors [1, tokens, CONTEXT_DIM]; the empty prompt -> one zero token."""

    def __init__(self, table: torch.Tensor):
        self.table = table.detach().to(torch.float32)

    def encode(self, prompt: str) -> torch.Tensor:
        ids = tokenize(prompt)
        if not ids:
            return torch.zeros(1, 1, self.table.shape[1])
        return self.table[torch.tensor(ids)].unsqueeze(0).clone()


# ----------------------------------------------------------------------------------------------------- networks
class ConditionalUNet(UNet):
    """``testbed.learned.UNet`` whose noise embedding also receives the mean context token (FiLM everywhere)."""

    def __init__(self, context_dim: int = CONTEXT_DIM, **config):
        super().__init__(**config)
        self.config["context_dim"] = context_dim
        self.context = nn.Linear(context_dim, self.config["embedding_dim"])
        self.tokens = nn.Embedding(len(WORDS), context_dim)   # the prompt encoder's table (trained jointly)

    def forward(self, u: torch.Tensor, phi: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.embed(phi_features(phi, self.fourier_features))
        if context is not None:
            emb = emb + self.context(context.to(emb.dtype).mean(dim=1))
        return self.run(u, emb)


def make_net(config=None, context_dim: int = CONTEXT_DIM) -> ConditionalUNet:
    return ConditionalUNet(context_dim=context_dim, **(config or CONFIG))


class DigitClassifier(nn.Module):
    """A small CNN on [B, 4, 8, 8] digit latents -> 10 logits."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(4, 32, 3, padding=1), nn.SiLU(), nn.Conv2d(32, 32, 3, padding=1), nn.SiLU(),
            nn.AvgPool2d(2), nn.Conv2d(32, 64, 3, padding=1), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(64, 10))

    def forward(self, x):
        return self.body(x)


# ----------------------------------------------------------------------------------------------------- loading
class DigitsModel:
    """The trained conditional denoiser, prompt encoder and classifier from ``WEIGHTS``.

    ``denoiser(parametrization)`` -> fn(x [B, 4, H, W], sigma [B], context [B, T, 32] or None) -> x0 estimate, the
    contract of ``inversion_core.analytic_conditional`` (so the same ComfyUI MODEL wrapper serves both).
    """

    def __init__(self, net: ConditionalUNet, classifier: DigitClassifier, metadata: dict | None = None):
        self.net = net.eval().requires_grad_(False)
        self.classifier = classifier.eval().requires_grad_(False)
        self.metadata = dict(metadata or {})
        self.encoder = PromptEncoder(self.net.tokens.weight)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "DigitsModel":
        from safetensors import safe_open
        from safetensors.torch import load_file

        path = Path(path) if path is not None else WEIGHTS
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
        config = json.loads(metadata["config"])
        context_dim = config.pop("context_dim", CONTEXT_DIM)
        net = make_net(config, context_dim)
        state = {k: v.float() for k, v in load_file(str(path)).items()}
        net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
        classifier = DigitClassifier()
        classifier.load_state_dict({k[11:]: v for k, v in state.items() if k.startswith("classifier.")})
        return cls(net, classifier, metadata)

    def predict_x0(self, u, phi, context=None):
        v = self.net(u, phi, context)
        return per_sample(torch.cos(phi), u) * u - per_sample(torch.sin(phi), u) * v

    def denoiser(self, parametrization: str):
        check_parametrization(parametrization)

        def denoise(x, sigma, context=None):
            work = x.to(torch.float32)
            sigma = torch.as_tensor(sigma, dtype=torch.float32, device=work.device)
            if sigma.ndim == 0:
                sigma = sigma.expand(work.shape[0])
            alpha, beta, r = unit_signal_noise(sigma, parametrization)
            ctx = None if context is None else context.to(torch.float32)
            x0 = self.predict_x0(work / per_sample(r, work), torch.atan2(beta, alpha), ctx)
            return x0.to(x.dtype)

        return denoise

    def classify(self, latents: torch.Tensor) -> torch.Tensor:
        """Class probabilities [B, 10] of clean latents."""
        with torch.no_grad():
            return torch.softmax(self.classifier(latents.to(torch.float32)), dim=1)


def load_eval() -> dict:
    """The committed eval digits: {"latents": [N, 4, 8, 8], "labels": [N]} (held out from training)."""
    from safetensors.torch import load_file

    return load_file(str(EVAL_DATA))
