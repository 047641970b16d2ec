"""Deployment files for existing engines: Kubernetes, KServe and ECS (``rtserve k8s``).

rtserve generates what those engines read and validates it offline; it runs no cluster of its own.
``plan`` turns bundles (or registry references) and options into a ``DeployPlan`` whose timings
pair the probes and the pre-stop drain with the server's shutdown settings; ``kubernetes`` and
``ecs`` render that plan. Imported only by the CLI, inside its command (``rtserve --help`` stays
fast).
"""

from __future__ import annotations

from rtserve.deploy.plan import DeployPlan, ModelRef, Resources, Timings, resolve_models

__all__ = ["DeployPlan", "ModelRef", "Resources", "Timings", "resolve_models"]
