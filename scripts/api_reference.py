"""Write the Python API's reference page from its docstrings: `python scripts/api_reference.py [OUT]`.

The page (docs/guide/api-reference.md by default) lists `lab.open`, `lab.log_metrics` and every public class of
`lab.api` with its signature and docstring, in the order the API defines them. tests/house/test_docs.py checks that
the committed page is what this script writes, so a docstring edited without the page fails the tests.
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "docs" / "guide" / "api-reference.md"


def _doc(obj) -> str:
    return inspect.cleandoc(obj.__doc__ or "").strip()


def _signature(name: str, obj) -> str:
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        sig = "(...)"
    # Annotations are strings here (`from __future__ import annotations`): shown without their quotes.
    sig = re.sub(r"(: |-> )'([^']*)'", r"\1\2", sig)
    return f"{name}{sig}"


def _members(cls) -> list[tuple[str, object]]:
    """Public methods and properties defined on the class itself, in source order."""
    out = []
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, property):
            out.append((name, value))
        elif isinstance(value, (staticmethod, classmethod)):
            out.append((name, value.__func__))
        elif inspect.isfunction(value):
            out.append((name, value))
    return out


def _block(heading: str, signature: str | None, doc: str, level: int) -> list[str]:
    lines = [f"{'#' * level} `{heading}`", ""]
    if signature:
        lines += ["```python", signature, "```", ""]
    if doc:
        lines += [doc, ""]
    return lines


def render() -> str:
    import lab
    import lab.api
    from lab.api import runs, types

    lines = [
        "# Python API reference",
        "",
        "Generated from the docstrings by `scripts/api_reference.py`; [the Python API](api.md) shows it at work.",
        "Every call raises `lab.LabError` (or `lab.BadInput`, a mistake in what was asked) with a message for a person;",
        "none prints.",
        "",
    ]
    lines += _block("lab.open", _signature("lab.open", lab.api.open), _doc(lab.api.open), 2)
    lines += _block("lab.log_metrics", _signature("lab.log_metrics", lab.log_metrics), _doc(lab.log_metrics), 2)
    classes = [lab.api.Lab]
    for module in (runs, types):
        for name, value in vars(module).items():
            if inspect.isclass(value) and value.__module__ == module.__name__ and not name.startswith("_"):
                classes.append(value)
    for cls in classes:
        lines += _block(f"lab.{cls.__name__}", None, _doc(cls), 2)
        for name, member in _members(cls):
            if isinstance(member, property):
                lines += _block(f"{cls.__name__}.{name}", None, _doc(member.fget) or "(property)", 3)
            else:
                sig = _signature(f"{cls.__name__}.{name}", member).replace("(self, ", "(").replace("(self)", "()")
                sig = sig.replace("(cls, ", "(").replace("(cls)", "()")
                lines += _block(f"{cls.__name__}.{name}", sig, _doc(member), 3)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else DEFAULT_OUT
    out.write_text(render(), encoding="utf-8")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
