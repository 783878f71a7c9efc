"""State transitions of the charm for each event, with a real registry process."""

from __future__ import annotations

import pwd
import stat

import bcrypt
import pytest
from ops import testing

from charm_context import tls_config, unit_state, with_config
from relations.peer import SECRET_ID_KEY, SECRET_LABEL
from support import pki

SERVICE = "docker-registry"


def config_file(machine):
    return machine.root / "etc/docker/registry/config.yml"


def ready(port: int, scheme: str = "http") -> testing.ActiveStatus:
    return testing.ActiveStatus(f"Ready at 127.0.0.1:{port} ({scheme}).")


def test_install_installs_packages_and_starts_the_registry(ctx, machine, port):
    state = ctx.run(ctx.on.install(), unit_state(port))
    assert machine.installed == ["docker-registry", "skopeo"]
    assert machine.launches[SERVICE] == 1
    assert state.unit_status == ready(port)
    assert state.workload_version == "2.8.2"
    assert state.opened_ports == {testing.TCPPort(port)}
    assert (machine.root / "srv/registry").is_dir()


@pytest.mark.parametrize("event", ["config_changed", "start", "upgrade_charm", "update_status"])
def test_nothing_restarts_when_nothing_changed(ctx, machine, port, event):
    state = ctx.run(ctx.on.install(), unit_state(port))
    before = config_file(machine).stat().st_mtime_ns
    state = ctx.run(getattr(ctx.on, event)(), state)
    assert machine.launches[SERVICE] == 1
    assert config_file(machine).stat().st_mtime_ns == before
    assert state.unit_status == ready(port)


def test_a_config_change_the_registry_reads_restarts_it_once(ctx, machine, port):
    state = ctx.run(ctx.on.install(), unit_state(port))
    state = ctx.run(ctx.on.config_changed(), with_config(state, log_level="debug"))
    assert machine.launches[SERVICE] == 2
    assert '"debug"' in config_file(machine).read_text()
    ctx.run(ctx.on.config_changed(), state)
    assert machine.launches[SERVICE] == 2


def test_metrics_open_the_debug_port(ctx, port):
    state = unit_state(port, config={"prometheus-metrics": True})
    debug_port = state.config["debug-port"]
    state = ctx.run(ctx.on.config_changed(), state)
    assert state.opened_ports == {testing.TCPPort(port), testing.TCPPort(int(debug_port))}


def test_files_holding_secrets_belong_to_the_service_user_only(ctx, machine, port):
    ca = pki.make_ca()
    config = {"auth-basic-password": "pw", **tls_config(ca, "127.0.0.1")}
    state = ctx.run(ctx.on.config_changed(), unit_state(port, config=config))
    assert state.unit_status == ready(port, "https")
    etc = machine.root / "etc/docker/registry"
    for name in ("config.yml", "htpasswd", "registry.key"):
        info = (etc / name).stat()
        assert stat.S_IMODE(info.st_mode) == 0o600, name
        assert info.st_uid == pwd.getpwnam("docker-registry").pw_uid, name
    for name in ("registry.crt", "ca.crt"):
        assert stat.S_IMODE((etc / name).stat().st_mode) == 0o644
    assert (etc / "ca.crt").read_bytes() == ca.cert_pem


def test_htpasswd_is_bcrypt_and_kept_while_the_password_is(ctx, machine, port):
    state = ctx.run(ctx.on.config_changed(), unit_state(port, config={"auth-basic-password": "a"}))
    assert state.unit_status == ready(port)
    htpasswd = machine.root / "etc/docker/registry/htpasswd"
    user, hashed = htpasswd.read_text().strip().split(":", 1)
    assert user == "admin"
    assert hashed.startswith("$2b$05$"), "cheap enough for the registry to check per request"
    assert bcrypt.checkpw(b"a", hashed.encode())
    state = ctx.run(ctx.on.config_changed(), state)
    assert machine.launches[SERVICE] == 1
    state = ctx.run(ctx.on.config_changed(), with_config(state, auth_basic_password="b"))
    assert machine.launches[SERVICE] == 2
    assert bcrypt.checkpw(b"b", htpasswd.read_text().strip().split(":", 1)[1].encode())
    ctx.run(ctx.on.config_changed(), with_config(state, auth_basic_password=""))
    assert not htpasswd.exists()
    assert machine.launches[SERVICE] == 3


def test_the_leader_makes_the_http_secret_and_shares_its_id(ctx, machine, port):
    state = ctx.run(ctx.on.leader_elected(), unit_state(port))
    secret = next(s for s in state.secrets if s.label == SECRET_LABEL)
    http_secret = secret.tracked_content["http-secret"]
    assert len(http_secret) >= 32
    peer = state.get_relations("peer")[0]
    assert peer.local_app_data[SECRET_ID_KEY] == secret.id
    assert f'secret: "{http_secret}"' in config_file(machine).read_text()
    # Re-running keeps the same secret.
    state = ctx.run(ctx.on.config_changed(), state)
    assert [s.tracked_content for s in state.secrets] == [{"http-secret": http_secret}]


def test_a_follower_waits_for_the_secret_then_uses_the_leaders(ctx, machine, port):
    state = ctx.run(ctx.on.config_changed(), unit_state(port, leader=False))
    assert state.unit_status == testing.WaitingStatus(
        "Waiting for the leader to share the registry's http secret"
    )
    assert machine.launches[SERVICE] == 0
    secret = testing.Secret({"http-secret": "shared-by-leader"}, owner="app", label=SECRET_LABEL)
    peer = testing.PeerRelation(
        "peer", local_app_data={SECRET_ID_KEY: secret.id}, peers_data={1: {}}
    )
    state = unit_state(port, leader=False, relations=[peer], secrets=[secret])
    state = ctx.run(ctx.on.relation_changed(peer, remote_unit=1), state)
    assert 'secret: "shared-by-leader"' in config_file(machine).read_text()
    assert state.unit_status == ready(port)


def test_stop_and_remove_stop_the_service_and_keep_the_images(ctx, machine, port):
    state = ctx.run(ctx.on.install(), unit_state(port))
    blob = machine.root / "srv/registry/docker/registry/v2/blobs/marker"
    blob.parent.mkdir(parents=True)
    blob.write_text("image data")
    state = ctx.run(ctx.on.stop(), state)
    assert not machine.running(SERVICE)
    ctx.run(ctx.on.remove(), state)
    assert blob.read_text() == "image data"


def test_update_status_restarts_a_dead_registry(ctx, machine, port):
    state = ctx.run(ctx.on.install(), unit_state(port))
    machine.kill(SERVICE)
    state = ctx.run(ctx.on.update_status(), state)
    assert machine.launches[SERVICE] == 2
    assert state.unit_status == ready(port)


def test_stop_and_start_actions(ctx, machine, port):
    state = ctx.run(ctx.on.install(), unit_state(port))
    state = ctx.run(ctx.on.action("stop"), state)
    assert ctx.action_results == {"outcome": "success", "raw": "stopped"}
    assert not machine.running(SERVICE)
    assert state.unit_status == testing.BlockedStatus(
        "Registry stopped by the stop action; run the start action to serve"
    )
    state = ctx.run(ctx.on.config_changed(), state)
    assert not machine.running(SERVICE), "a stopped registry stays stopped"
    state = ctx.run(ctx.on.action("start"), state)
    assert ctx.action_results == {"outcome": "success", "raw": "started"}
    assert machine.running(SERVICE)
    assert state.unit_status == ready(port)


def test_stop_also_stops_the_haproxy_serving_metrics_and_start_brings_it_back(ctx, machine, port):
    state = ctx.run(ctx.on.install(), unit_state(port, config={"prometheus-metrics": True}))
    assert machine.running("haproxy"), "it serves /metrics on debug-port"
    state = ctx.run(ctx.on.action("stop"), state)
    assert not machine.running("haproxy")
    assert not machine.running(SERVICE)
    ctx.run(ctx.on.action("start"), state)
    assert machine.running("haproxy")
    assert machine.running(SERVICE)


def test_start_action_fails_on_invalid_config(ctx, port):
    state = unit_state(port, config={"log-level": "loud"})
    with pytest.raises(
        testing.ActionFailed, match="Cannot start: Invalid charm config: log-level"
    ):
        ctx.run(ctx.on.action("start"), state)


def test_a_costlier_htpasswd_hash_is_replaced_once(ctx, machine, port):
    """A hash from the established charm (bcrypt cost 12) slows every request: rehash it."""
    htpasswd = machine.root / "etc/docker/registry/htpasswd"
    htpasswd.parent.mkdir(parents=True)
    htpasswd.write_text("admin:" + bcrypt.hashpw(b"pw", bcrypt.gensalt(12)).decode() + "\n")
    state = ctx.run(
        ctx.on.config_changed(), unit_state(port, config={"auth-basic-password": "pw"})
    )
    assert htpasswd.read_text().startswith("admin:$2b$05$")
    before = htpasswd.read_text()
    ctx.run(ctx.on.config_changed(), state)
    assert htpasswd.read_text() == before
    assert machine.launches[SERVICE] == 1
