"""Deploy with a TLS provider and haproxy, push an image with the action, pull it via the proxy."""

from __future__ import annotations

from pathlib import Path

import jubilant

APP = "docker-registry"
USER, PASSWORD = "admin", "integration-password"
IMAGE = "registry.k8s.io/pause:3.9"


def test_deploy_push_and_pull_through_the_proxy(juju: jubilant.Juju, charm_file: Path):
    juju.deploy(charm_file, APP, config={"auth-basic-user": USER, "auth-basic-password": PASSWORD})
    juju.deploy("self-signed-certificates", channel="1/stable")
    juju.deploy("haproxy", channel="latest/stable")
    juju.integrate(f"{APP}:cert-provider", "self-signed-certificates:certificates")
    juju.integrate(f"{APP}:website", "haproxy:reverseproxy")
    status = juju.wait(lambda s: jubilant.all_active(s, APP), error=jubilant.any_error)

    message = status.apps[APP].units[f"{APP}/0"].workload_status.message
    assert message.startswith("Ready at ")
    assert message.endswith("(https, proxied).")
    netloc = message.removeprefix("Ready at ").split(" ")[0]

    task = juju.run(f"{APP}/0", "push", {"image": IMAGE})
    assert task.status == "completed", task.message
    pushed = task.results
    assert pushed["outcome"] == "success"
    digest = next(v["digest"] for k, v in pushed.items() if isinstance(v, dict) and "digest" in v)

    # Pulled through haproxy (the address clients are given), from the unit's own skopeo.
    pulled = juju.ssh(
        f"{APP}/0",
        f"skopeo inspect --tls-verify=false --creds {USER}:{PASSWORD} "
        f"--format '{{{{.Digest}}}}' docker://{netloc}/pause:3.9",
    )
    assert pulled.strip() == digest

    juju.config(APP, {"auth-basic-password": ""})
    status = juju.wait(lambda s: jubilant.all_active(s, APP))
    assert "Ready at" in status.apps[APP].units[f"{APP}/0"].workload_status.message
