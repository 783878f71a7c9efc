"""What the replays of the operators' guides share: a node configured from client-config.

A node here is a containerd with its CRI plugin (pulls as kubelet's), its registry
configuration taken only from what the charm's `client-config` action printed, and
public names (gcr.io, registry.k8s.io, a registry's domain) mapped to loopback addresses
in its own mount namespace, so that no public name is ever resolved.
"""

from __future__ import annotations

import json
from pathlib import Path

from ops import testing

CRI_REGISTRY = 'plugins."io.containerd.grpc.v1.cri".registry'


def client_config(ctx, state: testing.State, hosts_dir: Path, **params: str | bool) -> dict:
    """Run client-config and write its files into `hosts_dir`, as a node's operator would."""
    params = {"hosts-dir": str(hosts_dir), **params}
    ctx.run(ctx.on.action("client-config", params=params), state)
    results = ctx.action_results
    assert results is not None
    for relative, content in json.loads(results["files"]).items():
        path = hosts_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return results


def cri_registry(hosts_dir: Path, extra: str = "") -> str:
    """The CRI registry tables of a node's config.toml: hosts.toml files in `hosts_dir`."""
    return f'[{CRI_REGISTRY}]\n  config_path = "{hosts_dir}"\n{extra}'
