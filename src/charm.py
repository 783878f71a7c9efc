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

import images
import peer
import push
from config import CharmConfig, InvalidConfigError
from garbage_collect import GarbageCollectError, GarbageCollectParams, collect_garbage
from machine import Machine, UbuntuMachine
from plan import RegistryPlan, plan_registry, template_environment
from registry import Registry
from registry_api import RegistryAPIError, RegistryClient, local_access

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
        framework.observe(on.push_action, self._on_push_action)
        framework.observe(on.images_action, self._on_images_action)
        framework.observe(on.rmi_action, self._on_rmi_action)
        framework.observe(on.garbage_collect_action, self._on_garbage_collect_action)

    def make_machine(self) -> Machine:
        """The one seam to apt and systemd; the tests override only this."""
        return UbuntuMachine()

    @functools.cached_property
    def desired(self) -> RegistryPlan | ops.StatusBase:
        """What the registry should be, or the status saying why that is not known."""
        return self._plan()

    def _plan(self, *, maintenance: bool = False) -> RegistryPlan | ops.StatusBase:
        """The registry's plan; `maintenance` makes it read-only for garbage collection."""
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
            maintenance=maintenance,
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

    def _serving(self, event: ops.ActionEvent) -> RegistryPlan | None:
        """The plan of the registry an action talks to; fails the action if it is not serving."""
        desired = self.desired
        if not isinstance(desired, RegistryPlan):
            event.fail(f"The registry is not configured: {desired.message}")
            return None
        if self._stored.stopped_by_operator:
            event.fail("The registry is stopped; run the start action first")
            return None
        return desired

    @staticmethod
    def _own_netlocs(plan: RegistryPlan) -> tuple[str, ...]:
        """The prefixes that name this registry in references operators give."""
        return (plan.netloc, f"127.0.0.1:{plan.port}", f"localhost:{plan.port}")

    @staticmethod
    def _report(event: ops.ActionEvent, results: dict, failure: str | None) -> None:
        """Set an action's results, then fail it if something went wrong."""
        event.set_results(results)
        if failure:
            event.fail(failure)

    def _on_push_action(self, event: ops.ActionEvent) -> None:
        plan = self._serving(event)
        if plan is None:
            return
        params = event.load_params(push.PushParams)
        try:
            copies = push.plan_copies(
                params.image,
                tag=params.tag,
                namespace=params.namespace,
                own_netlocs=self._own_netlocs(plan),
            )
        except push.InvalidPushError as e:
            event.fail(str(e))
            return
        source = push.SourceAuth(
            params.source_username, params.source_password, params.source_tls_verify
        )
        outcomes = push.push_images(
            copies,
            local_access(plan),
            source,
            netloc=plan.netloc,
            parallel=params.parallel,
            log=event.log,
        )
        self._report(event, *push.action_results(outcomes))

    def _on_images_action(self, event: ops.ActionEvent) -> None:
        plan = self._serving(event)
        if plan is None:
            return
        params = event.load_params(images.ImagesParams)
        client = RegistryClient(local_access(plan))
        try:
            entries = images.list_images(
                client,
                repository=params.repository,
                digests=params.digests,
                own_netlocs=self._own_netlocs(plan),
            )
        except (images.ImagesError, RegistryAPIError) as e:
            event.fail(f"Cannot list images: {e}")
            return
        event.set_results(images.list_results(entries, plan.netloc))

    def _on_rmi_action(self, event: ops.ActionEvent) -> None:
        plan = self._serving(event)
        if plan is None:
            return
        deletions = images.delete_images(
            RegistryClient(local_access(plan)),
            event.load_params(images.RmiParams).image.split(),
            own_netlocs=self._own_netlocs(plan),
            log=event.log,
        )
        self._report(event, *images.delete_results(deletions))

    def _on_garbage_collect_action(self, event: ops.ActionEvent) -> None:
        normal, read_only = self.desired, self._plan(maintenance=True)
        if not isinstance(normal, RegistryPlan):
            event.fail(f"The registry is not configured: {normal.message}")
            return
        assert isinstance(read_only, RegistryPlan), "same inputs as the normal plan"
        try:
            collected = collect_garbage(
                self.registry,
                normal,
                read_only,
                delete_untagged=event.load_params(GarbageCollectParams).delete_untagged,
                serving=not self._stored.stopped_by_operator,
                log=event.log,
            )
        except GarbageCollectError as e:
            event.fail(str(e))
            return
        event.set_results(collected.results())

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
