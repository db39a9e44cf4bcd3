"""Dev-only test bed: real photographs (``photos``) and a small learned denoiser trained on them (``learned``).

Not part of the ComfyUI node pack's runtime; ``inversion_core`` never imports it.
"""
