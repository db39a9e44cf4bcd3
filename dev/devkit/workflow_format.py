"""The ComfyUI UI-workflow format (LiteGraph v0.4, what the frontend saves and Browse Templates lists) against a
host's ``/object_info``: the frontend's widget rules in one place.

* ``ui_from_api(api, object_info, notes, name)``: the UI workflow of an API prompt, laid out in columns by depth,
  with MarkdownNote nodes; widget order, the extra ``control_after_generate`` value after seed widgets, the upload
  widget of LoadImage, socket names and types are the host's own.
* ``api_from_ui(ui, object_info)``: the API prompt a UI workflow queues, as the frontend converts it.
* ``validate_ui(ui, object_info)``: the problems of a UI workflow (node types, links both ways, widget counts and
  values, required inputs).
* ``widget_inputs`` / ``ordered_inputs`` / ``is_widget`` / ``check_widget_value`` / ``output_slots_ok``: the rules
  themselves; ``dumps``: the JSON text of a committed file.

Used by ``devkit.example_workflows`` (the definitions), ``scripts/make_workflows.py`` and ``tests/test_workflows.py``.
Pure Python: needs neither torch nor ComfyUI.
"""
from __future__ import annotations

import json
import math
import uuid

# ------------------------------------------------------------------------------------------ the frontend's rules
WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")
NOTE_TYPES = ("Note", "MarkdownNote")          # frontend-only nodes, absent from /object_info
FILE_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".sft", ".png", ".jpg", ".jpeg",
                   ".webp", ".onnx", ".yaml")


def input_type(spec) -> str:
    """The socket/widget type of an /object_info input spec: "COMBO" for option lists."""
    kind = spec[0]
    return "COMBO" if isinstance(kind, list) else str(kind)


def input_options(spec) -> dict:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def combo_options(spec) -> list:
    kind = spec[0]
    if isinstance(kind, list):
        return list(kind)
    return list(input_options(spec).get("options", []))


def is_widget(spec) -> bool:
    return input_type(spec) in WIDGET_TYPES and not input_options(spec).get("forceInput", False)


def has_control(name: str, spec) -> bool:
    """The frontend adds a control_after_generate combo after an INT widget that asks for one, and, when the spec
    says nothing, after any INT named seed / noise_seed (ComfyUI_frontend useIntWidget:
    ``inputSpec.control_after_generate ?? ['seed', 'noise_seed'].includes(inputSpec.name)``)."""
    if input_type(spec) != "INT":
        return False
    opts = input_options(spec)
    if "control_after_generate" in opts:
        return bool(opts["control_after_generate"])
    return name in ("seed", "noise_seed")


def has_upload(spec) -> bool:
    """Image-upload combos (LoadImage) get an extra upload widget that serialises as "image"."""
    return bool(input_options(spec).get("image_upload"))


FILE_INPUTS = ("ckpt_name", "unet_name", "lora_name", "vae_name", "clip_name", "clip_name1", "clip_name2",
               "clip_name3", "clip_name4", "control_net_name", "clip_vision_name", "style_model_name",
               "upscale_model_name", "gligen_name", "hypernetwork_name", "model_name", "image")


def is_file_combo(name: str, spec) -> bool:
    """A combo listing files of a models/input folder: its options depend on the machine, so any file name fits."""
    if input_type(spec) != "COMBO":
        return False
    opts = combo_options(spec)
    return (has_upload(spec) or not opts or name in FILE_INPUTS
            or all(str(o).lower().endswith(FILE_EXTENSIONS) for o in opts))


def ordered_inputs(info: dict) -> list[tuple[str, list, bool]]:
    """[(name, spec, required)] in the node's input order (required, then optional; hidden inputs left out)."""
    inputs = info.get("input", {})
    order = info.get("input_order") or {sec: list(inputs.get(sec, {})) for sec in ("required", "optional")}
    out = []
    for section in ("required", "optional"):
        for name in order.get(section, []):
            spec = inputs.get(section, {}).get(name)
            if spec is not None:
                out.append((name, spec, section == "required"))
    return out


def widget_inputs(info: dict) -> list[tuple[str, list, bool]]:
    return [(n, s, r) for n, s, r in ordered_inputs(info) if is_widget(s)]


def socket_inputs(info: dict) -> list[tuple[str, list, bool]]:
    return [(n, s, r) for n, s, r in ordered_inputs(info) if not is_widget(s)]


def widget_default(name: str, spec):
    opts = input_options(spec)
    if "default" in opts:
        return opts["default"]
    if input_type(spec) == "COMBO" and not is_file_combo(name, spec) and combo_options(spec):
        return combo_options(spec)[0]
    raise ValueError(f"widget {name!r} has no default; give it a value")


def check_widget_value(name: str, spec, value) -> str | None:
    """None if ``value`` fits the widget spec, else why not."""
    kind, opts = input_type(spec), input_options(spec)
    if kind == "COMBO":
        if is_file_combo(name, spec):
            if not isinstance(value, str) or not value.lower().endswith(FILE_EXTENSIONS):
                return f"{name}: {value!r} is not a file name"
            return None
        return None if value in combo_options(spec) else f"{name}: {value!r} not in {combo_options(spec)}"
    if kind == "BOOLEAN":
        return None if isinstance(value, bool) else f"{name}: {value!r} is not a boolean"
    if kind == "STRING":
        return None if isinstance(value, str) else f"{name}: {value!r} is not a string"
    if kind == "INT" and (isinstance(value, bool) or not isinstance(value, int)):
        return f"{name}: {value!r} is not an integer"
    if kind == "FLOAT" and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
        return f"{name}: {value!r} is not a finite number"
    if "min" in opts and value < opts["min"]:
        return f"{name}: {value!r} < min {opts['min']}"
    if "max" in opts and value > opts["max"]:
        return f"{name}: {value!r} > max {opts['max']}"
    return None


# ------------------------------------------------------------------------------------------ API -> UI
NODE_WIDTH = 340
NOTE_WIDTH = 340
COLUMN_GAP = 60
ROW_GAP = 40
SLOT_HEIGHT = 22
WIDGET_HEIGHT = 26


def _node_height(info: dict, class_type: str, inputs: dict) -> int:
    sockets = len(socket_inputs(info))
    outputs = len(info.get("output", []))
    widgets = 0
    extra = 0
    for name, spec, _ in widget_inputs(info):
        widgets += 1 + has_control(name, spec)
        if input_type(spec) == "STRING" and input_options(spec).get("multiline"):
            extra += 70
    if class_type in ("LoadImage", "PreviewImage", "SaveImage"):
        extra += 240
    return 36 + SLOT_HEIGHT * max(sockets, outputs) + WIDGET_HEIGHT * widgets + extra


def _note_height(text: str) -> int:
    lines = sum(max(1, math.ceil(len(line) / 60)) for line in text.split("\n"))
    return 40 + 15 * lines


def _depths(api: dict) -> dict[int, int]:
    """Column of every node: the longest path from a source (links only)."""
    deps = {int(k): [int(v[0]) for v in node["inputs"].values() if _is_link(v)] for k, node in api.items()}
    depth: dict[int, int] = {}

    def visit(n: int, stack=()) -> int:
        if n in depth:
            return depth[n]
        if n in stack:
            raise ValueError(f"cycle through node {n}")
        d = 0 if not deps[n] else 1 + max(visit(m, stack + (n,)) for m in deps[n])
        depth[n] = d
        return d

    for n in deps:
        visit(n)
    return depth


def _is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def _topological_order(api: dict) -> list[int]:
    depth = _depths(api)
    return sorted(depth, key=lambda n: (depth[n], n))


def ui_from_api(flow_api: dict, object_info: dict, notes=(), name: str = "workflow") -> dict:
    """The UI (LiteGraph v0.4) workflow for an API prompt, laid out in columns by depth, with MarkdownNote nodes:
    ``notes`` = [(markdown, anchor node id or None)] (None: the workflow's description, top left)."""
    api = {int(k): v for k, v in flow_api.items()}
    missing = sorted({v["class_type"] for v in api.values()} - set(object_info))
    if missing:
        raise KeyError(f"{name}: node types not in /object_info: {missing}")
    order = _topological_order(flow_api)
    depth = _depths(flow_api)
    order_index = {n: i for i, n in enumerate(order)}

    links = []                        # [id, origin, origin_slot, target, target_slot, type]
    out_links: dict[tuple[int, int], list[int]] = {}
    nodes_json = {}
    for n in sorted(api, key=lambda m: order_index[m]):
        node, info = api[n], object_info[api[n]["class_type"]]
        class_type = node["class_type"]
        inputs = node["inputs"]
        known = {name for name, _, _ in ordered_inputs(info)}
        unknown = sorted(set(inputs) - known)
        if unknown:
            raise KeyError(f"{name}: node {n} ({class_type}) has unknown inputs {unknown}")
        ui_inputs, widgets_values = [], []
        for in_name, spec, required in socket_inputs(info):
            entry = {"name": in_name, "type": input_type(spec), "link": None}
            if in_name in inputs:
                value = inputs[in_name]
                if not _is_link(value):
                    raise ValueError(f"{name}: node {n} ({class_type}) socket {in_name} needs a link, got {value!r}")
                entry["link"] = _add_link(links, out_links, value, n, len(ui_inputs), api, object_info)
            elif required:
                raise ValueError(f"{name}: node {n} ({class_type}) required input {in_name} is not connected")
            ui_inputs.append(entry)
        for in_name, spec, _required in widget_inputs(info):
            entry = {"name": in_name, "type": input_type(spec), "widget": {"name": in_name}, "link": None}
            value = inputs.get(in_name)
            if _is_link(value):
                entry["link"] = _add_link(links, out_links, value, n, len(ui_inputs), api, object_info)
                value = widget_default(in_name, spec)
            elif in_name not in inputs:
                value = widget_default(in_name, spec)
            problem = check_widget_value(in_name, spec, value)
            if problem:
                raise ValueError(f"{name}: node {n} ({class_type}) {problem}")
            ui_inputs.append(entry)
            widgets_values.append(value)
            if has_control(in_name, spec):
                widgets_values.append("fixed")
            if has_upload(spec):
                widgets_values.append("image")
        nodes_json[n] = {
            "id": n, "type": class_type, "pos": [0, 0],
            "size": [NODE_WIDTH, _node_height(info, class_type, inputs)],
            "flags": {}, "order": order_index[n], "mode": 0, "inputs": ui_inputs,
            "outputs": [], "properties": {"Node name for S&R": class_type}, "widgets_values": widgets_values,
        }
        title = node.get("_meta", {}).get("title")
        if title and title != class_type:
            nodes_json[n]["title"] = title
    for n, node_json in nodes_json.items():
        info = object_info[node_json["type"]]
        names = info.get("output_name") or info.get("output", [])
        node_json["outputs"] = [
            {"name": names[i], "type": t, "links": out_links.get((n, i), []), "slot_index": i}
            for i, t in enumerate(info.get("output", [])[:_outputs_to_write(info, n, out_links)])
        ]

    # layout: columns by depth; notes go right under their anchor, the description on top of column 0
    next_id = max(api) + 1
    columns: dict[int, list] = {}
    for n in sorted(api, key=lambda m: order_index[m]):
        columns.setdefault(depth[n], []).append(("node", n))
        for text, anchor in notes:
            if anchor == n:
                columns[depth[n]].append(("note", text))
    head = [("note", text) for text, anchor in notes if anchor is None]
    columns.setdefault(0, [])
    columns[0] = head + columns[0]
    all_nodes = []
    x = 0
    for col in sorted(columns):
        y = 0
        for kind, item in columns[col]:
            if kind == "node":
                node_json = nodes_json[item]
                node_json["pos"] = [x, y]
                all_nodes.append(node_json)
                y += node_json["size"][1] + ROW_GAP
            else:
                height = _note_height(item)
                all_nodes.append({
                    "id": next_id, "type": "MarkdownNote", "pos": [x, y], "size": [NOTE_WIDTH, height],
                    "flags": {}, "order": len(order) + next_id - max(api) - 1, "mode": 0, "inputs": [],
                    "outputs": [], "title": "Note", "properties": {}, "widgets_values": [item],
                    "color": "#432", "bgcolor": "#653",
                })
                next_id += 1
                y += height + ROW_GAP
        x += NODE_WIDTH + COLUMN_GAP
    all_nodes.sort(key=lambda j: j["id"])
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"exact-inversion/example_workflows/{name}")),
        "revision": 0,
        "last_node_id": max(j["id"] for j in all_nodes),
        "last_link_id": len(links),
        "nodes": all_nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 0.75, "offset": [40, 40]}},
        "version": 0.4,
    }


def _outputs_to_write(info: dict, node: int, out_links: dict) -> int:
    """How many of a node's output slots a committed UI file lists (see ``output_slots_ok``): all of them, except
    that an *output node* (SaveImage, PreviewImage, ...) lists none after its last linked one. ComfyUI 0.33.0 gave
    SaveImage / PreviewImage an IMAGE output that 0.3.52 and 0.3.75 do not have; a file without it is exact for the
    older versions, and the newer frontend adds the missing trailing slot when it loads the file (measured with
    frontend 1.49.6: every example workflow queues exactly its API twin). So the files are the same whichever
    ComfyUI generates them."""
    count = len(info.get("output", []))
    if not info.get("output_node"):
        return count
    linked = [slot for (origin, slot), ids in out_links.items() if origin == node and ids]
    return max(linked) + 1 if linked else 0


def output_slots_ok(info: dict, ui_outputs: list) -> str | None:
    """Whether a UI node's output slots fit a host's node type in every supported frontend: the same slots, or (for
    an output node) its first slots, the missing trailing ones unlinked, which the frontend adds on load. A file
    never lists a slot the type does not have (an old frontend would show a dead socket)."""
    outputs = info.get("output", [])
    if len(ui_outputs) == len(outputs):
        return None
    if len(ui_outputs) < len(outputs) and info.get("output_node"):
        return None
    return (f"{len(ui_outputs)} outputs, the type has {len(outputs)}"
            + ("" if info.get("output_node") else " (only an output node may omit trailing ones)"))


def _add_link(links, out_links, value, target: int, target_slot: int, api: dict, object_info: dict) -> int:
    origin, slot = int(value[0]), int(value[1])
    if origin not in api:
        raise KeyError(f"link from missing node {origin}")
    outputs = object_info[api[origin]["class_type"]].get("output", [])
    if slot >= len(outputs):
        raise IndexError(f"node {origin} ({api[origin]['class_type']}) has no output {slot}")
    link_id = len(links) + 1
    links.append([link_id, origin, slot, target, target_slot, outputs[slot]])
    out_links.setdefault((origin, slot), []).append(link_id)
    return link_id


# ------------------------------------------------------------------------------------------ UI -> API, checks
def api_from_ui(ui: dict, object_info: dict) -> dict:
    """The API prompt a UI workflow queues (notes left out; titles in ``_meta``), as the frontend converts it."""
    links = {link[0]: link for link in ui["links"]}
    api = {}
    for node in ui["nodes"]:
        if node["type"] in NOTE_TYPES or node.get("mode", 0) != 0:
            continue
        info = object_info[node["type"]]
        inputs = {}
        by_name = {entry["name"]: entry for entry in node.get("inputs", [])}
        values = list(node.get("widgets_values") or [])
        for in_name, spec, _ in widget_inputs(info):
            if not values:
                raise ValueError(f"node {node['id']} ({node['type']}): no widget value for {in_name}")
            inputs[in_name] = values.pop(0)
            if has_control(in_name, spec):
                values.pop(0)
            if has_upload(spec):
                values.pop(0)
        if values:
            raise ValueError(f"node {node['id']} ({node['type']}): {len(values)} widget values left over")
        for in_name, entry in by_name.items():
            if entry.get("link") is not None:
                link = links[entry["link"]]
                inputs[in_name] = [str(link[1]), link[2]]
        item = {"class_type": node["type"], "inputs": inputs, "_meta": {"title": node.get("title") or node["type"]}}
        api[str(node["id"])] = item
    return api


def validate_ui(ui: dict, object_info: dict) -> list[str]:
    """Problems of a UI workflow against /object_info: node types, link ids/slots/types both ways, widget counts and
    values (combo options, min/max, types, control values), required inputs connected."""
    errors = []
    if ui.get("version") != 0.4:
        errors.append(f"version {ui.get('version')!r} (expected 0.4)")
    nodes = {}
    for node in ui.get("nodes", []):
        if node["id"] in nodes:
            errors.append(f"duplicate node id {node['id']}")
        nodes[node["id"]] = node
    if nodes and ui.get("last_node_id", -1) < max(nodes):
        errors.append(f"last_node_id {ui.get('last_node_id')} < max node id {max(nodes)}")
    links = {}
    for link in ui.get("links", []):
        if not (isinstance(link, list) and len(link) == 6):
            errors.append(f"link {link!r} is not a 6-tuple")
            continue
        if link[0] in links:
            errors.append(f"duplicate link id {link[0]}")
        links[link[0]] = link
    if links and ui.get("last_link_id", -1) < max(links):
        errors.append(f"last_link_id {ui.get('last_link_id')} < max link id {max(links)}")

    for node in nodes.values():
        where = f"node {node['id']} ({node['type']})"
        if node["type"] in NOTE_TYPES:
            if not (isinstance(node.get("widgets_values"), list) and len(node["widgets_values"]) == 1
                    and isinstance(node["widgets_values"][0], str)):
                errors.append(f"{where}: a note holds one text")
            continue
        info = object_info.get(node["type"])
        if info is None:
            errors.append(f"{where}: type not in /object_info")
            continue
        if node.get("properties", {}).get("Node name for S&R") != node["type"]:
            errors.append(f"{where}: properties['Node name for S&R'] is not the type")
        specs = {n: (s, r) for n, s, r in ordered_inputs(info)}
        seen = set()
        for slot, entry in enumerate(node.get("inputs", [])):
            in_name = entry.get("name")
            if in_name not in specs:
                errors.append(f"{where}: input {in_name!r} is not an input of the type")
                continue
            if in_name in seen:
                errors.append(f"{where}: input {in_name!r} listed twice")
            seen.add(in_name)
            spec, _ = specs[in_name]
            if entry.get("type") != input_type(spec):
                errors.append(f"{where}: input {in_name} type {entry.get('type')!r} != {input_type(spec)!r}")
            if is_widget(spec) != ("widget" in entry):
                errors.append(f"{where}: input {in_name} widget marker does not match the spec")
            link_id = entry.get("link")
            if link_id is not None:
                link = links.get(link_id)
                if link is None:
                    errors.append(f"{where}: input {in_name} names missing link {link_id}")
                elif link[3] != node["id"] or link[4] != slot:
                    errors.append(f"{where}: input {in_name} link {link_id} targets node {link[3]} slot {link[4]}")
        for in_name, (spec, required) in specs.items():
            if required and not is_widget(spec):
                entry = next((e for e in node.get("inputs", []) if e.get("name") == in_name), None)
                if entry is None or entry.get("link") is None:
                    errors.append(f"{where}: required input {in_name} is not connected")
        outputs = info.get("output", [])
        ui_outputs = node.get("outputs", [])
        problem = output_slots_ok(info, ui_outputs)
        if problem:
            errors.append(f"{where}: {problem}")
        for slot, entry in enumerate(ui_outputs[:len(outputs)]):
            if entry.get("type") != outputs[slot]:
                errors.append(f"{where}: output {slot} type {entry.get('type')!r} != {outputs[slot]!r}")
            for link_id in entry.get("links") or []:
                link = links.get(link_id)
                if link is None or link[1] != node["id"] or link[2] != slot:
                    errors.append(f"{where}: output {slot} lists link {link_id} that does not start here")
        # widgets
        values = list(node.get("widgets_values") or [])
        expected = sum(1 + has_control(n, s) + has_upload(s) for n, s, _ in widget_inputs(info))
        if len(values) != expected:
            errors.append(f"{where}: {len(values)} widget values, the type needs {expected}")
            continue
        for in_name, spec, _ in widget_inputs(info):
            value = values.pop(0)
            problem = check_widget_value(in_name, spec, value)
            if problem:
                errors.append(f"{where}: {problem}")
            if has_control(in_name, spec):
                control = values.pop(0)
                if control not in CONTROL_VALUES:
                    errors.append(f"{where}: {in_name} control {control!r} not in {CONTROL_VALUES}")
            if has_upload(spec):
                if values.pop(0) != "image":
                    errors.append(f"{where}: {in_name} upload widget value is not 'image'")

    for link_id, link in links.items():
        _, origin, origin_slot, target, target_slot, link_type = link
        src, dst = nodes.get(origin), nodes.get(target)
        if src is None or dst is None:
            errors.append(f"link {link_id}: missing node {origin if src is None else target}")
            continue
        if src["type"] in NOTE_TYPES or dst["type"] in NOTE_TYPES:
            errors.append(f"link {link_id}: notes have no sockets")
            continue
        src_info, dst_info = object_info.get(src["type"]), object_info.get(dst["type"])
        if src_info is None or dst_info is None:
            continue
        outputs = src_info.get("output", [])
        if origin_slot >= len(outputs):
            errors.append(f"link {link_id}: node {origin} has no output {origin_slot}")
            continue
        if outputs[origin_slot] != link_type:
            errors.append(f"link {link_id}: type {link_type!r} != output type {outputs[origin_slot]!r}")
        if link_id not in (src.get("outputs", [{}] * (origin_slot + 1))[origin_slot].get("links") or []):
            errors.append(f"link {link_id}: not listed in node {origin} output {origin_slot}")
        dst_inputs = dst.get("inputs", [])
        if target_slot >= len(dst_inputs):
            errors.append(f"link {link_id}: node {target} has no input slot {target_slot}")
            continue
        entry = dst_inputs[target_slot]
        if entry.get("link") != link_id:
            errors.append(f"link {link_id}: node {target} input slot {target_slot} holds link {entry.get('link')}")
        spec = dict((n, s) for n, s, _ in ordered_inputs(dst_info)).get(entry.get("name"))
        if spec is not None:
            accepted = {t.strip() for t in input_type(spec).split(",")}
            if link_type not in accepted and "*" not in accepted:
                errors.append(f"link {link_id}: {link_type} into {dst['type']}.{entry.get('name')} "
                              f"({input_type(spec)})")
    return errors


# ------------------------------------------------------------------------------------------ files
def dumps(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
