"""Exact Inversion: a ComfyUI custom node pack for diffusion image inversion.

This folder is the pack: clone it into ``ComfyUI/custom_nodes/``. ComfyUI (>= 0.3.48) imports this module and,
since it defines no ``NODE_CLASS_MAPPINGS``, registers the V3 nodes returned by ``comfy_entrypoint()``
(``nodes.load_custom_node``). Only relative imports are used: ComfyUI puts its own ``comfy/`` first on
``sys.path``, which shadows top-level names such as ``utils``, ``samplers`` or ``ops``.

``WEB_DIRECTORY`` is the pack's web folder, served at ``/extensions/<folder name>/``: it holds no JavaScript, only
the node help pages ``web/docs/<node id>.md`` (and their pictures) that ComfyUI's frontend shows in its node
library / selection-toolbox help panel.

Outside ComfyUI (no ``comfy_api``; e.g. pytest, which imports the repository root as a package because of this
file) the module defines only ``WEB_DIRECTORY`` and imports nothing else.
"""
WEB_DIRECTORY = "./web"

try:
    from comfy_api.latest import ComfyExtension, io
except ImportError:  # not running inside ComfyUI
    ComfyExtension = None

if ComfyExtension is not None:
    from .nodes import NODE_LIST

    class ExactInversionExtension(ComfyExtension):
        async def get_node_list(self) -> list[type[io.ComfyNode]]:
            return list(NODE_LIST)

    async def comfy_entrypoint() -> ExactInversionExtension:
        return ExactInversionExtension()
