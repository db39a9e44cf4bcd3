"""What a ComfyUI user and the Comfy Registry see of the pack, beside the nodes themselves:

* node help pages: ``web/docs/<node id>.md`` for every registered node (the frontend's help / Info panel fetches
  ``/extensions/<pack folder>/docs/<node id>.md`` from the pack's ``WEB_DIRECTORY``), with their sections, images that
  exist, decode and stay small, and sources that exist; the host serves them (``server``);
* the template gallery: ``example_workflows/<name>.jpg`` beside every workflow, a JPEG of at most 100 KB;
* the release: ``pyproject.toml``'s registry fields, its version's CHANGELOG entry, the publishing workflow, and
  ``comfy node validate`` (only where comfy-cli is installed, see scripts/check_registry.sh).

The checks of files are pure Python and take well under a second; scripts/check_node_docs_frontend.py opens the
pages in the real frontend (not part of the test run: it needs Chromium).
"""
from __future__ import annotations

import ast
import io
import os
import re
import shutil
import subprocess
import urllib.request

import pytest

from devkit import harness as ch

REPO = ch.REPO_ROOT
DOCS = REPO / "web" / "docs"
WF_DIR = REPO / "example_workflows"
WORKFLOWS = sorted(p.stem for p in WF_DIR.glob("*.json"))
PAGES = sorted(DOCS.glob("*.md"))
THUMBNAIL_MAX_BYTES = 100_000
DOCS_IMAGE_MAX_BYTES = 60_000
SECTIONS = ("## When to use it", "## When not to use it", "## Inputs", "## What it reports",
            "## Measured trade-offs (as of v0.2.0 benchmarks)")
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)|<img[^>]*\ssrc=['\"]([^'\"]+)['\"]")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
CODE_PATH = re.compile(r"`((?:[\w.-]+/)+[\w.-]+\.(?:md|png|py|json|sh))`")


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")   # Python 3.11+, as every provisioned host
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _decode(data: bytes, fmt: str):
    from PIL import Image  # ComfyUI requires Pillow: every host has it

    image = Image.open(io.BytesIO(data))
    assert image.format == fmt, image.format
    image.load()
    return image


# ----------------------------------------------------------------------------------------------- help pages
def test_web_directory_is_the_docs_folder():
    """The root __init__ sets WEB_DIRECTORY (ComfyUI reads it before the V3 entry point), pointing at web/."""
    tree = ast.parse((REPO / "__init__.py").read_text())
    values = [node.value.value for node in tree.body if isinstance(node, ast.Assign)
              and any(getattr(t, "id", None) == "WEB_DIRECTORY" for t in node.targets)]
    assert values == ["./web"], values
    assert DOCS.is_dir()
    # the web folder is served as is and every .js in it is loaded as a frontend extension: it holds none
    assert not list((REPO / "web").rglob("*.js"))


def test_every_registered_node_has_a_help_page(pack_nodes):
    ids = sorted(n["node_id"] for n in pack_nodes)
    assert ids, "no pack nodes"
    pages = sorted(p.stem for p in PAGES)
    assert pages == ids, f"web/docs/<node id>.md: missing {sorted(set(ids) - set(pages))}, " \
                         f"extra {sorted(set(pages) - set(ids))}"


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_help_page_sections_images_and_sources(page):
    text = page.read_text()
    assert text.startswith("# "), f"{page.name}: no title"
    missing = [s for s in SECTIONS if s not in text]
    assert not missing, f"{page.name}: missing sections {missing}"
    images = [a or b for a, b in IMAGE.findall(text)]
    assert images, f"{page.name}: no picture"
    for href in images:
        # the frontend prefixes relative links with /extensions/<pack>/docs/: they must resolve from web/docs/
        assert not re.match(r"^(/|[a-z]+:)", href), f"{page.name}: {href} is not a relative link"
        path = (DOCS / href).resolve()
        assert path.is_relative_to(DOCS.resolve()) and path.is_file(), f"{page.name}: broken image link {href}"
        data = path.read_bytes()
        assert len(data) <= DOCS_IMAGE_MAX_BYTES, f"{href}: {len(data)} bytes"
        _decode(data, "PNG")
    # other relative links would resolve against the ComfyUI page, not the repository: none
    relative = [h for h in LINK.findall(text) if not re.match(r"^(https?:|#)", h)]
    assert not relative, f"{page.name}: relative links {relative}"
    # the measured figures name their source files: those exist
    sources = CODE_PATH.findall(text)
    assert any(s.startswith(("benchmarks/", "README.md")) for s in sources) or "`README.md`" in text, page.name
    absent = [s for s in sources if not (REPO / s).exists()]
    assert not absent, f"{page.name}: sources that do not exist: {absent}"


def test_docs_pictures_are_all_used():
    used = {(DOCS / (a or b)).resolve() for p in PAGES for a, b in IMAGE.findall(p.read_text())}
    unused = [p.name for p in (DOCS / "img").iterdir() if p.resolve() not in used]
    assert not unused, f"pictures no page shows: {unused}"


@pytest.mark.server
def test_host_serves_the_help_pages(server):
    """ComfyUI registers WEB_DIRECTORY next to the V3 entry point and serves what the frontend fetches."""
    page = PAGES[0]
    with urllib.request.urlopen(f"{server.url}/extensions/{ch.PACK_LINK_NAME}/docs/{page.name}", timeout=30) as r:
        assert r.status == 200
        assert "text/html" not in r.headers.get("Content-Type", "")   # the frontend rejects an HTML answer
        assert r.read().decode() == page.read_text()
    href = (IMAGE.search(page.read_text()).group(1))
    with urllib.request.urlopen(f"{server.url}/extensions/{ch.PACK_LINK_NAME}/docs/{href}", timeout=30) as r:
        assert r.read() == (DOCS / href).read_bytes()


# ----------------------------------------------------------------------------------------------- thumbnails
@pytest.mark.parametrize("name", WORKFLOWS)
def test_every_workflow_has_a_small_thumbnail(name):
    path = WF_DIR / f"{name}.jpg"
    assert path.is_file(), f"no thumbnail {path.name}: run scripts/make_thumbnails.py"
    data = path.read_bytes()
    assert len(data) <= THUMBNAIL_MAX_BYTES, f"{path.name}: {len(data)} bytes"
    image = _decode(data, "JPEG")
    assert image.size == (640, 480), image.size


def test_no_thumbnail_without_a_workflow():
    orphans = sorted(p.name for p in WF_DIR.glob("*.jpg") if p.stem not in WORKFLOWS)
    assert not orphans, orphans


# ----------------------------------------------------------------------------------------------- release
def test_pyproject_registry_fields():
    data = _pyproject()
    project, comfy = data["project"], data["tool"]["comfy"]
    assert project["name"] == "exact-inversion"
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"]), project["version"]
    assert project["description"] and project["license"]
    assert project["urls"]["Repository"].startswith("https://github.com/")
    assert comfy["PublisherId"] and comfy["DisplayName"]
    assert re.fullmatch(r">=\d+\.\d+\.\d+", comfy["requires-comfyui"]), comfy["requires-comfyui"]
    # the registry takes the icon as a URL: this repository's own file on main, and that file exists and is small
    icon = comfy["Icon"]
    prefix = project["urls"]["Repository"].replace("https://github.com/", "https://raw.githubusercontent.com/")
    assert icon.startswith(prefix + "/main/"), icon
    icon_file = REPO / icon[len(prefix + "/main/"):]
    assert icon_file.is_file() and icon_file.stat().st_size <= 20_000, icon_file
    if icon_file.suffix == ".svg":
        svg = icon_file.read_text()
        assert "<svg" in svg and 'viewBox="0 0 128 128"' in svg   # square


def test_version_has_a_changelog_entry():
    version = _pyproject()["project"]["version"]
    text = (REPO / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\]", text, flags=re.M)
    assert headings and headings[0] == "Unreleased", headings
    assert version in headings, f"CHANGELOG.md has no entry for {version}: {headings}"
    assert re.search(rf"^## \[{re.escape(version)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", text, flags=re.M), \
        f"the {version} entry has no date"
    assert re.search(rf"^\[{re.escape(version)}\]: https://", text, flags=re.M), f"no link for {version}"


def test_publish_workflow():
    """Comfy-Org/publish-node-action on a push to main that changes pyproject.toml (the registry packs' form)."""
    text = (REPO / ".github" / "workflows" / "publish.yml").read_text()
    assert "uses: Comfy-Org/publish-node-action@" in text
    assert re.search(r"push:\s*\n\s*branches:\s*\n\s*- main\s*\n\s*paths:\s*\n\s*- \"pyproject.toml\"", text), text
    assert "secrets.REGISTRY_ACCESS_TOKEN" in text


def _comfy_cli() -> str | None:
    for candidate in (os.environ.get("COMFY_CLI"), shutil.which("comfy"), "/tmp/comfycli/bin/comfy"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.mark.skipif(_comfy_cli() is None, reason="comfy-cli is not installed (see scripts/check_registry.sh)")
def test_comfy_node_validate():
    proc = subprocess.run(["bash", str(REPO / "scripts" / "check_registry.sh")], capture_output=True, text=True,
                          env=dict(os.environ, COMFY_CLI=_comfy_cli()), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "All validation checks passed" in proc.stdout
