"""The settings table of the README, generated from the settings classes' field docstrings."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices
from pydantic_core import PydanticUndefined

from shared.settings import SETTINGS_CLASSES, CommonSettings, GatewaySettings, ServeSettings, WorkerSettings

_USED_BY = {
    CommonSettings: "all",
    GatewaySettings: "gateway",
    WorkerSettings: "worker",
    ServeSettings: "serve",
}


def settings_markdown() -> str:
    rows = ["| variable | seed name | default | used by | meaning |", "|---|---|---|---|---|"]
    seen: set[str] = set()
    for cls in SETTINGS_CLASSES:
        for name, field in cls.model_fields.items():
            if name in seen:
                continue
            seen.add(name)
            if field.default_factory is not None:
                default = "(computed)"
            elif field.default is PydanticUndefined or field.default in (None, ""):
                default = ""
            else:
                default = f"`{field.default}`"
            doc = " ".join((field.description or "").split()).replace("|", "\\|")
            seed = ""
            if isinstance(field.validation_alias, AliasChoices):
                seed = ", ".join(f"`{c}`" for c in field.validation_alias.choices if not str(c).startswith("M4T_"))
            rows.append(f"| `M4T_{name.upper()}` | {seed} | {default} | {_USED_BY[cls]} | {doc} |")
    return "\n".join(rows)


_MARKERS = re.compile(r"(<!-- settings:start[^>]*-->\n).*?(<!-- settings:end -->)", re.S)


def update_readme(path: Path) -> bool:
    """Rewrite the table between the settings markers of ``path``; True when it changed."""
    text = path.read_text()
    updated = _MARKERS.sub(lambda m: m.group(1) + settings_markdown() + "\n" + m.group(2), text)
    if updated != text:
        path.write_text(updated)
    return updated != text
