"""Fleets: Ansible and Kubernetes glue around the single-host pipeline (no SSH, no rollout logic of our own)."""
