"""Kubernetes/KubeRay extras: offline validation of ``ray-cluster.yaml`` (``cluster.validate``).

The non-Python files beside this package (Dockerfile, PodMonitor, scrape config, Grafana
dashboard, CI script) are described in ``docs/runbook.md``.
"""

__all__: list[str] = []
