#!/usr/bin/python
# Copyright: Tailor developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: tailor_facts
short_description: Probe a host with Tailor and plan its speech runtime
description:
  - Runs Tailor's own probe (C(deploy probe --json)) and planner (C(deploy plan --json)) on the
    target, with the Tailor installed there, and returns the results as C(ansible_facts.tailor).
  - The facts are the same JSON as C(deploy probe --json); the controller can plan from them
    again with C(deploy plan --facts FILE) or C(deploy fleet plan).
  - Read-only, so it runs unchanged in check mode.
  - C(config_text) returns the config file's text so the controller can plan with the same input.
  - When no profile fits the host, the module still succeeds; C(plan) is null and
    C(plan_error) says why (the fleet commands report such hosts by name).
version_added: "0.1.0"
options:
  python:
    description: Interpreter of the virtual environment Tailor is installed in on the target.
    type: path
    default: /opt/tailor/venv/bin/python
  config:
    description: Tailor config file on the target (profile, settings, env), as C(deploy plan --config).
    type: path
  profile:
    description: Force this profile, as C(deploy plan --profile).
    type: str
  model:
    description: Plan for this model family, as C(deploy plan --model) (default the config's C(model), else piper).
    type: str
  root:
    description: Probe this directory instead of C(/) (a recorded C(/proc), C(/sys), C(/etc) tree).
    type: path
author:
  - Tailor developers
"""

EXAMPLES = r"""
- name: What does this host have, and what would Tailor run on it?
  tailor.fleet.tailor_facts:
    config: /opt/tailor/config.yaml

- name: Show the plan
  ansible.builtin.debug:
    msg: "{{ ansible_facts.tailor.profile }}: {{ ansible_facts.tailor.plan.workers }} workers"
"""

RETURN = r"""
ansible_facts:
  description: Facts under the C(tailor) key.
  returned: always
  type: dict
  contains:
    tailor:
      description: C(facts) (HostFacts JSON), C(profile), C(plan) (plan JSON or null), C(plan_error), C(config_text) (the config file planned with).
      type: dict
"""

import json
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule


def _run_json(module, argv, what):
    rc, stdout, stderr = module.run_command(argv, environ_update={"TAILOR_NO_COLOR": "1", "NO_COLOR": "1"})
    if rc != 0:
        return None, (stderr or stdout).strip()
    try:
        return json.loads(stdout), ""
    except ValueError as exc:
        module.fail_json(msg=f"{what} printed something that is not JSON: {exc}", stdout=stdout[-2000:])
    return None, ""


def main():
    module = AnsibleModule(
        argument_spec={
            "python": {"type": "path", "default": "/opt/tailor/venv/bin/python"},
            "config": {"type": "path"},
            "profile": {"type": "str"},
            "model": {"type": "str"},
            "root": {"type": "path"},
        },
        supports_check_mode=True,
    )
    python = module.params["python"]
    if not os.access(python, os.X_OK):
        module.fail_json(msg=f"Tailor is not installed on this host: {python} is not executable",
                         hint="run the tailor.fleet.tailor role (or `deploy fleet probe`) first")
    probe = [python, "-m", "orchestrator", "probe", "--json"]
    if module.params["root"]:
        probe += ["--root", module.params["root"]]
    facts, error = _run_json(module, probe, "deploy probe --json")
    if facts is None:
        module.fail_json(msg=f"deploy probe failed on this host: {error}")
    fd, facts_path = tempfile.mkstemp(prefix="tailor-facts-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(facts, fh)
        plan_argv = [python, "-m", "orchestrator", "plan", "--facts", facts_path, "--json"]
        if module.params["config"]:
            plan_argv += ["--config", module.params["config"]]
        if module.params["profile"]:
            plan_argv += ["--profile", module.params["profile"]]
        if module.params["model"]:
            plan_argv += ["--model", module.params["model"]]
        plan, plan_error = _run_json(module, plan_argv, "deploy plan --json")
    finally:
        os.unlink(facts_path)
    config_text = None
    if module.params["config"] and os.path.isfile(module.params["config"]):
        with open(module.params["config"], encoding="utf-8") as fh:
            config_text = fh.read()
    tailor = {
        "facts": facts,
        "config_text": config_text,
        "plan": plan,
        "profile": plan.get("profile") if isinstance(plan, dict) else None,
        "plan_error": plan_error or None,
    }
    module.exit_json(changed=False, ansible_facts={"tailor": tailor})


if __name__ == "__main__":
    main()
