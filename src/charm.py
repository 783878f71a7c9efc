#!/usr/bin/env python3
"""Juju machine charm for a private container registry and registry mirror.

Every event that can change what the registry should be goes through one
reconcile path: decide the desired state (`plan.py`), apply it
(`registry.py`). Status is reported from collect-status only.
"""

from __future__ import annotations

import functools
import logging
import socket

import ops

import client_config
import peer
from config import CharmConfig, InvalidConfigError
from machine import Machine, UbuntuMachine
from plan import RegistryPlan, plan_registry, template_environment
from registry import Registry

logger = logging.getLogger(__name__)

STOPPED_BY_OPERATOR = "Registry stopped by the stop action; run the start action to serve"


class DockerRegistryCharm(ops.CharmBase):
    """Runs the registry service and keeps it as config and relations want it."""

    _stored = ops.StoredState()

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self._stored.set_default(stopped_by_operator=False)
        self.registry = Registry(self.make_machine())
        self.templates = template_environment(self.charm_dir)
        on = self.on
        framework.observe(on.install, self._on_install)
        framework.observe(on.upgrade_charm, self._on_install)
        for event in (
            on.config_changed,
            on.start,
            on.leader_elected,
            on.update_status,
            on.secret_changed,
            on[peer.ENDPOINT].relation_changed,
            on[peer.ENDPOINT].relation_departed,
        ):
            framework.observe(event, self._reconcile)
        framework.observe(on.stop, self._on_stop)
        framework.observe(on.remove, self._on_stop)
        framework.observe(on.collect_unit_status, self._on_collect_status)
        framework.observe(on.start_action, self._on_start_action)
        framework.observe(on.stop_action, self._on_stop_action)
        framework.observe(on.client_config_action, self._on_client_config_action)

    def make_machine(self) -> Machine:
        """The one seam to apt and systemd; the tests override only this."""
        return UbuntuMachine()

    @functools.cached_property
    def desired(self) -> RegistryPlan | ops.StatusBase:
        """What the registry should be, or the status saying why that is not known."""
        try:
            config = self.load_config(CharmConfig)
        except InvalidConfigError as e:
            return ops.BlockedStatus(f"Invalid charm config: {e}")
        http_secret = peer.http_secret(self)
        if http_secret is None:
            return ops.WaitingStatus("Waiting for the leader to share the registry's http secret")
        return plan_registry(
            config,
            templates=self.templates,
            root=self.registry.machine.root,
            listen_host=self.registry.machine.listen_host,
            realm=self.app.name,
            http_secret=http_secret,
            unit_address=self._unit_address(),
        )

    def _unit_address(self) -> str:
        """The address clients of the docker-registry endpoint reach this unit at."""
        binding = self.model.get_binding("docker-registry")
        address = binding.network.ingress_address if binding else None
        return str(address) if address else socket.getfqdn()

    def _on_install(self, event: ops.EventBase) -> None:
        self.unit.status = ops.MaintenanceStatus("Installing docker-registry and skopeo")
        self.registry.install()
        self._reconcile(event)

    def _reconcile(self, _: ops.EventBase | None = None) -> None:
        """Bring the unit to the desired state; a no-op when it is there already."""
        if version := self.registry.version():
            self.unit.set_workload_version(version)
        desired = self.desired
        if not isinstance(desired, RegistryPlan):
            return
        self.unit.set_ports(*desired.ports)
        if self._stored.stopped_by_operator:
            return
        if self.registry.apply(desired):
            self.registry.wait_until_answering(desired)

    def _on_stop(self, _: ops.EventBase) -> None:
        """The unit is going away: stop serving, keep the images."""
        self.registry.stop()

    def _on_start_action(self, event: ops.ActionEvent) -> None:
        self._stored.stopped_by_operator = False
        desired = self.desired
        if not isinstance(desired, RegistryPlan):
            event.fail(f"Cannot start: {desired.message}")
            return
        self.registry.apply(desired)
        if not self.registry.wait_until_answering(desired):
            event.fail("The registry did not answer on /v2/ after starting")
            return
        event.set_results({"outcome": "success", "raw": "started"})

    def _on_stop_action(self, event: ops.ActionEvent) -> None:
        self._stored.stopped_by_operator = True
        self.registry.stop()
        event.set_results({"outcome": "success", "raw": "stopped"})

    def _on_client_config_action(self, event: ops.ActionEvent) -> None:
        desired = self.desired
        if not isinstance(desired, RegistryPlan):
            event.fail(f"Cannot tell clients how to reach the registry: {desired.message}")
            return
        try:
            results = client_config.render(
                desired,
                templates=self.templates,
                hosts_dir=event.params["hosts-dir"],
                mirror_of=event.params["mirror-of"],
            )
        except client_config.ClientConfigError as e:
            event.fail(str(e))
            return
        event.set_results(results)

    def _on_collect_status(self, event: ops.CollectStatusEvent) -> None:
        desired = self.desired
        if not isinstance(desired, RegistryPlan):
            event.add_status(desired)
        elif self._stored.stopped_by_operator:
            event.add_status(ops.BlockedStatus(STOPPED_BY_OPERATOR))
        elif not self.registry.answers(desired):
            event.add_status(
                ops.BlockedStatus("Registry is not answering; see journalctl -u docker-registry")
            )
        else:
            address = self.model.get_binding("docker-registry").network.ingress_address  # type: ignore[union-attr]
            event.add_status(
                ops.ActiveStatus(f"Ready at {address}:{desired.port} ({desired.scheme}).")
            )


if __name__ == "__main__":  # pragma: nocover
    ops.main(DockerRegistryCharm)
