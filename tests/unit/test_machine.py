"""`UbuntuMachine.run_as`: the service user's identity only, as the real process sees it."""

from __future__ import annotations

import os
import pwd

import pytest

from workload.machine import UbuntuMachine

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


def test_run_as_takes_the_users_group_only_and_a_clean_environment(monkeypatch):
    monkeypatch.setenv("SECRET_OF_THE_HOOK", "x")
    user = pwd.getpwnam("nobody")
    script = "import os; print(os.getuid(), os.getgid(), os.getgroups(), dict(os.environ))"
    done = UbuntuMachine().run_as("nobody", ["python3", "-c", script], timeout=30)
    assert done.returncode == 0, done.stderr
    uid, gid, groups, environment = done.stdout.split(" ", 3)
    assert (int(uid), int(gid)) == (user.pw_uid, user.pw_gid)
    assert groups.strip("[],") in ("", str(user.pw_gid))
    assert "SECRET_OF_THE_HOOK" not in environment
    assert f"'HOME': '{user.pw_dir}'" in environment
