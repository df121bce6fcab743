"""Sphinx configuration of the ase-qdf documentation.

Build (from the repository root)::

    pip install -e ".[docs]"
    sphinx-build -W -b html docs build/docs    (build/ is git-ignored)

The pages are Markdown (MyST); the API reference is generated from the docstrings
(Google ``Args:`` style, read by napoleon), so the packages must be importable.
"""

import os
import sys
from importlib.metadata import PackageNotFoundError, version

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
if ROOT not in sys.path:  # build without installing the package too
    sys.path.insert(0, ROOT)

project = "ase-qdf"
author = "ase-qdf developers"
copyright = "2026, ase-qdf developers"
try:
    release = version("ase-qdf")
except PackageNotFoundError:
    release = "0.1.0"
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "figures/*.py", "benchmarks/*/run/*", "benchmarks/h200/*", "benchmarks/ablations/*", "benchmarks/training_qdf_fast/*", "benchmarks/training_qdf_relu_bf16/phase*/*", "benchmarks/training_qdf_relu_bf16/pilot_*/*", "benchmarks/training_qdf_relu_bf16/local/*", "benchmarks/training_painn_member*/*"]

# MyST: ```{directive} fences, $...$ maths, "(label)=" targets, anchors for headings.
myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 3

# autodoc + napoleon: Google-style docstrings ("Args:", "Returns:", "Raises:").
autodoc_default_options = {"members": True, "member-order": "bysource", "show-inheritance": True}
autodoc_typehints = "description"
autodoc_class_signature = "separated"
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = False  # no Lightning/torch docstrings (their cross-references do not resolve here)
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True  # "Attributes:" as a field list: no duplicates of autodoc'd NamedTuple fields

html_theme = "furo"
html_title = f"ase-qdf {release}"
html_static_path = []


def _usage_as_literal_block(app, what, name, obj, options, lines):
    """Show an indented usage block right after a module's summary line verbatim.

    ``ase_qdf.cli`` starts its docstring with the command synopsis indented by four
    spaces, which reStructuredText would otherwise parse as a definition list.
    """
    if what == "module" and len(lines) > 2 and lines[1] == "" and lines[2].startswith("    "):
        lines[1:2] = ["", "::", ""]


def setup(app):
    app.connect("autodoc-process-docstring", _usage_as_literal_block)
