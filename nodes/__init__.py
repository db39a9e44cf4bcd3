"""ComfyUI V3 node classes of the pack (thin adapters over ``inversion_core``).

NODE_LIST is the registration list read by the pack's ``comfy_entrypoint`` (repo-root ``__init__.py``): every
``io.ComfyNode`` subclass listed here appears in ComfyUI's ``/object_info`` under its schema ``node_id``.

Modules: ``invert_nodes`` (DDIM / ReNoise / EasyInv / RNRI / Exact Invert), ``noise_correct``, ``sample_nodes``
(Inverted Sampler, Inversion Sampler, Replay Sampler), ``schema`` (the category and ``define_schema`` every node
shares), ``inversion_run`` (an inversion run through ComfyUI's guider), ``handoff`` (the LATENT / NOISE
hand-off, the replay samplers, sampling back), ``autograd_clone`` (RNRI's autograd-capable MODEL clone), ``record``
(the INVERSION type), ``validation`` (every input check).
"""
from .invert_nodes import INVERT_NODES
from .noise_correct import NoiseCorrect
from .sample_nodes import SAMPLE_NODES

NODE_LIST = [*INVERT_NODES, NoiseCorrect, *SAMPLE_NODES]
