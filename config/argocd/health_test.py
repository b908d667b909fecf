#!/usr/bin/env python3
"""Tests of health-pyroscopecluster.lua, the Argo CD health check of a PyroscopeCluster.

Runs the script the way Argo CD does (a global `obj` holding the resource, the
returned table read as {status, message}) in Lua 5.1, the language of Argo
CD's gopher-lua, through lupa. Run by scripts/k8s-validate.sh, or by hand:

    .venv-k8s/bin/python config/argocd/health_test.py
"""

from __future__ import annotations

import copy
import os
import unittest

import lupa.lua51 as lua51
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT_PATH = os.path.join(HERE, "health-pyroscopecluster.lua")
PATCH_PATH = os.path.join(HERE, "argocd-cm-patch.yaml")
KEY = "resource.customizations.health.phlox.dev_PyroscopeCluster"

with open(SCRIPT_PATH) as f:
    SCRIPT = f.read()

BASE = {
    "apiVersion": "phlox.dev/v1alpha1",
    "kind": "PyroscopeCluster",
    "metadata": {"name": "phlox", "namespace": "phlox", "generation": 3},
    "spec": {"storage": {"backend": "s3", "bucket": "phlox"}},
}


def cond(kind: str, status: str, message: str = "", reason: str = "Reconciled") -> dict:
    return {"type": kind, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2025-01-01T00:00:00Z"}


def with_status(status: dict | None, generation: int = 3) -> dict:
    obj = copy.deepcopy(BASE)
    obj["metadata"]["generation"] = generation
    if status is not None:
        obj["status"] = status
    return obj


def health(obj: dict) -> tuple[str, str]:
    """(status, message) the script gives for obj, as Argo CD would run it."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    # Argo CD runs the script as a chunk and reads the table it returns.
    result = lua.execute(SCRIPT)
    return result["status"], result["message"]


class HealthTest(unittest.TestCase):
    def test_no_status_is_progressing(self):
        self.assertEqual(health(with_status(None)),
                         ("Progressing", "Waiting for the operator to report a status"))

    def test_empty_status_is_progressing(self):
        status, message = health(with_status({}))
        self.assertEqual(status, "Progressing")
        self.assertIn("generation 3", message)

    def test_ready_and_current_generation_is_healthy(self):
        obj = with_status({"observedGeneration": 3, "componentsReady": "6/6",
                           "conditions": [cond("Ready", "True", "6/6 components ready"),
                                          cond("Progressing", "False"), cond("Degraded", "False")]})
        self.assertEqual(health(obj), ("Healthy", "6/6 components ready"))

    def test_ready_without_message_is_healthy(self):
        obj = with_status({"observedGeneration": 3, "conditions": [cond("Ready", "True")]})
        self.assertEqual(health(obj), ("Healthy", "All components are ready"))

    def test_ready_but_old_generation_is_progressing(self):
        obj = with_status({"observedGeneration": 2, "conditions": [cond("Ready", "True", "ready")]})
        self.assertEqual(health(obj), ("Progressing", "Waiting for the operator to observe generation 3"))

    def test_ready_without_observed_generation_is_progressing(self):
        obj = with_status({"conditions": [cond("Ready", "True", "ready")]})
        self.assertEqual(health(obj)[0], "Progressing")

    def test_degraded_wins_with_its_message(self):
        obj = with_status({"observedGeneration": 3,
                           "conditions": [cond("Ready", "True", "ready"),
                                          cond("Degraded", "True", "metastore: 1/3 voters ready", "QuorumLost")]})
        self.assertEqual(health(obj), ("Degraded", "metastore: 1/3 voters ready"))

    def test_degraded_on_old_generation_is_degraded(self):
        # A spec the operator cannot apply may never advance observedGeneration.
        obj = with_status({"observedGeneration": 1,
                           "conditions": [cond("Degraded", "True", "invalid spec: storage.bucket is empty")]})
        self.assertEqual(health(obj), ("Degraded", "invalid spec: storage.bucket is empty"))

    def test_degraded_without_message(self):
        obj = with_status({"observedGeneration": 3, "conditions": [cond("Degraded", "True")]})
        self.assertEqual(health(obj), ("Degraded", "Degraded"))

    def test_not_ready_uses_progressing_message(self):
        obj = with_status({"observedGeneration": 3,
                           "conditions": [cond("Ready", "False", "2/6 components ready"),
                                          cond("Progressing", "True", "rolling out segment-writer"),
                                          cond("Degraded", "False")]})
        self.assertEqual(health(obj), ("Progressing", "rolling out segment-writer"))

    def test_not_ready_falls_back_to_ready_message(self):
        obj = with_status({"observedGeneration": 3, "conditions": [cond("Ready", "Unknown", "starting")]})
        self.assertEqual(health(obj), ("Progressing", "starting"))

    def test_not_ready_without_messages(self):
        obj = with_status({"observedGeneration": 3, "conditions": []})
        self.assertEqual(health(obj), ("Progressing", "Waiting for all components to be ready"))

    def test_argocd_cm_patch_embeds_the_script_verbatim(self):
        with open(PATCH_PATH) as f:
            patch = yaml.safe_load(f)
        self.assertEqual(patch["kind"], "ConfigMap")
        self.assertEqual(patch["metadata"]["name"], "argocd-cm")
        self.assertEqual(patch["data"][KEY], SCRIPT)


if __name__ == "__main__":
    unittest.main(verbosity=1)
