"""Registry plans rendered straight from options, for tests of what `state/` decides."""

from __future__ import annotations

from pathlib import Path

from state.access import RelationCredential
from state.config import CharmConfig
from state.plan import PlanInputs, RegistryPlan, plan_registry, template_environment

TEMPLATES = template_environment(Path(__file__).resolve().parents[2])
UNIT_ROOT = Path("/unit-root")
CHARM_PASSWORD = "charm-pw"


def plan(
    config: CharmConfig | None = None,
    *,
    root: Path = UNIT_ROOT,
    address: str = "10.0.0.1",
    listen_host: str = "",
    proxy_addresses: tuple[str, ...] = (),
    client_auth: bool = False,
    relations: dict[int, RelationCredential] | None = None,
    cos_agent: bool = False,
    **options: object,
) -> RegistryPlan:
    """The plan of a unit at `address` for `config` (or the options given by field name).

    Password hashes are placeholders: bcrypt is the workload's (tests of it run it).
    """
    config = config or CharmConfig(**options)  # type: ignore[arg-type]
    access = config.access(relations or {}, CHARM_PASSWORD)
    return plan_registry(
        PlanInputs(
            config,
            templates=TEMPLATES,
            root=root,
            listen_host=listen_host,
            realm="docker-registry",
            http_secret="s3cr3t",
            unit_address=address,
            primary_address=address,
            proxy_addresses=proxy_addresses,
            client_auth=client_auth,
            access=access,
            password_hashes={u.name: f"$2b$05$hash-of-{u.name}" for u in access.users}
            if access
            else {},
            cos_agent=cos_agent,
        )
    )


DROPIN_DIRECTIVES = (
    "[Service]",
    "Restart=on-failure",
    "RestartSec=5s",
    "KillSignal=SIGTERM",
    "TimeoutStopSec=90s",
    'Environment="GOGC=400"',
    "AmbientCapabilities=CAP_NET_BIND_SERVICE",
)
"""The registry's drop-in, in order, with no proxy and no cache-mirrors."""


def directives(text: str) -> list[str]:
    """The lines of a unit file or environment file that are neither blank nor comments."""
    return [line for line in text.splitlines() if line and not line.startswith("#")]
