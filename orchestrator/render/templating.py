"""The one jinja2 environment for every shipped template (configs and Dockerfiles).

Templates are logic-free: all decisions are made in Python and passed in as ready values;
``StrictUndefined`` turns a missing value into an error instead of an empty string. jinja2 is
imported on first use so commands that render nothing (``deploy probe``) start fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from orchestrator.errors import RenderError
from orchestrator.resources import templates_dir

if TYPE_CHECKING:
    import jinja2


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_template(name: str, context: Mapping[str, Any]) -> str:
    """Render ``templates/<name>`` with ``context``; a template error becomes a RenderError."""
    import jinja2

    try:
        return _environment().get_template(name).render(**context)
    except jinja2.TemplateError as exc:
        raise RenderError(f"template {name} failed: {exc}", "this is a bug in tailor's templates") from exc
