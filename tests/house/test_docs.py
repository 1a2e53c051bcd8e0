"""The manual: the Python API's reference page is what its docstrings say now."""

from __future__ import annotations

import sys

from helpers import REPO


def test_api_reference_page_is_generated_from_the_current_docstrings():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import api_reference
    finally:
        sys.path.remove(str(REPO / "scripts"))
    committed = (REPO / "docs" / "guide" / "api-reference.md").read_text(encoding="utf-8")
    assert committed == api_reference.render(), "run: python scripts/api_reference.py"


def test_readme_links_only_guide_pages_that_exist():
    import re

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\((docs/guide/[^)#]+)", readme)
    assert links and all((REPO / link).is_file() for link in links), [link for link in links if not (REPO / link).is_file()]
