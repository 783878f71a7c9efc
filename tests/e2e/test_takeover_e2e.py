"""A registry the charm does not run (the established charm's container) is never "Ready"."""

from __future__ import annotations

from ops import testing

from charm_context import unit_state
from support.registry import RegistryProcess


def test_a_registry_the_charm_does_not_own_is_never_reported_ready(ctx, machine):
    with RegistryProcess() as old:
        state = ctx.run(ctx.on.install(), unit_state(old.port))
        assert state.unit_status == testing.BlockedStatus(
            f"Port {old.port} is held by another process; the registry cannot serve"
        )
        # Later hooks: ours could not bind the port and is down; the old one still answers.
        machine.stop("docker-registry")
        state = ctx.run(ctx.on.update_status(), state)
        assert state.unit_status.name == "blocked"
    state = ctx.run(ctx.on.update_status(), state)
    assert state.unit_status == testing.ActiveStatus(f"Ready at 127.0.0.1:{old.port} (http).")
