"""The V3 schema every node of the pack shares: one category, and ``define_schema`` built from class fields, so a node
only declares what is its own (id, name, description, inputs, outputs, which inputs are advanced, search aliases)."""
from __future__ import annotations

from comfy_api.latest import io

from . import host_features

CATEGORY = "inversion"


class PackNode(io.ComfyNode):
    """Base of the pack's nodes (not registered). Subclasses set ``NODE_ID``, ``DISPLAY_NAME`` (also the node name in
    error messages), ``DESCRIPTION``, and return their inputs and outputs from :meth:`schema_inputs` and
    :meth:`schema_outputs`, in socket order.

    ``ADVANCED_INPUTS``: ids of method knobs most users should leave alone; where this ComfyUI's V3 inputs know
    ``advanced`` (0.33.0) the frontend folds them away, elsewhere nothing changes. ``SEARCH_ALIASES``: extra words the
    node search finds the node by (``io.Schema(search_aliases=...)`` where it exists); a class's aliases add to its
    bases'."""

    NODE_ID = ""
    DISPLAY_NAME = ""
    DESCRIPTION = ""
    ADVANCED_INPUTS: tuple = ()
    SEARCH_ALIASES: tuple = ()

    @classmethod
    def schema_inputs(cls) -> list:
        return []

    @classmethod
    def schema_outputs(cls) -> list:
        return []

    @classmethod
    def search_aliases(cls) -> list:
        aliases = []
        for klass in reversed(cls.__mro__):
            for alias in vars(klass).get("SEARCH_ALIASES", ()):
                if alias not in aliases:
                    aliases.append(alias)
        return aliases

    @classmethod
    def define_schema(cls):
        inputs = cls.schema_inputs()
        unknown = set(cls.ADVANCED_INPUTS) - {i.id for i in inputs}
        if unknown:
            raise ValueError(f"{cls.__name__}.ADVANCED_INPUTS names no input: {sorted(unknown)}")
        for item in inputs:
            if item.id in cls.ADVANCED_INPUTS:
                host_features.mark_advanced(item)
        return io.Schema(node_id=cls.NODE_ID, display_name=cls.DISPLAY_NAME, category=CATEGORY,
                         description=cls.DESCRIPTION, inputs=inputs, outputs=cls.schema_outputs(),
                         **host_features.schema_extras(cls.search_aliases()))
