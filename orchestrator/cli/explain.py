"""How a plan is shown to a person or a program: JSON and the "where each value came from" table.

Secrets (variables flagged ``secret`` in the knob table, such as ``TAILOR_API_KEY``) are
redacted here, in the one place every command prints a plan from, unless ``--show-secrets``.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from orchestrator.cli import output as out
from orchestrator.plan.planner import Plan
from orchestrator.plan.runtime_env import redact, redact_env
from runtime.settings import VARIABLES


def plan_json(plan: Plan, *, show_secrets: bool = False) -> dict[str, Any]:
    """The plan's JSON form (``Plan.to_view``: the stored fields plus ``env``) with secret values redacted."""
    data = plan.to_view()
    data["env"] = redact_env(data["env"], show_secrets)
    data["other_env"] = redact_env(data["other_env"], show_secrets)
    data["provenance"] = [{**p, "value": redact(p["name"], p["value"], show_secrets)} for p in data["provenance"]]
    data["user_values"] = {name: [redact(name, value, show_secrets), source]
                           for name, (value, source) in plan.user_values.items()}
    return data


def source_rows(plan: Plan, *, show_secrets: bool = False) -> list[dict[str, str]]:
    """One row per runtime variable (and per launcher setting the user gave): name, value
    (redacted), source (cli, env, config/tuned, profile, default, derived) and why."""
    env = plan.env  # made once from the typed plan
    return [{"name": p.name, "value": redact(p.name, p.value, show_secrets), "source": p.source,
             "reason": p.reason} for p in plan.provenance if p.name in env or p.name in plan.launch_settings]


def sources_table(plan: Plan, *, show_secrets: bool = False, title: str = "Runtime environment") -> Table:
    table = Table(title=title)
    for column in ("variable", "value", "source", "reason"):
        table.add_column(column)
    for row in source_rows(plan, show_secrets=show_secrets):
        table.add_row(*(escape(row[key]) for key in ("name", "value", "source", "reason")))
    return table


def print_sources(plan: Plan, *, show_secrets: bool = False, title: str = "Runtime environment") -> None:
    """Where each runtime value came from, as a table on stdout (``--explain``)."""
    out.table(sources_table(plan, show_secrets=show_secrets, title=title))


def knob_rows() -> list[dict[str, Any]]:
    """The knob table (``runtime.settings.VARIABLES``) as rows: what ``deploy env`` prints."""
    return [{"name": v.name, "type": v.type_name, "unit": v.unit, "default": v.default, "allowed": v.allowed,
             "knob": v.knob, "secret": v.secret, "description": v.description} for v in VARIABLES]


def knob_table_markdown() -> str:
    """The knob table as Markdown; README.md carries this exact text (a test compares them)."""
    lines = ["| Variable | Config key | Type | Unit | Default | Allowed | Description |",
             "|---|---|---|---|---|---|---|"]
    for row in knob_rows():
        key = f"`settings.{row['knob']}`" if row["knob"] else f"`env.{row['name']}`"
        default = f"`{row['default']}`" if row["default"] else "(empty)"
        description = row["description"] + (" Secret: redacted in output." if row["secret"] else "")
        cells = [f"`{row['name']}`", key, row["type"], row["unit"], default, row["allowed"],
                 description.replace("|", "\\|")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
