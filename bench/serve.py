"""Benchmark: the charm's registry serving pulls, against nginx serving the same blob files.

Run: .venv/bin/python bench/serve.py [--rounds N] [--seconds S] [--variants NAME ...]
(nginx and wrk from Debian's packages: apt-get install nginx-light wrk; not test dependencies)

One charm unit (Scenario + LocalMachine, as the tests run it) holds an image
with a 64 MB layer of random bytes. nginx, started by this script as its own
process on loopback with its own config, serves the registry's own blob files
from the unit's storage under the same URLs, with sendfile; it listens four
times: plain, basic auth (the registry's htpasswd: the same bcrypt cost per
request), TLS and TLS with auth (the registry's certificate). The unit is
reconfigured in turn as plain, basic auth, TLS, TLS + auth, behind its
haproxy front (`cache-mirrors` set), and with a `docker-registry` relation
whose pull-only credential the client uses ("pull-only", "TLS + pull-only":
the haproxy front checks it; compared with nginx's basic auth), and
wrk (keep-alive, two threads, the same for either server; it replaced a single
ApacheBench process, which was the bottleneck with 4 and 16 clients) measures
for each:

- blob MB/s with 1, 4 and 16 clients, as a ratio to nginx in the same mode
  (the front against plain nginx);
- manifest GETs per second with 4 clients, with the registry as it ran
  before this tuning (GOGC=100, Go's default) measured alongside;
- the share of the machine's CPU time left idle during each run: a server
  that is neither busy nor idle is waiting on another process.

`--front-over-tcp` adds the front as the unit renders it but with the main
registry behind it on loopback TCP instead of its unix socket (a second
registry on the same storage and a second haproxy; not what the charm
ships), to show what the unix socket costs a single stream. `--token-auth`
adds a registry on the same storage terminating TLS and enforcing rights
itself with Distribution's token auth, the client sending a pull-scoped JWT
(RS256, signed here; no token issuer runs): the design without the front's
hop, which the charm does not ship (it answers `Bearer` challenges and 401s
where clients expect `Basic` and 403s; docs/explanation/security.md). `--profile N`
then profiles the registry (pprof, from its debug server) serving blobs to
N clients in each variant.

`--plot PATH` also draws the blob MB/s per client count, each variant against
nginx, as an SVG captioned with the run's conditions.

Rounds rotate the order; the medians are printed. The machine is shared: the
ratios, measured side by side, are the figures; absolute numbers drift.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(PROJECT / "src"), str(PROJECT / "tests")]

import yaml  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding  # noqa: E402
from ops import testing  # noqa: E402
from plot import bar_chart, conditions, save  # noqa: E402

from charm_context import b64, charm_context, unit_state  # noqa: E402
from local_machine import LocalMachine  # noqa: E402
from support import oci, pki, pprof, skopeo  # noqa: E402
from support._proc import ManagedProcess  # noqa: E402
from support.cpu import cpu_seconds  # noqa: E402
from support.registry import RegistryProcess  # noqa: E402
from support.wait import free_port, port_open, wait_for  # noqa: E402
from workload.registry import SERVICE  # noqa: E402

USER, PASSWORD = "bench", "bench-Secret-1"
BLOB_BYTES = 64 << 20
CLIENTS = (1, 4, 16)
MANIFEST_CLIENTS = 4
REPOSITORY = "bench/app"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
FRONT_OVER_TCP = "front over TCP (not shipped)"
TOKEN_AUTH = "TLS + token auth (not shipped)"
NGINX_VARIANT = {
    "front": "plain",
    FRONT_OVER_TCP: "plain",
    TOKEN_AUTH: "TLS + auth",
    "pull-only": "basic auth",
    "TLS + pull-only": "TLS + auth",
}
"""The nginx mode each variant is compared with (its own name otherwise)."""

NGINX_CONF = """\
daemon off;
user root;
worker_processes auto;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    default_type application/octet-stream;
{servers}
}}
"""
NGINX_SERVER = """\
    server {{
        listen 127.0.0.1:{port}{ssl};
        {tls}
        {auth}
        location ~ "^/v2/.+/sha256:(?<head>[0-9a-f]{{2}})(?<tail>[0-9a-f]{{62}})$" {{
            alias {blobs}/$head/$head$tail/data;
        }}
    }}
"""


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where one server variant answers, and how the load generator must talk to it."""

    scheme: str
    port: int
    auth: bool
    login: tuple[str, str] = (USER, PASSWORD)
    """The credential sent when `auth` (a relation's own for the pull-only variants)."""
    bearer: str = ""
    """A token sent instead of `login` when `auth` (the token auth variant)."""

    @property
    def authorization(self) -> str:
        """The `Authorization` header's value when `auth`."""
        if self.bearer:
            return f"Bearer {self.bearer}"
        return "Basic " + base64.b64encode(":".join(self.login).encode()).decode()

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"


WRK_REPORT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("requests %d\\nbytes %d\\nmicroseconds %d\\nerrors %d\\n",
    summary.requests, summary.bytes, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""
"""wrk's exact totals (its own summary rounds bytes to two digits of MB)."""


def load(
    endpoint: Endpoint,
    path: str,
    clients: int,
    seconds: float,
    server: set[int],
    accept: str = "*/*",
) -> dict:
    """Run wrk with keep-alive for `seconds`: requests/s, MB/s, server CPU-s per GB.

    wrk (epoll, two threads) rather than one ApacheBench process: with 4 and
    16 clients a single ab process was the bottleneck, not the servers.
    """
    script = Path(tempfile.gettempdir()) / "bench-serve-wrk.lua"
    script.write_text(WRK_REPORT)
    period = f"{max(1, round(seconds))}s"  # wrk takes whole seconds
    argv = ["wrk", "-t", str(min(clients, 2)), "-c", str(clients), "-d", period]
    # A 64 MB blob shared by 16 clients can take longer than wrk's 2 s default.
    argv += ["--timeout", "60s"]
    argv += ["-s", str(script), "-H", f"Accept: {accept}"]
    if endpoint.auth:
        argv += ["-H", f"Authorization: {endpoint.authorization}"]
    cpu, idle = cpu_seconds(server), idle_ticks()
    out = subprocess.run(
        [*argv, endpoint.url(path)], capture_output=True, text=True, check=True
    ).stdout
    cpu = cpu_seconds(server) - cpu
    idle_now = idle_ticks()
    idle = (idle_now[0] - idle[0], idle_now[1] - idle[1])
    totals = dict(re.findall(r"^(requests|bytes|microseconds|errors) (\d+)$", out, re.M))
    if len(totals) != 4 or int(totals["errors"]) or "Non-2xx" in out:
        raise RuntimeError(f"wrk saw failures against {endpoint}:\n{out}")
    duration = int(totals["microseconds"]) / 1e6
    transferred = int(totals["bytes"])
    return {
        "rps": int(totals["requests"]) / duration,
        "mbps": transferred / duration / 1e6,
        "cpu_per_gb": cpu / (transferred / 1e9),
        "idle": idle[0] / idle[1],
    }


def idle_ticks() -> tuple[int, int]:
    """The machine's (idle, total) CPU ticks so far, from /proc/stat."""
    ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return ticks[3] + ticks[4], sum(ticks)  # idle and iowait


@contextmanager
def nginx(
    work: Path, blobs: Path, cert: Path, key: Path, htpasswd: Path
) -> Iterator[tuple[dict[str, Endpoint], set[int]]]:
    """nginx on four loopback ports serving `blobs`: ({variant: Endpoint}, its process group)."""
    endpoints = {
        "plain": Endpoint("http", free_port(), auth=False),
        "basic auth": Endpoint("http", free_port(), auth=True),
        "TLS": Endpoint("https", free_port(), auth=False),
        "TLS + auth": Endpoint("https", free_port(), auth=True),
    }
    servers = []
    for endpoint in endpoints.values():
        tls = endpoint.scheme == "https"
        servers.append(
            NGINX_SERVER.format(
                port=endpoint.port,
                ssl=" ssl" if tls else "",
                tls=f"ssl_certificate {cert}; ssl_certificate_key {key};" if tls else "",
                auth=f'auth_basic "bench"; auth_basic_user_file {htpasswd};'
                if endpoint.auth
                else "",
                blobs=blobs,
            )
        )
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(work=work, servers="".join(servers)))
    subprocess.run(["nginx", "-t", "-q", "-c", str(conf)], check=True)
    process = ManagedProcess(["nginx", "-c", str(conf)], name="nginx", log_path=work / "nginx.log")
    process.start()
    try:
        for endpoint in endpoints.values():
            wait_for(lambda e=endpoint: port_open("127.0.0.1", e.port), timeout=15, what="nginx")
        assert process.pid is not None
        yield endpoints, {process.pid}
    finally:
        process.stop()


class Unit:
    """The charm's unit, reconfigured per variant; every config keeps the same port."""

    def __init__(self, work: Path, upstream: RegistryProcess, ca: pki.CertificateAuthority):
        self.machine = LocalMachine(Path(tempfile.mkdtemp(prefix="unit-", dir="/tmp")))
        self.ctx = charm_context(self.machine)
        self.port = free_port()
        cert, key = pki.issue(ca, "127.0.0.1", ["127.0.0.1"])
        tls = {
            "tls-cert-blob": b64(cert),
            "tls-key-blob": b64(key),
            "tls-ca-blob": b64(ca.cert_pem),
        }
        auth = {"auth-basic-user": USER, "auth-basic-password": PASSWORD}
        mirrors = {"cache-mirrors": yaml.safe_dump({"docker.io": upstream.url})}
        self.configs = {
            "plain": ({}, Endpoint("http", self.port, auth=False)),
            "basic auth": (auth, Endpoint("http", self.port, auth=True)),
            "TLS": (tls, Endpoint("https", self.port, auth=False)),
            "TLS + auth": ({**tls, **auth}, Endpoint("https", self.port, auth=True)),
            "front": (mirrors, Endpoint("http", self.port, auth=False)),
            "pull-only": (auth, Endpoint("http", self.port, auth=True)),
            "TLS + pull-only": ({**tls, **auth}, Endpoint("https", self.port, auth=True)),
        }
        self.relation = testing.Relation("docker-registry", remote_app_name="containerd")
        self.state = self.ctx.run(self.ctx.on.install(), unit_state(self.port))
        self.base = dict(self.state.config)
        self.current = ("plain", False)

    def serve(self, variant: str, debug_server: bool = False) -> Endpoint:
        """Reconfigure the unit as `variant`, with its debug server (metrics, pprof) if asked."""
        config, endpoint = self.configs[variant]
        related = variant.endswith("pull-only")
        if (variant, debug_server) != self.current:
            config = {**self.base, **config, "prometheus-metrics": debug_server}
            others = [r for r in self.state.relations if r.endpoint != "docker-registry"]
            relations = [*others, self.relation] if related else others
            state = dataclasses.replace(self.state, config=config, relations=relations)
            self.state = self.ctx.run(self.ctx.on.config_changed(), state)
            assert isinstance(self.state.unit_status, testing.ActiveStatus), self.state.unit_status
            self.current = (variant, debug_server)
        if related:
            bag = self.state.get_relation(self.relation.id).local_unit_data
            login = (json.loads(bag["basic_user"]), json.loads(bag["basic_password"]))
            endpoint = dataclasses.replace(endpoint, login=login)
        return endpoint

    @property
    def debug_netloc(self) -> str:
        return f"127.0.0.1:{self.state.config['debug-port']}"

    @property
    def storage(self) -> Path:
        return self.machine.root / "srv/registry"

    @property
    def config_path(self) -> Path:
        return self.machine.root / "etc/docker/registry/config.yml"

    def close(self) -> None:
        self.machine.close()
        shutil.rmtree(self.machine.root, ignore_errors=True)


@contextmanager
def registry_beside(
    unit: Unit, work: Path, name: str, config: dict, port: int, **env: str
) -> Iterator[int]:
    """A registry process beside the unit's, from `config`, with the unit's environment
    (its drop-in's) changed by `env`, answering on `port`: its process group."""
    config_path = work / f"{name}.yml"
    config_path.write_text(yaml.safe_dump(config))
    process = ManagedProcess(
        ["docker-registry", "serve", str(config_path)],
        name=name,
        log_path=work / f"{name}.log",
        env={**os.environ, **unit.machine.environment(SERVICE), **env},
    )
    process.start()
    try:
        wait_for(lambda: port_open("127.0.0.1", port), timeout=15, what=name)
        assert process.pid is not None
        yield process.pid
    finally:
        process.stop()


@contextmanager
def untuned_registry(unit: Unit, work: Path) -> Iterator[tuple[Endpoint, set[int]]]:
    """The unit's plain registry as it ran before this tuning: Go's default GOGC, own port."""
    unit.serve("plain")
    port = free_port()
    config = yaml.safe_load(unit.config_path.read_text())
    config["http"]["addr"] = f"127.0.0.1:{port}"
    with registry_beside(unit, work, "untuned", config, port, GOGC="100") as pid:
        yield Endpoint("http", port, auth=False), {pid}


@contextmanager
def front_over_tcp(unit: Unit, work: Path) -> Iterator[tuple[Endpoint, set[int]]]:
    """The unit's front as rendered, but its main registry on loopback TCP (not shipped)."""
    unit.serve("front")
    registry_port, front_port = free_port(), free_port()
    config = yaml.safe_load(unit.config_path.read_text())
    del config["http"]["net"]
    config["http"]["addr"] = f"127.0.0.1:{registry_port}"
    front = (unit.machine.root / "etc/haproxy/haproxy.cfg").read_text()
    front = re.sub(r"(?m)^    bind .*$", f"    bind 127.0.0.1:{front_port}", front)
    front = re.sub(r"(?m)^    http-request lua.await_socket .*$", "", front)
    server = f"    server registry 127.0.0.1:{registry_port}"
    front = re.sub(r"(?m)^    server registry .*$", server, front)
    front_path = work / "tcp-front.cfg"
    front_path.write_text(front)
    haproxy = ManagedProcess(
        ["haproxy", "-f", str(front_path), "-db"], name="haproxy", log_path=work / "tcp-front.log"
    )
    with registry_beside(unit, work, "tcp-backend", config, registry_port) as registry:
        haproxy.start()
        try:
            wait_for(lambda: port_open("127.0.0.1", front_port), timeout=15, what="haproxy")
            assert haproxy.pid is not None
            yield Endpoint("http", front_port, auth=False), {registry, haproxy.pid}
        finally:
            haproxy.stop()


def pull_token(issuer: pki.CertificateAuthority, service: str) -> str:
    """A JWT granting pull on REPOSITORY for an hour, as a token issuer would sign it (RS256,
    the issuer's certificate in `x5c`, which the registry checks against its root bundle)."""

    def encode(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    der = issuer.cert.public_bytes(serialization.Encoding.DER)
    header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
    now = int(time.time())
    claims = {
        "iss": issuer.cert.subject.rfc4514_string(),
        "sub": USER,
        "aud": service,
        "exp": now + 3600,
        "nbf": now - 60,
        "iat": now,
        "jti": os.urandom(8).hex(),
        "access": [{"type": "repository", "name": REPOSITORY, "actions": ["pull"]}],
    }
    signed = ".".join(encode(json.dumps(part).encode()) for part in (header, claims))
    signature = issuer.key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signed}.{encode(signature)}"


@contextmanager
def token_auth_registry(unit: Unit, work: Path) -> Iterator[tuple[Endpoint, set[int]]]:
    """The unit's TLS registry beside it, enforcing a pull-scoped token itself (not shipped)."""
    unit.serve("TLS + auth")
    issuer = pki.make_ca("bench-token-issuer")
    (work / "token-issuer.crt").write_bytes(issuer.cert_pem)
    port = free_port()
    config = yaml.safe_load(unit.config_path.read_text())
    config["http"]["addr"] = f"127.0.0.1:{port}"
    for name in ("certificate", "key"):  # the unit may remove them when reconfigured
        config["http"]["tls"][name] = str(shutil.copy(config["http"]["tls"][name], work))
    service = "bench-registry"
    config["auth"] = {
        "token": {
            "realm": f"https://127.0.0.1:{port}/token",  # clients holding a token never ask
            "service": service,
            "issuer": issuer.cert.subject.rfc4514_string(),
            "rootcertbundle": str(work / "token-issuer.crt"),
        }
    }
    with registry_beside(unit, work, "token-auth", config, port) as pid:
        endpoint = Endpoint("https", port, auth=True, bearer=pull_token(issuer, service))
        yield endpoint, {pid}


def profile_blobs(unit: Unit, work: Path, blob: str, clients: int, seconds: int) -> dict[str, str]:
    """Where the unit's (main) registry spends CPU serving blobs, per variant: pprof's top."""
    tops = {}
    for variant in unit.configs:
        endpoint = unit.serve(variant, debug_server=True)
        path = work / f"{variant.replace(' ', '')}.pprof"
        with pprof.cpu_profile(unit.debug_netloc, seconds, path):
            load(endpoint, blob, clients, seconds + 0.5, unit.machine.process_groups())
        tops[variant] = pprof.top(path, nodes=12)
    return tops


def push_image(work: Path, unit: Unit) -> tuple[str, str]:
    """An image with one 64 MB layer of random bytes in the unit: (layer path, manifest path)."""
    layout = work / "layout"
    layer = oci.make_layer(oci.random_layer(BLOB_BYTES, "serve"), compresslevel=0)
    digest = oci.build_image(layout, "v1", layers=[layer])
    unit.serve("plain")
    skopeo.copy(
        oci.layout_ref(layout, "v1"),
        f"docker://127.0.0.1:{unit.port}/{REPOSITORY}:v1",
        dest_tls_verify=False,
    )
    manifest = json.loads(oci.read_blob(layout, digest))
    return (
        f"/v2/{REPOSITORY}/blobs/{manifest['layers'][0]['digest']}",
        f"/v2/{REPOSITORY}/manifests/{digest}",
    )


def require_programs() -> None:
    """nginx (the reference) and wrk (the load) come from Debian's packages."""
    for program, package in (("nginx", "nginx-light"), ("wrk", "wrk")):
        if shutil.which(program) is None:
            sys.exit(f"{program} is not installed: apt-get install {package}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Registry pull throughput against nginx.")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument(
        "--front-over-tcp",
        action="store_true",
        help="also the front with its main registry on loopback TCP (not shipped)",
    )
    parser.add_argument(
        "--token-auth",
        action="store_true",
        help="also a registry enforcing a pull-scoped token itself, TLS, no front (not shipped)",
    )
    parser.add_argument(
        "--profile",
        type=int,
        metavar="CLIENTS",
        help="then profile the registry serving blobs to this many clients (needs golang-go)",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        metavar="VARIANT",
        help="measure only these variants (default: all), e.g. 'TLS + auth' 'TLS + pull-only'",
    )
    parser.add_argument(
        "--plot", type=Path, metavar="PATH", help="also draw blob MB/s as an SVG at PATH"
    )
    args = parser.parse_args()
    require_programs()
    ca = pki.make_ca("bench-ca")
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp, RegistryProcess() as upstream:
        work = Path(tmp)
        unit = Unit(work, upstream, ca)
        try:
            blob, manifest = push_image(work, unit)
            cert, key = pki.issue(ca, "127.0.0.1", ["127.0.0.1"])
            (work / "nginx.crt").write_bytes(cert)
            (work / "nginx.key").write_bytes(key)
            unit.serve("basic auth")
            htpasswd = work / "htpasswd"
            shutil.copy(unit.machine.root / "etc/docker/registry/htpasswd", htpasswd)
            blobs = unit.storage / "docker/registry/v2/blobs/sha256"
            results: dict[tuple[str, str], list[float]] = {}

            def measure(variant: str, name: str, servers: dict, path: str, clients: int) -> None:
                accept = MANIFEST_TYPE if "manifests" in name else "*/*"
                for server, (endpoint, groups) in servers.items():
                    measured = load(endpoint, path, clients, args.seconds, groups, accept)
                    for figure, value in measured.items():
                        results.setdefault((variant, f"{server} {name} {figure}"), []).append(
                            value
                        )

            with ExitStack() as stack:
                reference, nginx_group = stack.enter_context(
                    nginx(work, blobs, work / "nginx.crt", work / "nginx.key", htpasswd)
                )
                variants = args.variants or list(unit.configs)
                beside = {}
                if args.front_over_tcp:
                    beside[FRONT_OVER_TCP] = stack.enter_context(front_over_tcp(unit, work))
                if args.token_auth:
                    beside[TOKEN_AUTH] = stack.enter_context(token_auth_registry(unit, work))
                variants += list(beside)
                for round_ in range(args.rounds):
                    order = variants[round_ % len(variants) :] + variants[: round_ % len(variants)]
                    for variant in order:
                        ours = beside.get(variant) or (
                            unit.serve(variant),
                            unit.machine.process_groups(),
                        )
                        theirs = NGINX_VARIANT.get(variant, variant)
                        servers = {"registry": ours, "nginx": (reference[theirs], nginx_group)}
                        for clients in CLIENTS:
                            measure(variant, f"blob {clients}", servers, blob, clients)
                        measure(variant, "manifests", servers, manifest, MANIFEST_CLIENTS)
                    with untuned_registry(unit, work) as untuned:
                        servers = {
                            "untuned": untuned,
                            "registry": (unit.serve("plain"), unit.machine.process_groups()),
                        }
                        measure("GOGC", "manifests", servers, manifest, MANIFEST_CLIENTS)
            profiles = {}
            if args.profile:
                seconds = max(1, round(args.seconds))
                profiles = profile_blobs(unit, work, blob, args.profile, seconds)
        finally:
            unit.close()
    report(results)
    if args.plot:
        save(args.plot, plot(results, args.rounds, args.seconds))
    for variant, top in profiles.items():
        print(f"the registry serving blobs to {args.profile} clients, {variant}:\n{top}")


def plot(results: dict[tuple[str, str], list[float]], rounds: int, seconds: float) -> str:
    """Blob MB/s per client count, the registry against nginx, one panel per variant."""
    panels = {
        variant: {
            f"{clients} client{'s' if clients > 1 else ''}": {
                server: statistics.median(results[(variant, f"{server} blob {clients} mbps")])
                for server in ("registry", "nginx")
            }
            for clients in CLIENTS
        }
        for variant in dict.fromkeys(v for v, _ in results)
        if variant != "GOGC"
    }
    return bar_chart(
        "Pulling a 64 MB blob: the registry against nginx (bench/serve.py)",
        panels,
        "MB/s",
        [
            f"Median of {rounds} round(s) of {seconds:g} s per measurement, wrk (2 threads,"
            " keep-alive) on loopback; the front is compared with plain nginx, the pull-only"
            " variants with nginx's basic auth.",
            *conditions(),
        ],
    )


def report(results: dict[tuple[str, str], list[float]]) -> None:
    def median(variant: str, name: str) -> float:
        return statistics.median(results[(variant, name)])

    variants = [v for v in dict.fromkeys(v for v, _ in results) if v != "GOGC"]
    print("blob MB/s, registry / nginx (ratio); server CPU-s per GB, registry / nginx (ratio)")
    for variant in variants:
        for clients in CLIENTS:
            name = f"blob {clients}"
            ours, theirs = (
                median(variant, f"registry {name} mbps"),
                median(variant, f"nginx {name} mbps"),
            )
            cpu, cpu_nginx = (
                median(variant, f"{s} {name} cpu_per_gb") for s in ("registry", "nginx")
            )
            idle, idle_nginx = (median(variant, f"{s} {name} idle") for s in ("registry", "nginx"))
            print(
                f"{variant:11s} {clients:2d} client(s): {ours:6.0f} / {theirs:6.0f} MB/s "
                f"({ours / theirs:4.2f}x); {cpu:5.2f} / {cpu_nginx:5.2f} CPU-s/GB "
                f"({cpu / cpu_nginx:4.2f}x); machine idle {idle:4.0%} / {idle_nginx:4.0%}"
            )
    for variant in variants:
        ours, theirs = (median(variant, f"{s} manifests rps") for s in ("registry", "nginx"))
        print(f"manifest GETs/s {variant:11s}: {ours:7.0f} (nginx {theirs:7.0f})")
    tuned, untuned = (median("GOGC", f"{s} manifests rps") for s in ("registry", "untuned"))
    print(
        f"manifest GETs/s, plain, side by side: {tuned:.0f} tuned (GOGC=400) vs {untuned:.0f} "
        f"as before (GOGC=100): {tuned / untuned:.2f}x"
    )
    print(
        json.dumps({f"{v} / {k}": round(statistics.median(x), 2) for (v, k), x in results.items()})
    )


if __name__ == "__main__":
    main()
