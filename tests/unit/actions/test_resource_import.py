"""The images resource: when an import starts, and what the status says of it (Scenario)."""

from __future__ import annotations

import dataclasses
import json
import stat

from ops import testing

from actions import resource_import
from actions.resource_import import JOB, Progress
from charm_context import images_resource, unit_state, with_config

DIGEST = "sha256:" + "ab" * 32


def progress_folder(machine):
    return resource_import.state_dir(machine.root)


def test_the_status_shows_a_running_import_then_its_result(ctx, machine, port):
    state = ctx.run(ctx.on.install(), unit_state(port))
    ready = f"Ready at 127.0.0.1:{port} (http)."
    folder = progress_folder(machine)
    resource_import.write_progress(folder, Progress(DIGEST, "running", 12, 40))
    machine.start_job(JOB, ["sleep", "600"], {})  # stands for the job while it runs

    state = ctx.run(ctx.on.update_status(), state)
    assert state.unit_status == testing.MaintenanceStatus(
        f"Importing images 12/40 from the images resource ({DIGEST[:19]})"
    )

    resource_import.write_progress(folder, Progress(DIGEST, "done", 40, 40))
    machine.stop(JOB)
    state = ctx.run(ctx.on.update_status(), state)
    assert state.unit_status == testing.ActiveStatus(
        f"{ready} Imported 40 images from the images resource ({DIGEST[:19]})."
    )


def test_an_import_that_died_says_where_it_stopped(ctx, machine, port):
    state = ctx.run(ctx.on.install(), unit_state(port))
    resource_import.write_progress(progress_folder(machine), Progress(DIGEST, "running", 3, 7, 1))

    state = ctx.run(ctx.on.update_status(), state)

    assert state.unit_status == testing.ActiveStatus(
        f"Ready at 127.0.0.1:{port} (http). Import from the images resource ({DIGEST[:19]})"
        f" failed: it stopped at 3/7; see journalctl -u {JOB}."
    )


def test_an_empty_resource_starts_nothing(ctx, machine, port):
    """What `juju deploy` attaches without --resource (Scenario cannot leave it out)."""
    state = ctx.run(ctx.on.install(), unit_state(port))
    ctx.run(ctx.on.config_changed(), state)
    assert machine.launches[JOB] == 0
    assert resource_import.read_progress(machine.root / resource_import.STATE_DIR) is None


def test_new_content_starts_one_job_with_the_actions_access(ctx, machine, port, tmp_path):
    bundle = tmp_path / "bundle.tar"
    bundle.write_bytes(b"not a bundle, which the job will say")
    config = {"auth-basic-password": "s3cret", "images-namespace": "site"}
    state = ctx.run(ctx.on.install(), unit_state(port, config=config))
    state = dataclasses.replace(state, resources={images_resource(bundle)})
    machine.start_job(JOB, ["sleep", "600"], {})  # an import still running: wait for it

    state = ctx.run(ctx.on.config_changed(), state)
    assert machine.launches[JOB] == 1
    machine.stop(JOB)
    spec_path = progress_folder(machine) / "spec.json"
    # The job removes its spec once read: stand in for it before it runs.
    state = ctx.run(ctx.on.update_status(), state)
    assert machine.launches[JOB] == 2
    assert machine.wait(JOB, timeout=60) == 1
    assert not spec_path.exists(), "the job removed the credential"
    log = machine.log(JOB)
    assert "s3cret" not in log
    progress = resource_import.read_progress(progress_folder(machine))
    assert progress is not None
    assert (progress.state, progress.digest) == ("failed", resource_import.file_digest(bundle))
    assert "holds no image archive" in progress.message or "cannot read" in progress.message

    # The same content again: nothing starts, though it failed...
    state = ctx.run(ctx.on.config_changed(), state)
    assert machine.launches[JOB] == 2
    # ... unless it is attached again (Juju runs upgrade-charm).
    state = ctx.run(ctx.on.upgrade_charm(), state)
    assert machine.launches[JOB] == 3
    assert machine.wait(JOB, timeout=60) == 1
    # Another namespace imports it again.
    ctx.run(ctx.on.config_changed(), with_config(state, images_namespace="other"))
    assert machine.launches[JOB] == 4


def test_the_spec_keeps_the_credential_private(machine, tmp_path):
    """The job reaches the registry exactly as the actions do: every field of their access."""
    from state.settings import BasicAuth
    from workload.client_identity import ClientIdentity
    from workload.registry_api import LocalAccess

    access = LocalAccess(
        "registry.test",
        5000,
        tls=True,
        ca_pem="-----BEGIN CERTIFICATE-----\n...",
        credentials=BasicAuth("admin", "pw"),
        client=ClientIdentity(tmp_path / "charm-client"),
        address="127.0.0.2",
        name_on_loopback=True,
    )
    spec = resource_import.ImportSpec(str(tmp_path / "b.tar"), DIGEST, "127.0.0.1:5000", access)
    path = resource_import.write_spec(progress_folder(machine), spec)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text())["access"]["credentials"] == {
        "user": "admin",
        "password": "pw",
    }
    assert resource_import._read_spec(path) == spec


def test_a_job_that_cannot_start_leaves_no_credential_and_says_why(
    ctx, machine, port, tmp_path, monkeypatch
):
    bundle = tmp_path / "bundle.tar"
    bundle.write_bytes(b"x")
    state = ctx.run(ctx.on.install(), unit_state(port))

    def refuse(name, argv, env):
        raise OSError("systemd-run: not found")

    monkeypatch.setattr(machine, "start_job", refuse)
    state = ctx.run(
        ctx.on.config_changed(), dataclasses.replace(state, resources={images_resource(bundle)})
    )

    assert not (progress_folder(machine) / "spec.json").exists()
    assert isinstance(state.unit_status, testing.ActiveStatus)
    assert state.unit_status.message.endswith(
        f"failed: cannot start {JOB}: systemd-run: not found; see journalctl -u {JOB}."
    )
