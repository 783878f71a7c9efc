"""An unreachable upstream degrades the unit, it does not block it.

A pull-through cache of Distribution 2.8 exits at start when it cannot reach
its upstream. With `cache-mirrors`, that is one upstream's cache: the main
registry and the other mirrors keep serving, and the unit stays Active,
naming the upstream and the journal to read. With `cache-remoteurl` the main
registry is the cache, so nothing serves: the unit is Blocked and says why.
"""

from __future__ import annotations

import pytest
from ops import testing

from charm_context import unit_state
from support import oci, skopeo
from support.registry import RegistryProcess
from support.wait import free_port

pytestmark = pytest.mark.e2e


def test_a_mirror_whose_upstream_is_unreachable_degrades_the_status(ctx, port, tmp_path):
    layout = tmp_path / "layout"
    digest = oci.build_image(layout, "v1", files={"a": b"a"})
    closed = f"http://127.0.0.1:{free_port()}"
    with RegistryProcess() as upstream:
        skopeo.copy(
            oci.layout_ref(layout, "v1"),
            f"docker://{upstream.ref('team/app')}",
            dest_tls_verify=False,
        )
        mirrors = f"up.test: {upstream.url}\nunreachable.test: {closed}"
        state = ctx.run(ctx.on.install(), unit_state(port, config={"cache-mirrors": mirrors}))

        assert state.unit_status == testing.ActiveStatus(
            f"Ready at 127.0.0.1:{port} (http). Mirror of unreachable.test not answering"
            " (upstream unreachable?); see journalctl -u docker-registry-mirror@unreachable.test"
        )
        # The main registry takes pushes; the other mirror serves its upstream.
        ctx.run(ctx.on.action("push", params={"image": f"oci:{layout}", "tag": "own:1"}), state)
        assert ctx.action_results["outcome"] == "success"
        own = skopeo.inspect_digest(f"docker://127.0.0.1:{port}/own:1", tls_verify=False)
        mirrored = skopeo.inspect_digest(
            f"docker://127.0.0.1:{port}/up.test/team/app:latest", tls_verify=False
        )
        assert own == mirrored == digest


def test_the_registry_as_the_cache_of_an_unreachable_upstream_is_blocked(ctx, port):
    closed = f"http://127.0.0.1:{free_port()}"
    state = ctx.run(ctx.on.install(), unit_state(port, config={"cache-remoteurl": closed}))
    assert state.unit_status == testing.BlockedStatus(
        "Registry is not answering; see journalctl -u docker-registry"
        f" (a pull-through cache of {closed} exits while it cannot reach it)"
    )
