"""The image actions' parameters and error messages (no copy is attempted here)."""

from __future__ import annotations

import dataclasses

import pytest
from ops import testing

from actions.push import ImageCopy, InvalidPushError, parse_reference, plan_copies
from charm_context import unit_state, with_config
from state.settings import BasicAuth
from state.tls import ServerTLS
from support import oci, pki
from workload.registry_api import _api_error, _path_only, local_access

OWN = ("10.0.0.5:5000", "127.0.0.1:5000")
DIGEST = "sha256:" + "ab" * 32


def fails(ctx, state, action: str, params: dict) -> str:
    with pytest.raises(testing.ActionFailed) as failed:
        ctx.run(ctx.on.action(action, params=params), state)
    return failed.value.message


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"image": "  "}, "image: give at least one image reference"),
        (
            {"image": "a:1 b:2", "tag": "c:3"},
            "tag: names the destination of one image; use namespace for several",
        ),
        (
            {"image": "a:1", "namespace": "Team A"},
            "namespace: 'Team A' is not a repository path"
            " (lowercase letters, digits, . _ - and /)",
        ),
        (
            {"image": "a:1", "tag": "quay.io/x/y:1"},
            "tag: names another registry (quay.io)",
        ),
        ({"image": "a:1", "tag": "x:bad tag"}, "tag: invalid tag 'bad tag'"),
    ],
)
def test_push_refuses_bad_parameters_before_copying(ctx, port, params, message):
    assert fails(ctx, unit_state(port), "push", params) == message


def test_actions_on_a_stopped_registry_say_how_to_start_it(ctx, port):
    state = ctx.run(ctx.on.action("stop"), unit_state(port))
    for action, params in [
        ("push", {"image": "a:1"}),
        ("images", {}),
        ("rmi", {"image": "a"}),
        ("disk-usage", {}),
    ]:
        message = fails(ctx, state, action, params)
        assert message == "The registry is stopped; run the start action first"


def test_actions_with_invalid_config_name_the_option(ctx, port):
    state = unit_state(port, config={"log-level": "loud"})
    assert fails(ctx, state, "push", {"image": "a:1"}).startswith(
        "The registry is not configured: Invalid charm config: log-level"
    )
    assert fails(ctx, state, "garbage-collect", {}).startswith(
        "The registry is not configured: Invalid charm config: log-level"
    )


def test_rmi_and_images_refuse_references_to_other_registries(ctx, port):
    state = unit_state(port)
    message = fails(ctx, state, "rmi", {"image": "quay.io/x/y:1"})
    assert message == "1 of 1 deletions failed: quay.io/x/y:1: names another registry (quay.io)"
    assert ctx.action_results["outcome"] == "failure"
    assert fails(ctx, state, "images", {"repository": "Bad:Name:x"}).startswith(
        "Cannot list images: repository: invalid"
    )


def copy_of(image: str, **kw) -> ImageCopy:
    (copy,) = plan_copies(image, own_netlocs=OWN, **kw)
    return copy


@pytest.mark.parametrize(
    ("image", "kw", "transport_ref", "destination", "registry"),
    [
        ("nginx:1.25", {}, "docker://docker.io/library/nginx:1.25", "nginx:1.25", "docker.io"),
        (
            "docker.io/library/nginx",
            {},
            "docker://docker.io/library/nginx",
            "library/nginx:latest",
            "docker.io",
        ),
        (
            "registry.k8s.io/pause:3.9",
            {"namespace": "mirror/"},
            "docker://registry.k8s.io/pause:3.9",
            "mirror/pause:3.9",
            "registry.k8s.io",
        ),
        (
            f"docker://localhost:5000/a/b@{DIGEST}",
            {},
            f"docker://localhost:5000/a/b@{DIGEST}",
            f"a/b@{DIGEST}",
            "localhost:5000",
        ),
        (
            "quay.io/x/y:1",
            {"tag": "127.0.0.1:5000/solo/y:2"},
            "docker://quay.io/x/y:1",
            "solo/y:2",
            "quay.io",
        ),
        (
            "quay.io/x/y:1",
            {"tag": "10.0.0.5:5000/y"},
            "docker://quay.io/x/y:1",
            "y:latest",
            "quay.io",
        ),
    ],
)
def test_destinations_follow_the_source_path(image, kw, transport_ref, destination, registry):
    assert copy_of(image, **kw) == ImageCopy(image, transport_ref, destination, registry)


@pytest.mark.parametrize(
    ("image", "error"),
    [
        ("UPPER", "invalid repository name 'UPPER' (lowercase letters, digits, . _ - and /)"),
        ("a:-x", "invalid tag '-x'"),
        ("a@sha256:xyz", "invalid digest 'sha256:xyz'"),
        ("oci-archive:relative.tar", "oci-archive: give an absolute path, not 'relative.tar'"),
        ("oci-archive:/no/such.tar", "no such file on the unit: /no/such.tar"),
    ],
)
def test_a_bad_entry_fails_alone(image, error):
    good, bad = plan_copies(f"a:1 {image}")
    assert not good.error
    assert bad == ImageCopy(image, error=error)


def test_file_sources_name_their_destination(tmp_path):
    layout = tmp_path / "bundle"
    oci.build_image(layout, "v1", files={"a": b"a"})
    assert copy_of(f"oci:{layout}").destination == "bundle:v1", "the one ref name is a tag"
    oci.build_image(layout, "v2", files={"b": b"b"})
    assert copy_of(f"oci:{layout}:v2", namespace="ns").destination == "ns/bundle:v2"
    both = plan_copies(f"oci:{layout}", own_netlocs=OWN)
    assert [c.destination for c in both] == ["bundle:v1", "bundle:v2"], "every image of it"
    assert copy_of(f"oci:{layout}:v1", tag="app:3").destination == "app:3"


def test_reference_parsing_splits_host_path_tag_and_digest():
    ref = parse_reference("myhost:5000/team/app:1.0@" + DIGEST)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (
        "myhost:5000",
        "team/app",
        "1.0",
        DIGEST,
    )
    assert parse_reference("team/app").domain == ""


def tls_plan(ctx, port, names: list[str]):
    ca = pki.make_ca("ca")
    cert, key = pki.issue(ca, names[0], names)
    state = unit_state(port, config={"auth-basic-password": "pw"})
    with ctx(ctx.on.update_status(), state) as manager:
        plan = manager.charm.desired
    tls = ServerTLS(cert.decode(), key.decode(), ca.cert_pem.decode())
    return dataclasses.replace(plan, tls=tls), ca


def test_local_access_verifies_a_name_the_certificate_carries(ctx, port):
    plan, ca = tls_plan(ctx, port, ["registry.example", "127.0.0.1"])
    access = local_access(plan)
    assert (access.host, access.port, access.tls) == ("127.0.0.1", port, True)
    assert access.ca_pem == ca.cert_pem.decode()
    assert access.credentials == BasicAuth("admin", "pw")

    plan, _ = tls_plan(ctx, port, ["other.example", "registry.example"])
    plan = dataclasses.replace(plan, netloc="registry.example:443")
    access = local_access(plan, "127.0.0.9")
    assert (access.netloc, access.address) == (f"registry.example:{port}", "127.0.0.9")
    assert access.name_on_loopback, "skopeo resolves it to loopback"

    plan, _ = tls_plan(ctx, port, ["10.9.9.9", "*.example", "other.example"])
    plan = dataclasses.replace(plan, netloc="10.9.9.9:443")
    assert local_access(plan).host == "other.example", "a name the certificate carries"


def test_local_access_reaches_this_unit_not_the_proxy(ctx, port):
    """Behind a proxy, or on a follower, clients' address is not this unit's."""
    plan, _ = tls_plan(ctx, port, ["10.9.9.9", "10.0.0.7"])
    plan = dataclasses.replace(plan, netloc=f"10.9.9.9:{port}", unit_address="10.0.0.7")
    access = local_access(plan)
    assert (access.host, access.address, access.name_on_loopback) == (
        "10.0.0.7",
        "127.0.0.1",
        False,
    )


def test_local_access_without_tls_is_plain_loopback(ctx, port):
    with ctx(ctx.on.update_status(), unit_state(port)) as manager:
        access = local_access(manager.charm.desired)
    assert (access.netloc, access.tls, access.ca_pem, access.credentials) == (
        f"127.0.0.1:{port}",
        False,
        None,
        None,
    )


def test_registry_errors_carry_its_code_and_message():
    body = b'{"errors":[{"code":"UNSUPPORTED","message":"The operation is unsupported."}]}'
    error = _api_error("DELETE", "/v2/a/manifests/x?y", 405, body)
    assert str(error) == "DELETE /v2/a/manifests/x: UNSUPPORTED: The operation is unsupported."
    assert (error.status, error.code) == (405, "UNSUPPORTED")
    assert str(_api_error("GET", "/v2/", 502, b"<html>")) == "GET /v2/: HTTP 502"
    assert _path_only("https://h:1/v2/_catalog?last=a&n=2") == "/v2/_catalog?last=a&n=2"


def test_a_push_of_only_bad_entries_fails_with_each_reason(ctx, port):
    state = with_config(unit_state(port), storage_delete=True)
    with pytest.raises(InvalidPushError):
        plan_copies("")
    assert fails(ctx, state, "push", {"image": "oci-archive:/no/such.tar"}) == (
        "1 of 1 images failed: oci-archive:/no/such.tar: no such file on the unit: /no/such.tar"
    )
    assert ctx.action_results["raw"] == "pushed nothing"
    assert ctx.action_logs == [
        "[1/1] oci-archive:/no/such.tar: failed: no such file on the unit: /no/such.tar"
    ]


def test_garbage_collect_on_shared_storage_needs_the_application_read_only(ctx, machine, port):
    s3 = {"storage-s3-region": "us-east-1", "storage-s3-bucket": "images"}
    message = fails(ctx, unit_state(port, config=s3), "garbage-collect", {})
    assert message == (
        "images are in shared object storage: first make every unit read-only with "
        "juju config docker-registry storage-read-only=true"
    )
    assert machine.launches["docker-registry"] == 0, "nothing was touched"


def test_apply_retention_needs_a_policy_and_filesystem_storage(ctx, port):
    assert fails(ctx, unit_state(port), "apply-retention", {}) == (
        "Cannot apply the retention policy: no retention-policy is set"
    )
    config = {
        "storage-s3-region": "us-east-1",
        "storage-s3-bucket": "images",
        "retention-policy": "- {repositories: '*', keep-last: 3}",
    }
    message = fails(ctx, unit_state(port, config=config), "apply-retention", {})
    assert message.startswith("Cannot apply the retention policy: retention-policy needs")
