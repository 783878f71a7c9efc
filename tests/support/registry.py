"""A real CNCF distribution registry (`docker-registry serve`) on a loopback port.

Used as the source/upstream registry that the charm's registry mirrors or proxies, and as a
reference server for end-to-end checks. All state lives in a temp dir removed on stop.
"""

from __future__ import annotations

import json
import os
import secrets
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._proc import ManagedProcess, ServerFixture, owned_tempdir, run
from .wait import WaitTimeoutError, free_port, wait_for

REGISTRY_BIN = "docker-registry"
HTPASSWD_BIN = "htpasswd"


def htpasswd_line(user: str, password: str, *, timeout: float = 30.0) -> str:
    """A bcrypt htpasswd entry (the only hash distribution accepts), via Apache's htpasswd."""
    proc = run([HTPASSWD_BIN, "-Bbn", user, password], timeout=timeout)
    return proc.stdout.strip()


class RegistryProcess(ServerFixture):
    """Run `docker-registry serve` with a generated config; use as a context manager.

    Options: the loopback `host` and `port` (default: 127.0.0.1 and a free port), basic auth
    (`users`), TLS (`tls_cert_pem`/`tls_key_pem`), pull-through cache
    (`proxy_remote_url` + optional credentials, trusting `upstream_ca_pem` if the upstream is
    HTTPS with a test CA), and blob deletion. The config is JSON, which is valid YAML.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str] | None = None,
        *,
        users: Mapping[str, str] | None = None,
        tls_cert_pem: bytes | None = None,
        tls_key_pem: bytes | None = None,
        proxy_remote_url: str | None = None,
        proxy_username: str | None = None,
        proxy_password: str | None = None,
        upstream_ca_pem: bytes | None = None,
        delete_enabled: bool = True,
        extra_config: Mapping[str, Any] | None = None,
        startup_timeout: float = 20.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        if (tls_cert_pem is None) != (tls_key_pem is None):
            raise ValueError("tls_cert_pem and tls_key_pem go together")
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else owned_tempdir(self, "registry-")
        self.storage_dir = self.workdir / "storage"
        self.config_path = self.workdir / "config.yml"
        self.log_path = self.workdir / "registry.log"
        self.users = dict(users or {})
        self.tls = tls_cert_pem is not None
        self._tls_cert_pem = tls_cert_pem
        self._tls_key_pem = tls_key_pem
        self._proxy_remote_url = proxy_remote_url
        self._proxy_username = proxy_username
        self._proxy_password = proxy_password
        self._upstream_ca_pem = upstream_ca_pem
        self._delete_enabled = delete_enabled
        self._extra_config = dict(extra_config or {})
        self._startup_timeout = startup_timeout
        self.host = host
        self.port = 0
        # A port of its own (443 for an emulated public registry); 0: a free one.
        self._fixed_port = port
        self._proc: ManagedProcess | None = None

    @property
    def netloc(self) -> str:
        """`127.0.0.1:PORT`, the registry host as it appears in image references."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.netloc}"

    @property
    def creds(self) -> str | None:
        """`user:password` of the first user (for skopeo/ctr), or None without auth."""
        if not self.users:
            return None
        user, password = next(iter(self.users.items()))
        return f"{user}:{password}"

    def ref(self, repository: str, tag: str = "latest") -> str:
        """A full image reference on this registry, e.g. `127.0.0.1:5000/repo:tag`."""
        return f"{self.netloc}/{repository}:{tag}"

    def _config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "info", "formatter": "text", "accesslog": {"disabled": False}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage_dir)},
                "delete": {"enabled": self._delete_enabled},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {
                "addr": self.netloc,
                "secret": secrets.token_hex(16),
                "headers": {"X-Content-Type-Options": ["nosniff"]},
            },
            "health": {"storagedriver": {"enabled": False}},
        }
        if self.tls:
            assert self._tls_cert_pem is not None
            assert self._tls_key_pem is not None
            cert_path = self.workdir / "tls.crt"
            key_path = self.workdir / "tls.key"
            cert_path.write_bytes(self._tls_cert_pem)
            key_path.write_bytes(self._tls_key_pem)
            key_path.chmod(0o600)
            config["http"]["tls"] = {"certificate": str(cert_path), "key": str(key_path)}
        if self.users:
            htpasswd_path = self.workdir / "htpasswd"
            lines = [htpasswd_line(user, pw) for user, pw in self.users.items()]
            htpasswd_path.write_text("\n".join(lines) + "\n")
            config["auth"] = {"htpasswd": {"realm": "test-registry", "path": str(htpasswd_path)}}
        if self._proxy_remote_url:
            proxy: dict[str, str] = {"remoteurl": self._proxy_remote_url}
            if self._proxy_username is not None:
                proxy["username"] = self._proxy_username
                proxy["password"] = self._proxy_password or ""
            config["proxy"] = proxy
        _deep_merge(config, self._extra_config)
        return config

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        # Proxies in the environment must never catch loopback traffic.
        for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
            env.pop(key, None)
        if self._upstream_ca_pem is not None:
            # Go reads extra roots from SSL_CERT_FILE; the upstream uses a test CA.
            ca_path = self.workdir / "upstream-ca.crt"
            ca_path.write_bytes(self._upstream_ca_pem)
            env["SSL_CERT_FILE"] = str(ca_path)
        return env

    def start(self) -> RegistryProcess:
        """Start and wait until ready; on any failure, clean up before re-raising."""
        if self._proc is not None:
            raise RuntimeError("registry already started")
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> RegistryProcess:
        """Start on a free port and wait until `GET /v2/` answers 200 or 401."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.storage_dir.mkdir(exist_ok=True)
        for attempt in range(3):
            self.port = self._fixed_port or free_port(self.host)
            self.config_path.write_text(json.dumps(self._config(), indent=2))
            proc = ManagedProcess(
                [REGISTRY_BIN, "serve", str(self.config_path)],
                name=f"docker-registry on {self.netloc}",
                log_path=self.log_path,
                env=self._env(),
            )
            self._proc = proc
            proc.start()
            try:
                wait_for(
                    self._ready,
                    timeout=self._startup_timeout,
                    what=f"registry {self.url}/v2/ to answer",
                    ignore=(OSError,),
                )
                return self
            except RuntimeError as exc:
                # Another process may have grabbed the free port first: retry on a new one.
                proc.stop()
                self._proc = None
                if "address already in use" not in str(exc) or attempt == 2:
                    raise
            except WaitTimeoutError as exc:
                tail = proc.log_tail()
                raise WaitTimeoutError(f"{exc}\nregistry log:\n{tail}") from exc
        raise AssertionError("unreachable")

    def _ready(self) -> bool:
        assert self._proc is not None
        self._proc.check_alive()
        context = None
        if self.tls:
            # Only readiness here; trust is what the tests themselves check.
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            with _opener(context).open(f"{self.url}/v2/", timeout=2) as resp:
                return resp.status == 200
        except urllib.error.HTTPError as exc:
            return exc.code == 401


def _opener(context: ssl.SSLContext | None) -> urllib.request.OpenerDirector:
    """An opener that ignores proxy env vars: loopback requests must go direct."""
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    return urllib.request.build_opener(*handlers)


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value
