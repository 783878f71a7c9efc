#!/usr/bin/env python3
"""Juju machine charm for a private container registry and registry mirror.

Wiring only. Every event that can change what the registry should be goes
through one reconcile path: decide the desired state (`state/`), apply it
(`workload/`), publish relation data (`relations/`). Actions go to their
handlers (`actions/`). Status is reported from collect-status only.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import logging
import socket
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import ops

from relations import cert_provider, cos_agent, docker_registry, nrpe, peer, website
from state.access import RelationCredential
from state.config import CharmConfig, InvalidConfigError, secret_uris
from state.front import PACKAGES as FRONT_PACKAGES
from state.front import SERVICE_TEMPLATE
from state.maintenance import Lease, MaintenanceRun, lease_step, plan_maintenance
from state.nagios import nagios_files, nagios_site, registry_checks
from state.packages import PackagePlan, plan_packages
from state.plan import (
    PlanError,
    PlanInputs,
    RegistryPlan,
    plan_registry,
    template_environment,
)
from state.settings import is_absolute_url
from state.tls import Checked, ServerTLS
from workload import established
from workload.machine import Machine, UbuntuMachine
from workload.maintenance import arm_lease_expiry, write_metrics
from workload.nagios import apply_nagios_files
from workload.packages import apply_sources, install_extra, set_holds
from workload.registry import PACKAGES, SERVICE, Registry

if TYPE_CHECKING:
    from actions import resource_import
    from workload.registry_api import LocalAccess

logger = logging.getLogger(__name__)

STOPPED_BY_OPERATOR = "Registry stopped by the stop action; run the start action to serve"
FREE_SPACE = "free space with the rmi and garbage-collect actions"
STOPPED_FOR_JUJU = "Registry stopped: the unit is going away; images stay on disk"
STOPPED_FOR_STORAGE = "Registry stopped: its storage is detaching; images stay on it"
DATA_STORAGE = "data"


class ScheduledMaintenanceEvent(ops.EventBase):
    """The maintenance timer fired (dispatched by `juju-exec`, see state/maintenance.py)."""


class MaintenanceLeaseExpiredEvent(ops.EventBase):
    """A shared-storage maintenance lease this unit followed has expired (a transient timer)."""


class DockerRegistryEvents(ops.CharmEvents):
    """Juju's events, and the ones the maintenance timers dispatch."""

    scheduled_maintenance = ops.EventSource(ScheduledMaintenanceEvent)
    maintenance_lease_expired = ops.EventSource(MaintenanceLeaseExpiredEvent)


class DockerRegistryCharm(ops.CharmBase):
    """Runs the registry service and keeps it as config and relations want it."""

    on = DockerRegistryEvents()  # type: ignore[reportAssignmentType]
    _stored = ops.StoredState()

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self._stored.set_default(
            stopped_by_operator=False,
            established_client_auth=False,
            checked_tls={},
            nagios_files=[],
            packages_fingerprint="",
            package_problem="",
            exporter_problem="",
            held_packages=[],
            last_maintenance={},
            maintenance_problem="",
        )
        self._stopped_for: str | None = None
        """Why a hook stopped the registry (the unit or its storage is going away)."""
        self._port_held = False
        """Another process held the registry's port when this hook started it."""
        self.registry = Registry(self.make_machine())
        self.templates = template_environment(self.charm_dir, self._templates_cache())
        # Built before our observers, so that the TLS library handles its
        # events (and writes its CSR) before we reconcile.
        self.cert_provider = cert_provider.CertProvider(
            self, self._certificate_request, on_certificate=self._reconcile
        )
        on = self.on
        framework.observe(on.install, self._on_install)
        framework.observe(on.upgrade_charm, self._on_install)
        framework.observe(on[DATA_STORAGE].storage_attached, self._on_storage_attached)
        framework.observe(on[DATA_STORAGE].storage_detaching, self._on_storage_detaching)
        for event in (
            on.config_changed,
            on.start,
            on.leader_elected,
            on.update_status,
            on.secret_changed,
            on.maintenance_lease_expired,
            on[peer.ENDPOINT].relation_joined,
            on[peer.ENDPOINT].relation_changed,
            on[peer.ENDPOINT].relation_departed,
            on[docker_registry.ENDPOINT].relation_joined,
            on[docker_registry.ENDPOINT].relation_changed,
            # Revokes the relation's credential on every unit, in this hook.
            on[docker_registry.ENDPOINT].relation_broken,
            on[website.ENDPOINT].relation_joined,
            on[website.ENDPOINT].relation_changed,
            on[website.ENDPOINT].relation_departed,
            on[website.ENDPOINT].relation_broken,
            on[cert_provider.ENDPOINT].relation_joined,
            on[cert_provider.ENDPOINT].relation_changed,
            on[cert_provider.ENDPOINT].relation_broken,
            on[nrpe.ENDPOINT].relation_joined,
            on[nrpe.ENDPOINT].relation_changed,
            on[nrpe.ENDPOINT].relation_broken,
            on[cos_agent.ENDPOINT].relation_joined,
            on[cos_agent.ENDPOINT].relation_changed,
            on[cos_agent.ENDPOINT].relation_broken,
        ):
            framework.observe(event, self._reconcile)
        framework.observe(on.stop, self._on_stop)
        framework.observe(on.remove, self._on_stop)
        framework.observe(on.collect_unit_status, self._on_collect_status)
        framework.observe(on.start_action, self._on_start_action)
        framework.observe(on.stop_action, self._on_stop_action)
        framework.observe(on.client_config_action, self._on_client_config_action)
        framework.observe(on.push_action, self._on_push_action)
        framework.observe(on.bundle_images_action, self._on_bundle_images_action)
        framework.observe(on.images_action, self._on_images_action)
        framework.observe(on.rmi_action, self._on_rmi_action)
        framework.observe(on.garbage_collect_action, self._on_garbage_collect_action)
        framework.observe(on.disk_usage_action, self._on_disk_usage_action)
        framework.observe(on.apply_retention_action, self._on_apply_retention_action)
        framework.observe(on.scheduled_maintenance, self._on_scheduled_maintenance)

    def _templates_cache(self) -> Path | None:
        """Where compiled templates are kept between hooks; None if it cannot be made."""
        cache = self.charm_dir / ".templates-cache"
        try:
            cache.mkdir(mode=0o700, exist_ok=True)
        except OSError:
            return None
        return cache

    def make_machine(self) -> Machine:
        """The one seam to apt and systemd; the tests override only this."""
        return UbuntuMachine()

    @functools.cached_property
    def desired(self) -> RegistryPlan | ops.StatusBase:
        """What the registry should be, or the status saying why that is not known.

        When it is not known, nothing is applied: the registry keeps serving
        what it had. Read-only while a maintenance lease holds.
        """
        return self._plan(maintenance=self._lease is not None)

    @functools.cached_property
    def _lease(self) -> Lease | None:
        """The leader's maintenance lease on shared storage while it holds; None otherwise."""
        lease = peer.maintenance_lease(self)
        return lease if lease and lease.active(time.time()) else None

    @functools.cached_property
    def _config(self) -> CharmConfig | ops.BlockedStatus:
        """The validated options, or the status naming the ones at fault."""
        try:
            return self.load_config(
                CharmConfig, secrets=self._config_secrets(), checked_tls=self._checked_tls
            )
        except InvalidConfigError as e:
            return ops.BlockedStatus(f"Invalid charm config: {e}")

    def _plan(self, *, maintenance: bool = False) -> RegistryPlan | ops.StatusBase:
        """The registry's plan; `maintenance` makes it read-only for garbage collection."""
        config = self._config
        if isinstance(config, ops.StatusBase):
            return config
        http_secret = peer.http_secret(self)
        if http_secret is None:
            return ops.WaitingStatus("Waiting for the leader to share the registry's http secret")
        relation_tls = self.relation_tls
        if isinstance(relation_tls, ops.BlockedStatus) and config.tls is None:
            return relation_tls
        if (
            isinstance(relation_tls, ops.WaitingStatus)
            and config.tls is None
            and config.http_host.startswith("https:")
        ):
            return relation_tls
        try:
            plan = self._plan_registry(config, http_secret, relation_tls, maintenance=maintenance)
        except PlanError as e:
            return ops.BlockedStatus(str(e))
        if problems := self.registry.path_problems(plan):
            return ops.BlockedStatus(f"Invalid charm config: {'; '.join(problems)}")
        return plan

    @property
    def _valid_config(self) -> CharmConfig:
        """The validated options, where the plan is known: it is built from them."""
        config = self._config
        assert isinstance(config, CharmConfig), "the plan is built from valid options"
        return config

    def _config_secrets(self) -> dict[str, dict[str, str] | None]:
        """The content of each Juju secret the options name; None where we may not read it."""
        contents: dict[str, dict[str, str] | None] = {}
        for uri in secret_uris(self.config):
            try:
                contents[uri] = self.model.get_secret(id=uri).get_content(refresh=True)
            except (ops.SecretNotFoundError, ops.ModelError):
                contents[uri] = None
        return contents

    @functools.cached_property
    def relation_credentials(self) -> dict[int, RelationCredential]:
        """Each docker-registry relation's pull-only credential (the leader makes them)."""
        return docker_registry.credentials(self)

    def _plan_registry(
        self,
        config: CharmConfig,
        http_secret: str,
        relation_tls: ServerTLS | ops.StatusBase | None,
        *,
        maintenance: bool,
    ) -> RegistryPlan:
        access = config.access(self.relation_credentials, self.registry.charm_password())
        return plan_registry(
            PlanInputs(
                config,
                templates=self.templates,
                root=self.registry.machine.root,
                listen_host=self.registry.machine.listen_host,
                realm=self.app.name,
                http_secret=http_secret,
                unit_address=self._unit_address(),
                primary_address=self.units[0].address,
                proxy_addresses=tuple(website.proxy_addresses(self)),
                relation_tls=relation_tls if isinstance(relation_tls, ServerTLS) else None,
                maintenance=maintenance,
                client_auth=config.tls_client_auth == "on"
                or (config.tls_client_auth == "" and self._stored.established_client_auth),
                access=access,
                password_hashes=self.registry.password_hashes(access),
                cos_agent=cos_agent.related(self),
            )
        )

    @functools.cached_property
    def relation_tls(self) -> ServerTLS | ops.StatusBase | None:
        """The certificate from cert-provider, or why there is none to use."""
        return self.cert_provider.server_tls(self._checked_tls)

    @property
    def _checked_tls(self) -> Checked:
        """TLS material already checked in an earlier hook, by fingerprint."""
        return {
            name: (entry[0], entry[1], entry[2], tuple(entry[3]))
            for name, entry in self._stored.checked_tls.items()
            if len(entry) == 4  # anything else: check again
        }

    def _remember_checked(self, tls: ServerTLS | None) -> None:
        """Keep the applied material's fingerprint, so later hooks need not parse it."""
        checked = {}
        if tls:
            start, until, expires, names = tls.checked
            checked = {tls.fingerprint: [start, until, expires, list(names)]}
        if checked != dict(self._stored.checked_tls):
            self._stored.checked_tls = checked

    @functools.cached_property
    def units(self) -> list[peer.UnitAddress]:
        """This application's units with their addresses, oldest first."""
        return peer.unit_addresses(self, self._unit_address())

    @functools.cached_property
    def website_units(self) -> list[peer.UnitAddress]:
        """This application's units with their `website` addresses, oldest first."""
        return peer.unit_addresses(
            self, self._ingress_address(website.ENDPOINT), shared_key=peer.WEBSITE_ADDRESS_KEY
        )

    def _unit_address(self) -> str:
        """The address clients of the docker-registry endpoint reach this unit at."""
        return self._ingress_address(docker_registry.ENDPOINT)

    def _ingress_address(self, endpoint: str) -> str:
        """This unit's ingress address on `endpoint`'s binding."""
        binding = self.model.get_binding(endpoint)
        address = binding.network.ingress_address if binding else None
        return str(address) if address else socket.getfqdn()

    def _certificate_request(self) -> cert_provider.CertificateRequest:
        """Our server certificate names every address and name clients may use."""
        own = self._unit_address()
        names = {own, socket.gethostname(), socket.getfqdn()}
        for endpoint in (docker_registry.ENDPOINT, website.ENDPOINT):
            binding = self.model.get_binding(endpoint)
            if binding is not None:
                names.update(str(a) for a in binding.network.ingress_addresses)
        http_host = str(self.config.get("http-host") or "")
        if is_absolute_url(http_host):
            names.add(urlsplit(http_host).hostname or "")
        names.update(website.proxy_addresses(self))
        return cert_provider.CertificateRequest(
            common_name=own, sans=tuple(sorted(n for n in names if n))
        )

    def _on_install(self, event: ops.EventBase) -> None:
        """Install (or refresh): the packages, then take over what the established charm left.

        The registry's version changes only here, so only here is it read.
        """
        self.unit.status = ops.MaintenanceStatus("Installing docker-registry and skopeo")
        config = self._config
        if isinstance(config, CharmConfig):
            # An air-gapped unit installs even the registry from install_sources.
            apply_sources(self._package_plan(config))
        self._stored.packages_fingerprint = ""  # extra_packages: again, at each refresh
        self.registry.install()
        if version := self.registry.version():
            self.unit.set_workload_version(version)
        takeover = established.take_over(
            self.registry.machine,
            container=str(self.config.get("registry-name") or "registry"),
            image=str(self.config.get("registry-image") or "registry:2"),
        )
        if takeover.client_auth:
            logger.info("the established charm required client certificates: kept")
            self._stored.established_client_auth = True
        self._reconcile(event)

    def _on_storage_attached(self, event: ops.StorageAttachedEvent) -> None:
        """Images go to the attached storage (mounted at the data folder): the registry's."""
        if self.registry.version() is None:
            return  # attached at deploy, before install, which hands it over
        established.hand_over(self.registry.machine)
        self._reconcile(event)

    def _on_storage_detaching(self, _: ops.StorageDetachingEvent) -> None:
        """Let Juju unmount the storage; its images stay on it (nothing is deleted)."""
        self._stopped_for = STOPPED_FOR_STORAGE
        self.registry.stop()

    def _reconcile(self, event: ops.EventBase | None = None) -> None:
        """Bring the unit to the desired state; a no-op when it is there already."""
        peer.share_website_address(self, self._ingress_address(website.ENDPOINT))
        config = self._config
        if isinstance(config, CharmConfig):
            self._apply_packages(config)
        desired = self.desired
        self._register_checks(config, desired)
        if not isinstance(desired, RegistryPlan):
            return
        self.unit.set_ports(*desired.ports)
        docker_registry.publish(self, desired, self.relation_credentials)
        website.publish(
            self,
            port=desired.port,
            units=self.website_units,
            tls=desired.tls is not None,
            shared_storage=desired.data_dir is None,
        )
        self.cert_provider.publish_legacy_request()
        if desired.observability:
            cos_agent.publish(self, desired.observability)
        if self._stored.stopped_by_operator:
            self._follow_lease(desired, read_only=True)  # stopped: it takes no push either
            return
        self._port_held = self.registry.port_held_by_another(desired)
        if self.registry.apply(desired):
            self.registry.wait_until_answering(desired)
        self._stored.exporter_problem = self.registry.exporter_problem
        # Read-only once applied: whatever serves now runs the read-only configuration.
        self._follow_lease(desired, read_only=desired.read_only)
        self.registry.write_health_metrics(desired)
        self._remember_checked(desired.tls)
        # Kept across hooks: actions' hooks do not reconcile, and must not hide it.
        self._stored.maintenance_problem = (
            self.registry.apply_maintenance(
                plan_maintenance(
                    self._valid_config.maintenance_schedule,
                    runs_here=desired.data_dir is not None or self.unit.is_leader(),
                    unit_name=self.unit.name,
                    root=self.registry.machine.root,
                    templates=self.templates,
                )
            )
            or ""
        )
        # Juju runs upgrade-charm when a resource is attached, even the same file again.
        self._import_images_resource(desired, attached=isinstance(event, ops.UpgradeCharmEvent))

    def _import_images_resource(self, plan: RegistryPlan, *, attached: bool) -> None:
        """Import the `images` resource in the background when its content is new."""
        from actions import resource_import

        try:
            path = self.model.resources.fetch(resource_import.RESOURCE)
        except (ops.ModelError, NameError):
            return  # not attached
        resource_import.import_if_new(
            self.registry.machine,
            path,
            namespace=str(self.config.get("images-namespace") or ""),
            netloc=plan.netloc,
            access=lambda: self._local_access(plan),
            attached=attached,
        )

    @functools.cached_property
    def import_progress(self) -> resource_import.Progress | None:
        """How the images resource's last import went (or goes), for the status."""
        from actions import resource_import

        return resource_import.last_import(self.registry.machine)

    def _package_plan(self, config: CharmConfig) -> PackagePlan:
        return plan_packages(
            config.apt_sources,
            config.extra_package_names,
            hold=config.package_status == "hold",
            root=self.registry.machine.root,
        )

    def _apply_packages(self, config: CharmConfig) -> None:
        """layer:apt's options: sources and keys, extra packages when they change, holds."""
        plan = self._package_plan(config)
        apply_sources(plan)
        if plan.fingerprint != self._stored.packages_fingerprint:
            self._stored.package_problem = install_extra(self.registry.machine, plan.extra) or ""
            self._stored.packages_fingerprint = plan.fingerprint
        desired = self.desired
        front = isinstance(desired, RegistryPlan) and desired.front is not None
        ours = (*PACKAGES, *(FRONT_PACKAGES if front else ()), *plan.extra)
        self._stored.held_packages = set_holds(
            self.registry.machine, ours if plan.hold else (), self._stored.held_packages
        )

    def _register_checks(
        self, config: CharmConfig | ops.StatusBase, desired: RegistryPlan | ops.StatusBase
    ) -> None:
        """Give the nrpe subordinate our Nagios checks; remove them when it goes.

        While the plan is not known the files stay as they are: the registry
        keeps serving what they check.
        """
        relation = nrpe.related(self)
        if relation is None:
            files = {}
        elif isinstance(desired, RegistryPlan) and isinstance(config, CharmConfig):
            remote_context, remote_hostname = nrpe.remote_names(relation)
            site = nagios_site(
                config.nagios_context,
                config.nagios_servicegroups,
                remote_context=remote_context,
                remote_hostname=remote_hostname,
            )
            files = nagios_files(
                registry_checks(desired),
                site,
                unit_name=self.unit.name,
                root=self.registry.machine.root,
            )
        else:
            return
        written, changed = apply_nagios_files(files, map(Path, self._stored.nagios_files))
        self._stored.nagios_files = sorted(map(str, written))
        if (
            relation
            and written
            and (changed or nrpe.TIMESTAMP_KEY not in relation.data[self.unit])
        ):
            nrpe.announce(self, relation)

    def _on_stop(self, _: ops.EventBase) -> None:
        """The unit is going away: stop serving and the maintenance timer, keep the images."""
        self._stopped_for = STOPPED_FOR_JUJU
        self.registry.apply_maintenance(None)
        self.registry.stop()
        self.registry.stop_exporter()

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

    # Each action imports its module when it runs: hooks need none of them.

    def _on_client_config_action(self, event: ops.ActionEvent) -> None:
        from actions import client_config

        desired = self.desired
        if not isinstance(desired, RegistryPlan):
            event.fail(f"Cannot tell clients how to reach the registry: {desired.message}")
            return
        try:
            results = client_config.render(
                desired,
                event.load_params(client_config.ClientConfigParams),
                templates=self.templates,
            )
        except client_config.ClientConfigError as e:
            event.fail(str(e))
            return
        event.set_results(results)

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
        hosts = (plan.unit_address, *plan.proxy_addresses, "127.0.0.1", "localhost")
        return (
            plan.netloc,
            *(f"[{host}]:{plan.port}" if ":" in host else f"{host}:{plan.port}" for host in hosts),
        )

    def _local_access(self, plan: RegistryPlan) -> LocalAccess:
        """How the actions reach this unit's registry: on loopback, TLS verified."""
        from workload.registry_api import local_access

        return local_access(plan, self.registry.machine.listen_host)

    @staticmethod
    def _report(event: ops.ActionEvent, results: dict, failure: str | None) -> None:
        """Set an action's results, then fail it if something went wrong."""
        event.set_results(results)
        if failure:
            event.fail(failure)

    def _on_push_action(self, event: ops.ActionEvent) -> None:
        from actions import push

        plan = self._serving(event)
        if plan is None:
            return
        params = event.load_params(push.PushParams)
        try:
            push.check_temp_dir(params.temp_dir)
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
            self._local_access(plan),
            source,
            netloc=plan.netloc,
            parallel=params.parallel,
            log=event.log,
            temp_dir=params.temp_dir,
            progress=push.status_after_a_minute(self._show_progress),
        )
        results, failure = push.action_results(outcomes)
        usage = self.registry.storage_usage(plan)
        if failure and usage and usage.full:
            # The registry answers a bare HTTP 500 when its disk is full.
            results["storage"] = f"full: {usage}"
            failure = f"The registry's storage is full ({usage}); {FREE_SPACE}. {failure}"
        self._report(event, results, failure)

    def _show_progress(self, message: str) -> None:
        """A long action's progress in the unit's status (status-set works mid-action).

        collect-status sets the unit's own status again when the action ends.
        """
        self.unit.status = ops.MaintenanceStatus(message)

    def _on_bundle_images_action(self, event: ops.ActionEvent) -> None:
        """What a bundle holds and where push would put each image; reads only."""
        from actions import push

        desired = self.desired
        params = event.load_params(push.BundleImagesParams)
        try:
            copies = push.plan_copies(params.path, namespace=params.namespace)
        except push.InvalidPushError as e:
            event.fail(str(e))
            return
        netloc = desired.netloc if isinstance(desired, RegistryPlan) else None
        self._report(event, *push.listing_results(copies, netloc))

    def _on_images_action(self, event: ops.ActionEvent) -> None:
        from actions import images
        from workload.registry_api import RegistryAPIError, RegistryClient

        plan = self._serving(event)
        if plan is None:
            return
        params = event.load_params(images.ImagesParams)
        client = RegistryClient(self._local_access(plan))
        try:
            listing = images.list_images(
                client,
                repository=params.repository,
                digests=params.digests,
                own_netlocs=self._own_netlocs(plan),
                offset=params.offset,
                limit=params.limit,
            )
        except (images.ImagesError, RegistryAPIError) as e:
            event.fail(f"Cannot list images: {e}")
            return
        finally:
            client.close()
        root = self.registry.machine.root
        event.set_results(images.listing_results(listing, plan.netloc, root=root))

    def _on_rmi_action(self, event: ops.ActionEvent) -> None:
        from actions import images
        from workload.registry_api import RegistryClient

        plan = self._serving(event)
        if plan is None:
            return
        client = RegistryClient(self._local_access(plan))
        try:
            deletions = images.delete_images(
                client,
                event.load_params(images.RmiParams).image.split(),
                own_netlocs=self._own_netlocs(plan),
                log=event.log,
            )
        finally:
            client.close()
        root = self.registry.machine.root
        self._report(event, *images.delete_results(deletions, root=root))

    def _on_garbage_collect_action(self, event: ops.ActionEvent) -> None:
        from actions.garbage_collect import (
            GarbageCollectError,
            GarbageCollectParams,
            collect_garbage,
            multi_arch_tags,
        )
        from workload.registry_api import RegistryAPIError, RegistryClient

        normal, read_only = self.desired, self._plan(maintenance=True)
        if not isinstance(normal, RegistryPlan):
            event.fail(f"The registry is not configured: {normal.message}")
            return
        assert isinstance(read_only, RegistryPlan), "same inputs as the normal plan"
        delete_untagged = event.load_params(GarbageCollectParams).delete_untagged
        if delete_untagged and not self._stored.stopped_by_operator:
            try:
                multi_arch = multi_arch_tags(RegistryClient(self._local_access(normal)))
            except RegistryAPIError as e:
                event.fail(f"Cannot check for multi-arch images: {e}")
                return
            if multi_arch:
                event.fail(
                    "delete-untagged would break multi-arch images (Distribution 2.8 deletes "
                    f"the platform images their index names): {', '.join(multi_arch[:5])}; "
                    "delete untagged manifests with retention-policy untagged-days and "
                    "apply-retention instead"
                )
                return
        try:
            collected = collect_garbage(
                self.registry,
                normal,
                read_only,
                delete_untagged=delete_untagged,
                serving=not self._stored.stopped_by_operator,
                log=event.log,
            )
        except GarbageCollectError as e:
            event.fail(str(e))
            return
        event.set_results(collected.results())

    def _on_disk_usage_action(self, event: ops.ActionEvent) -> None:
        from actions import disk_usage
        from workload.registry_api import RegistryAPIError, RegistryClient

        plan = self._serving(event)
        if plan is None:
            return
        params = event.load_params(disk_usage.DiskUsageParams)
        try:
            usage = disk_usage.measure(
                RegistryClient(self._local_access(plan)), plan.data_dir, event.log
            )
        except RegistryAPIError as e:
            event.fail(f"Cannot read the registry: {e}")
            return
        event.set_results(disk_usage.results(usage, params.top))

    def _on_apply_retention_action(self, event: ops.ActionEvent) -> None:
        from actions import retention
        from workload.registry_api import RegistryAPIError, RegistryClient

        plan = self._serving(event)
        if plan is None:
            return
        dry_run = event.load_params(retention.ApplyRetentionParams).dry_run
        client = RegistryClient(self._local_access(plan))
        rules = self._valid_config.retention
        try:
            planned = retention.plan_retention(client, plan, rules, time.time(), event.log)
            failures = [] if dry_run else retention.apply_retention(client, planned, event.log)
        except (retention.RetentionError, RegistryAPIError) as e:
            event.fail(f"Cannot apply the retention policy: {e}")
            return
        failure = f"{len(failures)} deletions failed" if failures else None
        self._report(
            event, retention.results(planned, dry_run=dry_run, failures=failures), failure
        )

    def _on_scheduled_maintenance(self, event: ScheduledMaintenanceEvent) -> None:
        """The timer's window: retention policy, then garbage collection (read-only).

        On shared storage the leader takes a lease instead, and collects once
        every unit serves read-only (in this hook if it is alone, else in the
        peer relation-changed hook of the last unit to say so).
        """
        desired = self.desired
        if isinstance(desired, RegistryPlan) and desired.data_dir is None:
            if not self.unit.is_leader():
                logger.info("scheduled maintenance: shared storage, the leader runs it")
            elif self._lease is not None:
                logger.info("scheduled maintenance: run %s is under way", self._lease.run)
            elif self._stored.stopped_by_operator:
                self._record_maintenance(self._failed_run("the registry is stopped"))
            else:
                self._take_lease(event)
            return
        self._record_maintenance(self._maintain())

    def _failed_run(self, why: str) -> MaintenanceRun:
        return MaintenanceRun(time.time(), False, None, 0, why)

    def _record_maintenance(self, run: MaintenanceRun) -> None:
        """Keep the run for the status, write it for the collector, log it."""
        self._stored.last_maintenance = dataclasses.asdict(run)
        write_metrics(self.registry.machine.root, run)
        logger.info("scheduled maintenance: %s", run.detail)

    def _take_lease(self, event: ops.EventBase) -> None:
        """Every unit read-only for one run on shared storage, for at most the window."""
        window = self._valid_config.maintenance_window * 60
        lease = Lease(uuid.uuid4().hex[:12], self.unit.name, time.time() + window)
        if not peer.hold_lease(self, lease):
            self._record_maintenance(self._failed_run("no peer relation to hold the lease in"))
            return
        logger.info("scheduled maintenance: lease %s, every unit read-only", lease.run)
        for cached in ("desired", "_lease"):
            self.__dict__.pop(cached, None)
        self._reconcile(event)

    def _follow_lease(self, desired: RegistryPlan, *, read_only: bool) -> None:
        """Take the lease protocol's next step (`state.maintenance.lease_step`)."""
        now = time.time()
        step = lease_step(
            peer.maintenance_lease(self),
            now,
            unit=self.unit.name,
            leader=self.unit.is_leader(),
            read_only=read_only,
            acknowledged_here=peer.acknowledged_here(self),
            acknowledged=peer.acknowledgements(self),
        )
        if step.arm:
            why = arm_lease_expiry(self.registry.machine, self.unit.name, step.arm, now)
            if why:
                logger.warning(
                    "maintenance lease %s: %s; update-status ends it", step.arm.run, why
                )
        peer.acknowledge(self, step.acknowledge)
        if step.let_go:
            peer.hold_lease(self, None)
        if step.failure:
            self._record_maintenance(self._failed_run(step.failure))
        if step.collect:
            self._collect_in_lease(desired, step.collect)

    def _collect_in_lease(self, read_only: RegistryPlan, lease: Lease) -> None:
        """Collect garbage on shared storage while every unit is read-only; then let go."""
        from actions.garbage_collect import GarbageCollectError, run_garbage_collect

        timeout = lease.collection_timeout(time.time())
        try:
            if timeout <= 0:
                raise GarbageCollectError("the lease ended before every unit was read-only")
            logger.info("scheduled maintenance: collecting garbage (lease %s)", lease.run)
            summary = run_garbage_collect(
                self.registry, read_only.config_path, delete_untagged=False, timeout=timeout
            )
            detail = f"garbage collected on shared storage ({summary or 'no summary'})"
            if self._valid_config.retention:
                detail += "; retention-policy not applied: it needs filesystem storage"
            run = MaintenanceRun(time.time(), True, None, 0, detail)
        except GarbageCollectError as e:
            run = self._failed_run(str(e))
        self._record_maintenance(run)
        peer.hold_lease(self, None)
        peer.acknowledge(self, "")
        for cached in ("desired", "_lease"):
            self.__dict__.pop(cached, None)
        normal = self.desired
        if isinstance(normal, RegistryPlan) and self.registry.apply(normal):
            self.registry.wait_until_answering(normal)

    def _maintain(self) -> MaintenanceRun:
        """Apply the retention policy, then collect garbage; what happened (filesystem storage)."""
        from actions import retention
        from actions.garbage_collect import GarbageCollectError, collect_garbage
        from workload.registry_api import RegistryAPIError, RegistryClient

        normal, read_only = self.desired, self._plan(maintenance=True)
        if not isinstance(normal, RegistryPlan) or not isinstance(read_only, RegistryPlan):
            return self._failed_run("the registry is not configured")
        if self._stored.stopped_by_operator:
            return self._failed_run("the registry is stopped")
        deleted = 0
        try:
            rules = self._valid_config.retention
            if rules:
                client = RegistryClient(self._local_access(normal))
                planned = retention.plan_retention(client, normal, rules, time.time(), logger.info)
                failures = retention.apply_retention(client, planned, logger.info)
                deleted = len(planned.deletions) - len(failures)
                if failures:
                    raise retention.RetentionError(f"{len(failures)} deletions failed")
            collected = collect_garbage(
                self.registry,
                normal,
                read_only,
                delete_untagged=False,
                serving=True,
                log=logger.info,
                timeout=self._valid_config.maintenance_window * 60,
            )
        except (retention.RetentionError, RegistryAPIError, GarbageCollectError) as e:
            return MaintenanceRun(time.time(), False, None, deleted, str(e))
        freed = collected.bytes_freed
        detail = f"{deleted} manifests deleted, " + (
            "freed unknown (object storage)" if freed is None else f"{freed} bytes freed"
        )
        return MaintenanceRun(time.time(), True, freed, deleted, detail)

    def _last_maintenance(self) -> str:
        """The last scheduled maintenance, for the status; empty if none ran."""
        last = dict(self._stored.last_maintenance)
        if not last:
            return ""
        when = datetime.datetime.fromtimestamp(last["finished"], datetime.timezone.utc)
        outcome = last["detail"] if last["ok"] else f"failed: {last['detail']}"
        return f" Last maintenance {when:%Y-%m-%d %H:%M} UTC: {outcome}."

    def _serving_status(self, desired: RegistryPlan) -> ops.StatusBase:
        """Active while the main registry answers, naming mirrors whose cache does not."""
        # Running first: another process (the established charm's container)
        # may answer on the port while ours cannot bind it.
        silent = self.registry.not_answering(desired) if self.registry.running() else [SERVICE]
        if SERVICE in silent:
            if self.registry.storage_failing(desired):
                return ops.BlockedStatus(
                    f"Registry storage fails its health check; see journalctl -u {SERVICE}"
                )
            cache = (
                f" (a pull-through cache of {desired.cache_url} exits while it cannot reach it)"
                if desired.cache_url
                else ""
            )
            return ops.BlockedStatus(
                f"Registry is not answering; see journalctl -u {SERVICE}{cache}"
            )
        usage = self.registry.storage_usage(desired)
        if usage and usage.full:
            return ops.BlockedStatus(f"Storage full, pushes fail: {usage}; {FREE_SPACE}")
        how = f"{desired.scheme}, proxied" if desired.proxied else desired.scheme
        if desired.tls is None and self.model.relations[docker_registry.ENDPOINT]:
            # The containerd charm gives nodes a scheme-less endpoint: https.
            how += "; containerd nodes need TLS"
        ready = f"Ready at {desired.netloc} ({how})."
        if desired.tls and desired.tls.not_after and desired.tls.expires_soon():
            ready += f" The certificate expires on {desired.tls.not_after:%Y-%m-%d}."
        if usage and usage.filling:
            ready += f" Storage {usage}."
        if self._lease:
            until = datetime.datetime.fromtimestamp(self._lease.expires, datetime.timezone.utc)
            ready += (
                f" Read-only for maintenance by {self._lease.holder}, at the latest until"
                f" {until:%H:%M} UTC."
            )
        ready += self._last_maintenance()
        if self.import_progress and self.import_progress.state != "running":
            ready += f" {self.import_progress.status_text()}."
        down = [m for m in desired.front.mirrors if m.service in silent] if desired.front else []
        if not down:
            return ops.ActiveStatus(ready)
        hosts = ", ".join(m.host for m in down)
        journal = down[0].service if len(down) == 1 else f"'{SERVICE_TEMPLATE}*'"
        return ops.ActiveStatus(
            f"{ready} Mirror of {hosts} not answering (upstream unreachable?);"
            f" see journalctl -u {journal}"
        )

    def _on_collect_status(self, event: ops.CollectStatusEvent) -> None:
        desired = self.desired
        for problem in (self._stored.package_problem, self._stored.exporter_problem):
            if problem:
                event.add_status(ops.BlockedStatus(problem))
        if self._stopped_for:
            event.add_status(ops.MaintenanceStatus(self._stopped_for))
        elif not isinstance(desired, RegistryPlan):
            event.add_status(desired)
        elif self._stored.stopped_by_operator:
            event.add_status(ops.BlockedStatus(STOPPED_BY_OPERATOR))
        elif self._port_held:
            event.add_status(
                ops.BlockedStatus(
                    f"Port {desired.port} is held by another process; the registry cannot serve"
                )
            )
        else:
            event.add_status(self._serving_status(desired))
        if self._stored.maintenance_problem:
            event.add_status(
                ops.BlockedStatus(f"Invalid charm config: {self._stored.maintenance_problem}")
            )
        if self.import_progress and self.import_progress.state == "running":
            event.add_status(ops.MaintenanceStatus(self.import_progress.status_text()))
        relation_tls = self.relation_tls
        if isinstance(relation_tls, ops.WaitingStatus) and (
            isinstance(desired, RegistryPlan) and desired.tls is None
        ):
            event.add_status(relation_tls)


if __name__ == "__main__":  # pragma: nocover
    ops.main(DockerRegistryCharm)
