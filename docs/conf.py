"""Sphinx configuration: `make docs` builds docs/ into docs/_build/html, warnings as errors.

The pages are Markdown (MyST). The policy file reference is generated from the shipped
JSON Schema at build time (docs/_ext/schema_reference.py) and the API reference is
generated from ``__all__`` (docs/_ext/api_reference.py), so neither can drift from the
code.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

from sphinx.application import Sphinx

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
# Build from this checkout's sources, whatever is installed, and find our extensions.
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(DOCS / "_ext"))

project = "tlsconnector"
author = "tlsconnector developers"
copyright = "2026, tlsconnector developers"
# The version being documented is the checkout's, not whatever is installed.
with (ROOT / "pyproject.toml").open("rb") as _pyproject:
    release = tomllib.load(_pyproject)["project"]["version"]
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "schema_reference",
    "api_reference",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "Thumbs.db", ".DS_Store"]

# MyST: `{include}`, tables, "#anchor" links to headings of other pages.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# autodoc: signatures with types, members in source order, only documented members.
# A class shows its constructor on the class line ("mixed"), with the __init__
# docstring (if any) after the class's; api_reference.py writes attrs classes'
# constructors from their fields. A signature longer than a line lists one parameter
# per line instead of running off the page.
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
autodoc_class_signature = "mixed"
autoclass_content = "both"
python_maximum_signature_line_length = 88
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = False

html_theme = "furo"
html_static_path = ["_static"]
html_css_files = ["tables.css", "code.css"]
html_title = f"tlsconnector {release}"
pygments_style = "sphinx"
pygments_dark_style = "monokai"

# Pages that other work is still writing: listed in index.md's toctree and linked from
# other pages; while a page's file does not exist, its toctree entry is dropped and links
# to it become plain text (a toctree entry or a link without a page is an error).
PENDING_PAGES = ("performance", "testing")


def _drop_pending_pages(app: Sphinx, docname: str, source: list[str]) -> None:
    for page in PENDING_PAGES:
        if (DOCS / f"{page}.md").exists():
            continue
        if docname == root_doc:
            source[0] = re.sub(rf"^{page}$\n", "", source[0], flags=re.MULTILINE)
        source[0] = re.sub(rf"\[([^\]]*)\]\({page}\.md(#[^)]*)?\)", r"\1", source[0])


def setup(app: Sphinx) -> None:
    app.connect("source-read", _drop_pending_pages)
