"""What a hook costs and what the status says about the registry's health and its disk."""

from __future__ import annotations

import dataclasses
import http.server
import re
import shutil
import threading
from pathlib import Path

import pytest
from ops import testing

from charm_context import tls_config, unit_state, with_config
from state import tls as state_tls
from state.plan import RegistryPlan
from support import pki
from support.wait import free_port

SERVICE = "docker-registry"


def ready(port: int, scheme: str = "http") -> testing.ActiveStatus:
    return testing.ActiveStatus(f"Ready at 127.0.0.1:{port} ({scheme}).")


def test_the_probe_never_goes_through_a_proxy(ctx, port, monkeypatch):
    state = ctx.run(ctx.on.install(), unit_state(port))
    dead = f"http://127.0.0.1:{free_port()}"
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.setenv(name, dead)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    state = ctx.run(ctx.on.update_status(), state)
    assert state.unit_status == ready(port)


def test_the_probe_over_tls_never_goes_through_a_proxy(ctx, port, monkeypatch):
    config = tls_config(pki.make_ca(), "127.0.0.1")
    state = ctx.run(ctx.on.config_changed(), unit_state(port, config=config))
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{free_port()}")
    monkeypatch.delenv("no_proxy", raising=False)
    state = ctx.run(ctx.on.update_status(), state)
    assert state.unit_status == ready(port, "https")


def test_the_version_is_read_on_install_and_upgrade_only(ctx, port):
    state = ctx.run(ctx.on.install(), unit_state(port))
    assert state.workload_version == "2.8.2"
    state = ctx.run(ctx.on.update_status(), dataclasses.replace(state, workload_version=""))
    assert state.workload_version == "", "update-status does not run docker-registry --version"
    state = ctx.run(ctx.on.upgrade_charm(), state)
    assert state.workload_version == "2.8.2"


def test_the_tls_library_is_built_only_with_cert_provider(ctx, port):
    state = ctx.run(ctx.on.install(), unit_state(port))
    with ctx(ctx.on.update_status(), state) as manager:
        assert manager.charm.cert_provider.current is None
        manager.run()
    related = dataclasses.replace(
        state, relations={*state.relations, testing.Relation("cert-provider")}
    )
    with ctx(ctx.on.update_status(), related) as manager:
        assert manager.charm.cert_provider.current is not None
        manager.run()


def test_tls_material_already_applied_is_not_parsed_again(ctx, port, monkeypatch):
    config = tls_config(pki.make_ca(), "127.0.0.1")
    state = ctx.run(ctx.on.config_changed(), unit_state(port, config=config))
    assert state.unit_status == ready(port, "https")

    def parse(pem: str):
        raise AssertionError("the applied key was parsed again")

    monkeypatch.setattr(state_tls, "load_private_key", parse)
    state = ctx.run(ctx.on.update_status(), state)
    assert state.unit_status == ready(port, "https")
    # New material is checked in full.
    other = tls_config(pki.make_ca(), "127.0.0.1")
    with pytest.raises(testing.errors.UncaughtCharmError, match="parsed again"):
        ctx.run(ctx.on.config_changed(), with_config(state, tls_key_blob=other["tls-key-blob"]))


def test_remembered_tls_material_past_its_validity_is_checked_again(ctx, port):
    config = tls_config(pki.make_ca(), "127.0.0.1")
    state = ctx.run(ctx.on.config_changed(), unit_state(port, config=config))
    [stored] = [s for s in state.stored_states if s.owner_path == "LocalCharm"]
    (fingerprint,) = stored.content["checked_tls"]
    expired = {**stored.content, "checked_tls": {fingerprint: [0.0, 1.0, 1.0, []]}}
    state = dataclasses.replace(
        state, stored_states={dataclasses.replace(stored, content=expired)}
    )
    state = ctx.run(ctx.on.update_status(), state)
    # Checked in full again (the certificate is valid), and remembered anew.
    assert state.unit_status == ready(port, "https")
    [stored] = [s for s in state.stored_states if s.owner_path == "LocalCharm"]
    assert stored.content["checked_tls"][fingerprint][1] > 1.0


def fill(path: Path, megabytes: int) -> None:
    with (path / "filler").open("ab") as f:
        f.write(b"\0" * (megabytes << 20))


def test_storage_filling_up_then_full_shows_in_the_status(ctx, port, small_disk):
    state = ctx.run(ctx.on.install(), unit_state(port))
    assert state.unit_status == ready(port)
    fill(small_disk, 29)
    state = ctx.run(ctx.on.update_status(), state)
    assert isinstance(state.unit_status, testing.ActiveStatus)
    assert re.fullmatch(
        rf"Ready at 127\.0\.0\.1:{port} \(http\)\. Storage {small_disk} 9\d% used, 3 MB free\.",
        state.unit_status.message,
    )
    with (small_disk / "filler").open("ab") as f:
        f.write(b"\0" * (shutil.disk_usage(small_disk).free - 100_000))
    state = ctx.run(ctx.on.update_status(), state)
    assert state.unit_status == testing.BlockedStatus(
        f"Storage full, pushes fail: {small_disk} 99% used, 0 MB free; "
        "free space with the rmi and garbage-collect actions"
    )
    (small_disk / "filler").unlink()
    state = ctx.run(ctx.on.update_status(), state)
    assert state.unit_status == ready(port)


class Unhealthy(http.server.BaseHTTPRequestHandler):
    """Answers as the registry does once its storage driver failed its health check."""

    BODY = (
        b'{"errors":[{"code":"UNAVAILABLE","message":"service unavailable",'
        b'"detail":"health check failed: please see /debug/health"}]}'
    )

    def do_GET(self):
        self.send_response(503)
        self.send_header("Content-Length", str(len(self.BODY)))
        self.end_headers()
        self.wfile.write(self.BODY)

    def log_message(self, format, *args):
        pass


def test_a_storage_driver_failing_its_health_check_is_told_apart(ctx, machine, port):
    state = ctx.run(ctx.on.install(), unit_state(port))
    machine.stop(SERVICE)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Unhealthy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with ctx(ctx.on.update_status(), state) as manager:
            plan = manager.charm.desired
            assert isinstance(plan, RegistryPlan)
            assert not manager.charm.registry.answers(plan)
            assert manager.charm.registry.storage_failing(plan)
    finally:
        server.shutdown()
        server.server_close()
