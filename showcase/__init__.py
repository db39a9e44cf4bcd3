"""The showcase (``bash scripts/showcase.sh``): real photographs inverted and reconstructed through real ComfyUI
prompts by every inversion method of the pack, with the project's own small learned model.

``python -m showcase`` (run by scripts/showcase.sh with the ComfyUI interpreter, from the repository root) starts a
ComfyUI server on a temporary base directory whose ``custom_nodes/`` links the pack and ``demo_pack/`` (the
demo-only nodes: the learned model, photo latents, the inversion report), queues one prompt per method over its
websocket with live progress, and writes to ``out/showcase/``:

* ``grid.png``: rows = photos, columns = original, DDIM, ReNoise, EasyInv, RNRI, Exact (adaptive), with PSNR;
* ``table.md``: PSNR (latent and pixel), model calls and seconds per method;
* ``convergence.png``: the landing error of every inverse step per method (log scale);
* ``results.json`` (everything measured) and ``images/`` (every reconstruction);
* the edit section (``edits``): held-out handwritten 3s inverted with the prompt "3" on the conditional digits demo
  model and sampled back with "8" by every edit method (plus img2img): ``edits.png`` (source | reconstruction |
  edit per method, with PSNR and the classifier's p(8)), ``edit_tradeoff.png`` (preservation vs success at cfg 1,
  3, 7.5) and an edit table appended to ``table.md``;

and copies grids, plots and table to ``docs/`` for the README. Modules: ``methods`` (what runs), ``prompts`` (the
API graphs), ``client`` (server, websocket, progress), ``render`` (PNG grid, plot, table), ``edits`` (the edit section),
``run`` (the CLI).
"""
