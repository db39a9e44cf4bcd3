"""The V3 schema every node of the pack shares: one category, and ``define_schema`` built from class fields, so a node
only declares what is its own (id, name, description, inputs, outputs)."""
from __future__ import annotations

from comfy_api.latest import io

CATEGORY = "inversion"


class PackNode(io.ComfyNode):
    """Base of the pack's nodes (not registered). Subclasses set ``NODE_ID``, ``DISPLAY_NAME`` (also the node name in
    error messages), ``DESCRIPTION``, and return their inputs and outputs from :meth:`schema_inputs` and
    :meth:`schema_outputs`, in socket order."""

    NODE_ID = ""
    DISPLAY_NAME = ""
    DESCRIPTION = ""

    @classmethod
    def schema_inputs(cls) -> list:
        return []

    @classmethod
    def schema_outputs(cls) -> list:
        return []

    @classmethod
    def define_schema(cls):
        return io.Schema(node_id=cls.NODE_ID, display_name=cls.DISPLAY_NAME, category=CATEGORY,
                         description=cls.DESCRIPTION, inputs=cls.schema_inputs(), outputs=cls.schema_outputs())
