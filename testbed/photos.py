"""Real photographs and their "latents" for the learned test-bed denoiser.

Photographs come from scikit-image's bundled sample data (``skimage.data``), using only images whose files ship
inside the wheel, so nothing is downloaded. scikit-image is a dev-only dependency: it is imported inside the
functions that load photos, never at module import, and tests read the committed ``testbed/data`` instead.

No VAE can be downloaded here, so the "VAE" is a fixed, lossless stand-in: ITU-R BT.601 luma, then a 2x2 pixel
unshuffle, giving a 4-channel latent at half resolution with values in [-1, 1]. ``latents_to_images`` is its exact
inverse (up to float rounding), so decode(encode(image)) is the grayscale image.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

# Photographs (not synthetic images) whose files ship inside the scikit-image wheel.
PHOTOS = (
    "astronaut", "coffee", "rocket", "moon", "immunohistochemistry", "hubble_deep_field", "retina", "grass",
    "gravel", "brick", "motorcycle", "clock", "page", "camera", "chelsea", "coins",
)
HELD_OUT = ("camera", "chelsea", "coins")          # never trained on
TRAIN = tuple(name for name in PHOTOS if name not in HELD_OUT)


def split_photos(held_out=HELD_OUT) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(held_out, train): the given held-out photos and every other photo of ``PHOTOS``, in ``PHOTOS`` order."""
    held_out = tuple(held_out)
    unknown = [name for name in held_out if name not in PHOTOS]
    if unknown or not held_out or len(set(held_out)) != len(held_out):
        raise ValueError(f"held-out photos must be distinct names from {PHOTOS}, got {held_out}")
    return held_out, tuple(name for name in PHOTOS if name not in held_out)

LUMA_BT601 = (0.299, 0.587, 0.114)


def load_photo(name: str) -> torch.Tensor:
    """One photograph at full resolution as float32 [3, H, W] in [-1, 1] (grayscale photos are repeated)."""
    import skimage.data

    if name not in PHOTOS:
        raise ValueError(f"unknown photo {name!r}; choose from {PHOTOS}")
    image = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
    image = torch.from_numpy(image.copy()).float() / 127.5 - 1.0
    if image.ndim == 2:
        image = image[:, :, None].expand(-1, -1, 3)
    return image[:, :, :3].permute(2, 0, 1).contiguous()


def center_square(image: torch.Tensor) -> torch.Tensor:
    h, w = image.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return image[..., top:top + side, left:left + side]


def resize(images: torch.Tensor, size) -> torch.Tensor:
    """Antialiased bilinear resize of [N, C, H, W]; a non-negative filter, so values stay in range."""
    return F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)


def load_photos(names=None, size: int = 64) -> torch.Tensor:
    """Photographs as float32 [N, 3, size, size] in [-1, 1]: center square crop, then resize."""
    names = PHOTOS if names is None else tuple(names)
    squares = [resize(center_square(load_photo(name))[None], (size, size)) for name in names]
    return torch.cat(squares).clamp(-1.0, 1.0)


def luma(images: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 luma of RGB [N, 3, H, W] -> [N, 1, H, W] (a convex combination, so it stays in [-1, 1])."""
    if images.shape[1] == 1:
        return images
    weights = torch.tensor(LUMA_BT601, dtype=images.dtype, device=images.device).reshape(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def photos_to_latents(images: torch.Tensor) -> torch.Tensor:
    """The fixed "VAE encoder": [N, 3 or 1, H, W] (H, W even) -> luma -> 2x2 pixel unshuffle -> [N, 4, H/2, W/2]."""
    return F.pixel_unshuffle(luma(images), 2)


def latents_to_images(latents: torch.Tensor) -> torch.Tensor:
    """The exact inverse "VAE decoder": [N, 4, h, w] -> 2x2 pixel shuffle -> grayscale [N, 1, 2h, 2w]."""
    return F.pixel_shuffle(latents, 2)


def pyramid(image: torch.Tensor, smallest: int = 32, ratio: float = 2 ** -0.5) -> list[torch.Tensor]:
    """Successively downscaled copies of a [C, H, W] image by ``ratio``, while the short side is >= ``smallest``.

    Random crops from random levels are the training set's random rescale (down only: upscaled photos are blurry).
    """
    levels, scale = [], 1.0
    h, w = image.shape[-2:]
    while min(h, w) * scale >= smallest:
        size = (max(smallest, round(h * scale)), max(smallest, round(w * scale)))
        levels.append(image if scale == 1.0 else resize(image[None], size)[0].clamp(-1.0, 1.0))
        scale *= ratio
    return levels
