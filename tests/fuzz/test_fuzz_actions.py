"""Every action parameter fuzzed (injection, traversal) against a serving registry.

Asserted: the action succeeds or fails with a message, never a hook error;
a source password never reaches results, failures or the action log; no
parameter reaches skopeo as an option (skopeo itself is replaced by a stub
here, so nothing is fetched: references could name public registries).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ops import testing

from actions import push
from charm_context import ACTIONS
from fuzz.budget import COUNTS, budget
from fuzz.strategies import hostile_text, pieces

TRANSPORTS = ("docker://", "oci-archive:", "docker-archive:", "oci:")
references = st.one_of(
    hostile_text,
    pieces("/", ":", "@sha256:", "-", "--src-creds=x", "oci-archive:", "../../etc/passwd"),
    st.lists(st.sampled_from(["a/b:1", "-x", "oci:/tmp", "docker.io/x", "\n"]), max_size=3).map(
        " ".join
    ),
)
params = st.one_of(
    st.tuples(
        st.just("client-config"),
        st.fixed_dictionaries(
            {"mirror-of": st.one_of(st.just(""), hostile_text, references)},
            optional={
                "hosts-dir": st.one_of(hostile_text, st.just("/etc/containerd/certs.d")),
                "namespace": references,
                "include-password": st.booleans(),
            },
        ),
    ),
    st.tuples(
        st.just("images"),
        st.fixed_dictionaries(
            {},
            optional={
                "repository": references,
                "digests": st.booleans(),
                "offset": st.integers(-2, 3),
                "limit": st.integers(-2, 3),
            },
        ),
    ),
    st.tuples(st.just("rmi"), st.fixed_dictionaries({"image": references})),
    st.tuples(
        st.just("push"),
        st.fixed_dictionaries(
            {"image": references},
            optional={
                "tag": references,
                "namespace": references,
                "source-username": hostile_text,
                "source-password": st.sampled_from(["hunter2-pw", "-p\n$(id)"]),
                "source-tls-verify": st.booleans(),
                "parallel": st.integers(1, 32),
            },
        ),
    ),
)


@pytest.fixture(scope="module")
def skopeo_calls() -> Iterator[list[list[str]]]:
    """Replace skopeo (only) with a stub that records its argv and fails."""
    calls: list[list[str]] = []
    real_run = subprocess.run

    def run(argv, *args, **kwargs):
        if list(argv)[:1] != ["skopeo"]:
            return real_run(argv, *args, **kwargs)
        calls.append(list(argv))
        return subprocess.CompletedProcess(argv, 1, "", 'level=fatal msg="fuzz: not copied"')

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(push.subprocess, "run", run)
        yield calls


def check_skopeo_argv(argv: list[str], netloc: str) -> None:
    """Our options, then a source with a transport, then our registry: nothing else."""
    source, destination = argv[-2], argv[-1]
    assert source.startswith(TRANSPORTS), argv
    assert destination.startswith(f"docker://{netloc}/"), argv
    assert not any(arg.startswith("--src-creds") for arg in argv), argv


@budget(300)
@given(params)
def test_action_params(unit, skopeo_calls, example):
    action, values = example
    family = COUNTS[f"action params: {action}"]
    skopeo_calls.clear()
    # Juju fills in the defaults of params not given; Scenario does not.
    spec = ACTIONS[action].get("params", {})
    values = {
        **{name: p["default"] for name, p in spec.items() if "default" in p},
        **values,
    }
    try:
        unit.ctx.run(unit.ctx.on.action(action, params=values), unit.state)
    except testing.ActionFailed as failed:
        family["failed"] += 1
        output = failed.message + json.dumps(unit.ctx.action_results or {})
    else:
        family["succeeded"] += 1
        output = json.dumps(unit.ctx.action_results)
    output += "\n".join(unit.ctx.action_logs)
    password = values.get("source-password")
    if password:
        assert password not in output
    netloc = f"127.0.0.1:{unit.state.config['registry-port']}"
    for argv in skopeo_calls:
        COUNTS["action params: skopeo runs (stubbed), argv checked"]["runs"] += 1
        check_skopeo_argv(argv, netloc)
