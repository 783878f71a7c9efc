"""Restarts the charm makes cut no request in flight: a load test across them.

Clients GET a 16 MB blob (read at a bounded pace, so downloads are in flight
when a restart comes) and a manifest, each request on a new connection,
while the charm restarts the registry for config changes and twice for a
garbage-collect, and, with the haproxy front, reloads haproxy for a new
mirror. The registry drains on SIGTERM (`http.draintimeout`); haproxy retries
a backend that is restarting. Requests cut must be 0; requests refused (no
connection: the registry alone has no listener while it restarts) are
printed, and must be 0 through the front.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from ops import testing

from charm_context import unit_state, with_config
from local_machine import LocalMachine
from support import oci, skopeo
from support.load import Load, Target
from support.registry import RegistryProcess
from support.wait import wait_for

pytestmark = pytest.mark.e2e
SERVICE = "docker-registry"
LOG_LEVELS = ["debug", "info", "debug", "info", "debug"]


@pytest.fixture(scope="module")
def layout(tmp_path_factory) -> tuple[Path, str, str]:
    """An image with one 16 MB layer of random bytes: (layout, manifest digest, layer digest)."""
    path = tmp_path_factory.mktemp("layout")
    layer = oci.make_layer(oci.random_layer(16 << 20, "restarts"), compresslevel=0)
    digest = oci.build_image(path, "v1", layers=[layer])
    manifest = json.loads(oci.read_blob(path, digest))
    return path, digest, manifest["layers"][0]["digest"]


@pytest.fixture
def upstream() -> Iterator[RegistryProcess]:
    """The mirror's upstream (a cache exits at start when it cannot reach it)."""
    with RegistryProcess() as registry:
        yield registry


def targets(ctx, state: testing.State, port: int, layout) -> list[Target]:
    """Push the image; the blob and the manifest to GET."""
    path, digest, layer = layout
    skopeo.copy(
        oci.layout_ref(path, "v1"), f"docker://127.0.0.1:{port}/load/app:v1", dest_tls_verify=False
    )
    return [
        Target(f"/v2/load/app/blobs/{layer}", digest=layer),
        Target(f"/v2/load/app/manifests/{digest}", accept=oci.MEDIA_TYPE_MANIFEST),
    ]


def restart_under_load(ctx, machine: LocalMachine, state: testing.State, load: Load, extra=()):
    """Config changes that restart every registry, a garbage-collect, then `extra` changes."""
    wait_for(lambda: load.count("ok") >= 8, timeout=60, what="downloads before the restarts")
    for level in LOG_LEVELS:
        state = ctx.run(ctx.on.config_changed(), with_config(state, log_level=level))
        assert isinstance(state.unit_status, testing.ActiveStatus), state.unit_status
    ctx.run(ctx.on.action("garbage-collect"), state)
    for change in extra:
        state = ctx.run(ctx.on.config_changed(), with_config(state, **change))
        assert isinstance(state.unit_status, testing.ActiveStatus), state.unit_status
    done = load.count("ok")
    wait_for(lambda: load.count("ok") >= done + 8, timeout=60, what="downloads after them")
    return state


def report(name: str, machine: LocalMachine, load: Load) -> list[float]:
    """Print the tally; return when each registry's restart began (its SIGTERM)."""
    tally = load.tally
    sigterms = [t for service, t in machine.terminations if service.startswith(SERVICE)]
    windows = tally.refused_windows()
    refused = f"max {max(windows):.3f}s, total {sum(windows):.3f}s" if windows else "none"
    print(
        f"\n{name}: {sum(tally.outcomes.values())} requests, {dict(tally.outcomes)}; "
        f"{len(sigterms)} registry restarts; "
        f"{tally.in_flight_at(sigterms)} downloads in flight at a restart completed; "
        f"{len(windows)} windows of refused connections ({refused})"
    )
    return sigterms


def test_the_registry_alone_cuts_nothing(ctx, machine, port, layout):
    state = ctx.run(ctx.on.install(), unit_state(port))
    with Load("127.0.0.1", port, targets(ctx, state, port, layout)) as load:
        restart_under_load(ctx, machine, state, load)
    sigterms = report("registry alone", machine, load)
    assert machine.launches[SERVICE] == 1 + len(LOG_LEVELS) + 2, "each change, gc twice"
    assert load.tally.outcomes["cut"] == 0, load.tally.errors
    assert load.tally.outcomes["failed"] == 0, load.tally.errors
    assert load.tally.in_flight_at(sigterms) > 0, "no download was in flight at a restart"


def test_through_the_front_clients_see_no_failure(ctx, machine, port, layout, upstream):
    mirrors = {"docker.io": upstream.url}
    config = {"cache-mirrors": yaml.safe_dump(mirrors)}
    state = ctx.run(ctx.on.install(), unit_state(port, config=config))
    more = yaml.safe_dump({**mirrors, "quay.io": upstream.url})
    with Load("127.0.0.1", port, targets(ctx, state, port, layout)) as load:
        extra = [{"cache_mirrors": more}, {"cache_mirrors": config["cache-mirrors"]}]
        restart_under_load(ctx, machine, state, load, extra)
    sigterms = report("through the haproxy front", machine, load)
    assert machine.reloads["haproxy"] == 2
    assert machine.launches["haproxy"] == 1
    # haproxy's log line of a 5xx says which side ended it (its termination state).
    errors = load.tally.errors + [
        line
        for line in machine.log("haproxy").splitlines()
        if re.search(r"\] \S+ \S+ [-\d/]+ 5\d\d ", line)
    ]
    assert load.tally.outcomes["cut"] == 0, errors
    assert load.tally.outcomes["failed"] == 0, errors
    assert load.tally.outcomes["refused"] == 0, errors
    assert load.tally.in_flight_at(sigterms) > 0, "no download was in flight at a restart"
