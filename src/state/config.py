"""The charm's config options, typed and validated once.

`CharmConfig` is loaded with `CharmBase.load_config`. Every problem is found
in one pass and reported together, naming the options, before anything is
written: a registry already serving keeps its last good configuration.
"""

from __future__ import annotations

import logging
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

import yaml

from state import front
from state.access import (
    REPOSITORY_PREFIX,
    RESERVED_PREFIX,
    ROLES,
    AccessPlan,
    RelationCredential,
    User,
    plan_access,
)
from state.maintenance import MAX_MAINTENANCE_WINDOW, schedule_problem
from state.mirrors import Mirror, parse_mirrors
from state.packages import PACKAGE_STATUSES, AptSource, apt_sources, extra_packages
from state.retention import RetentionRule, parse_retention
from state.settings import (
    CHARM_PASSWORD_PATH,
    CLIENT_CAS_PATH,
    CLIENT_IDENTITY_DIR,
    CONFIG_PATH,
    DATA_DIR,
    DROPIN_PATH,
    ENVIRONMENT_PATH,
    HTPASSWD_PATH,
    SECRET_URI,
    TOKEN_ROOT_CERTS_PATH,
    BasicAuth,
    Storage,
    TokenAuth,
    Upstream,
    is_absolute_url,
    is_nagios_name,
    is_secret_uri,
    secret_value,
    servicegroup_names,
    url_problem,
)
from state.tls import (
    Checked,
    ServerTLS,
    TLSMaterialError,
    check_server_tls,
    decode_base64_pem,
    load_certificates,
)

logger = logging.getLogger(__name__)

LOG_LEVELS = ("error", "warn", "info", "debug")
STORAGE_CACHES = ("inmemory", "none")
S3_LOG_LEVELS = ("off", "debug")
S3_MIN_CHUNK = 5 * 1024 * 1024
DEFAULT_REGISTRY_IMAGE = "registry:2"
SECRET_OPTIONS = (
    "auth-basic-password",
    "cache-password",
    "storage-s3-secretkey",
    "storage-swift-password",
    "tls-key-blob",
)
"""Options that also take a Juju secret's URI (`secret:...`) instead of the value."""
BCRYPT_MAX_BYTES = 72
# htpasswd: a line is `user:hash`; `#` starts a comment and the registry
# trims whitespace, so either would lock the user out.
BASIC_USER = re.compile(r"[^\s:#][^\s:]{0,254}")
TLS_PATH_OPTIONS = ("tls-cert-path", "tls-key-path", "tls-ca-path")
CHARM_FILES = (
    CONFIG_PATH,
    CHARM_PASSWORD_PATH,
    CLIENT_CAS_PATH,
    HTPASSWD_PATH,
    TOKEN_ROOT_CERTS_PATH,
    ENVIRONMENT_PATH,
    DROPIN_PATH,
    front.HAPROXY_CONFIG_PATH,
    front.PEM_PATH,
    front.UNIT_PATH,
    front.DROPIN_PATH,
    front.TMPFILES_PATH,
)
"""The files the charm writes for itself; a tls-*-path must name none of them."""
NAGIOS_NAME_RULE = "must be a Nagios name: letters, digits and _ . @ : + - (not first), no spaces"
RESERVED_DIRS = (
    DATA_DIR,
    front.MIRROR_CONFIG_DIR,
    CLIENT_IDENTITY_DIR,
    "/dev",
    "/proc",
    "/sys",
)


def secret_uris(options: Mapping[str, object]) -> set[str]:
    """The Juju secrets the config options name, for the charm to read beforehand."""
    uris = {
        value
        for option in SECRET_OPTIONS
        if isinstance(value := options.get(option), str) and is_secret_uri(value)
    }
    mirrors = options.get("cache-mirrors")
    if isinstance(mirrors, str):
        uris.update(SECRET_URI.findall(mirrors))
    users = options.get("auth-users")
    if isinstance(users, str) and is_secret_uri(users):
        uris.add(users)
    return uris


class InvalidConfigError(ValueError):
    """The config options that are wrong, each with the reason."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{options}: {why}" for options, why in problems))

    @property
    def options(self) -> list[str]:
        """The names of the options at fault, in order."""
        return [options for options, _ in self.problems]


@dataclass(frozen=True, kw_only=True)
class CharmConfig:
    """All config options; field names are the options with dashes as underscores."""

    auth_basic_user: str = "admin"
    auth_basic_password: str = field(default="", repr=False)
    auth_users: str = ""
    auth_anonymous_pull: bool = False
    auth_token_realm: str = ""
    auth_token_service: str = ""
    auth_token_issuer: str = ""
    auth_token_root_certs: str = field(default="", repr=False)
    cache_remoteurl: str = ""
    cache_username: str = ""
    cache_password: str = field(default="", repr=False)
    cache_mirrors: str = field(default="", repr=False)
    http_host: str = ""
    registry_port: int = 5000
    debug_port: int = 5001
    prometheus_metrics: bool = False
    log_level: str = "info"
    maintenance_schedule: str = ""
    maintenance_window: int = 120
    registry_http_proxy: str = ""
    registry_https_proxy: str = ""
    registry_image: str = DEFAULT_REGISTRY_IMAGE
    registry_name: str = "registry"
    retention_policy: str = ""
    storage_cache: str = "inmemory"
    storage_delete: bool = False
    storage_read_only: bool = False
    storage_redirect_disable: bool = True
    storage_swift_authurl: str = ""
    storage_swift_container: str = "docker-registry"
    storage_swift_username: str = ""
    storage_swift_password: str = field(default="", repr=False)
    storage_swift_region: str = ""
    storage_swift_tenant: str = ""
    storage_swift_domain: str = ""
    storage_s3_region: str = ""
    storage_s3_bucket: str = ""
    storage_s3_accesskey: str = ""
    storage_s3_secretkey: str = field(default="", repr=False)
    storage_s3_regionendpoint: str = ""
    storage_s3_forcepathstyle: bool = False
    storage_s3_encrypt: bool = False
    storage_s3_keyid: str = ""
    storage_s3_secure: bool = True
    storage_s3_skip_verify: bool = False
    storage_s3_skip_v4_auth: bool = False
    storage_s3_chunksize: int = 10485760
    storage_s3_multipartcopychunksize: int = 33554432
    storage_s3_multipartcopymaxconcurrency: int = 100
    storage_s3_multipartcopythresholdsize: int = 33554432
    storage_s3_rootdirectory: str = ""
    storage_s3_storageclass: str = "STANDARD"
    storage_s3_useragent: str = ""
    storage_s3_usedualstack: bool = False
    storage_s3_accelerate: bool = False
    storage_s3_objectacl: str = "private"
    storage_s3_loglevel: str = "off"
    tls_cert_blob: str = field(default="", repr=False)
    tls_key_blob: str = field(default="", repr=False)
    tls_ca_blob: str = field(default="", repr=False)
    tls_cert_path: str = "/etc/docker/registry/registry.crt"
    tls_key_path: str = "/etc/docker/registry/registry.key"
    tls_ca_path: str = "/etc/docker/registry/ca.crt"
    secrets: Mapping[str, Mapping[str, str] | None] = field(default_factory=dict, repr=False)
    """The content of each Juju secret the options name (None: not readable), by URI."""
    tls_client_auth: str = ""
    images_namespace: str = ""
    """Read by the images resource's import, which checks it as push checks `namespace`."""
    # The established charm's layers (layer:nagios, layer:apt) added these.
    nagios_context: str = "juju"
    nagios_servicegroups: str = ""
    extra_packages: str = ""
    package_status: str = "install"
    install_sources: str = ""
    install_keys: str = field(default="", repr=False)
    checked_tls: Checked = field(default_factory=dict, repr=False, compare=False)
    """TLS material found good in an earlier hook: not parsed again (not an option)."""

    # Derived once by validation; read these, not the raw options.
    basic_auth: BasicAuth | None = field(init=False, default=None, repr=False)
    users: tuple[User, ...] = field(init=False, default=(), repr=False)
    """The named users of the `auth-users` secret."""
    token_auth: TokenAuth | None = field(init=False, default=None, repr=False)
    cache: Upstream | None = field(init=False, default=None, repr=False)
    mirrors: tuple[Mirror, ...] = field(init=False, default=(), repr=False)
    retention: tuple[RetentionRule, ...] = field(init=False, default=(), repr=False)
    storage: Storage = field(init=False, default=Storage("filesystem"), repr=False)
    tls: ServerTLS | None = field(init=False, default=None, repr=False)
    extra_package_names: tuple[str, ...] = field(init=False, default=())
    apt_sources: tuple[AptSource, ...] = field(init=False, default=(), repr=False)

    def __post_init__(self):
        problems = self._resolve_secrets() + self._check_text()
        if problems:
            raise InvalidConfigError(problems)
        for check in (
            self._check_ports,
            self._check_http,
            self._check_auth,
            self._check_users,
            self._check_cache,
            self._check_mirrors,
            self._check_maintenance,
            self._check_storage,
            self._check_tls,
            self._check_nagios,
            self._check_apt,
        ):
            problems.extend(check())
        if problems:
            raise InvalidConfigError(problems)
        if self.registry_image != DEFAULT_REGISTRY_IMAGE:
            logger.warning(
                "registry-image=%s is ignored: the registry runs from the Ubuntu package",
                self.registry_image,
            )

    def access(
        self, relations: Mapping[int, RelationCredential], charm_password: str
    ) -> AccessPlan | None:
        """Who may do what with these options, the relations' credentials and the charm's own."""
        return plan_access(
            self.basic_auth,
            self.users,
            relations,
            charm_password,
            anonymous_pull=self.auth_anonymous_pull,
            front_running=bool(self.mirrors),
        )

    def _derive(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)

    def _resolve_secrets(self) -> list[tuple[str, str]]:
        """Replace `secret:...` values by the key named like the option, or the only key."""
        problems: list[tuple[str, str]] = []
        for option in SECRET_OPTIONS:
            name = option.replace("-", "_")
            uri = getattr(self, name)
            if not is_secret_uri(uri):
                continue
            value = secret_value(self.secrets.get(uri), option)
            if value is None:
                problems.append((option, secret_problem(uri, option)))
            else:
                self._derive(name, value)
        return problems

    def _check_text(self) -> list[tuple[str, str]]:
        """Refuse strings that are not Unicode text (lone surrogates cannot be written)."""
        problems: list[tuple[str, str]] = []
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, str):
                try:
                    value.encode()
                except UnicodeEncodeError:
                    problems.append((spec.name.replace("_", "-"), "is not valid Unicode text"))
        return problems

    def _check_ports(self) -> list[tuple[str, str]]:
        problems = [
            (option, f"{value} is not a TCP port (1-65535)")
            for option, value in (
                ("registry-port", self.registry_port),
                ("debug-port", self.debug_port),
            )
            if not 0 < value < 65536
        ]
        if self.registry_port == self.debug_port:
            problems.append(("registry-port, debug-port", "must differ"))
        return problems

    def _check_http(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if self.http_host and (why := url_problem(self.http_host, credentials=False)):
            problems.append(("http-host", why))
        if self.log_level not in LOG_LEVELS:
            problems.append(("log-level", f"must be one of {', '.join(LOG_LEVELS)}"))
        for option, value in (
            ("registry-http-proxy", self.registry_http_proxy),
            ("registry-https-proxy", self.registry_https_proxy),
        ):
            if value and (why := url_problem(value)):
                problems.append((option, why))
        return problems

    def _check_auth(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if self.auth_basic_password:
            password = self.auth_basic_password.encode()
            if len(password) > BCRYPT_MAX_BYTES or b"\0" in password:
                problems.append(
                    ("auth-basic-password", f"must be at most {BCRYPT_MAX_BYTES} bytes, no NUL")
                )
            if not BASIC_USER.fullmatch(self.auth_basic_user) or not (
                self.auth_basic_user.isprintable()
            ):
                problems.append(
                    (
                        "auth-basic-user",
                        "must be non-empty, hold no ':', whitespace or control characters"
                        " and not start with '#'",
                    )
                )
            elif not problems:
                self._derive(
                    "basic_auth", BasicAuth(self.auth_basic_user, self.auth_basic_password)
                )
        token = {
            "auth-token-realm": self.auth_token_realm,
            "auth-token-service": self.auth_token_service,
            "auth-token-issuer": self.auth_token_issuer,
            "auth-token-root-certs": self.auth_token_root_certs,
        }
        missing = [option for option, value in token.items() if not value]
        if len(missing) == len(token):
            return problems
        if missing:
            problems.append((", ".join(missing), "token auth needs all four auth-token-* options"))
            return problems
        if self.auth_basic_password or self.auth_users or self.auth_anonymous_pull:
            problems.append(
                (
                    "auth-basic-password, auth-users, auth-anonymous-pull, auth-token-*",
                    "basic and token auth are exclusive",
                )
            )
        if not is_absolute_url(self.auth_token_realm):
            problems.append(("auth-token-realm", "must be an absolute http(s) URL"))
        try:
            root_certs = decode_base64_pem(self.auth_token_root_certs)
            load_certificates(root_certs)
        except TLSMaterialError as e:
            problems.append(("auth-token-root-certs", str(e)))
            return problems
        if not problems:
            self._derive(
                "token_auth",
                TokenAuth(
                    self.auth_token_realm,
                    self.auth_token_service,
                    self.auth_token_issuer,
                    root_certs,
                ),
            )
        return problems

    def _check_users(self) -> list[tuple[str, str]]:
        """The `auth-users` secret: one key `users`, YAML mapping each user to its role."""
        if not self.auth_users:
            return []
        if not is_secret_uri(self.auth_users):
            return [("auth-users", "must name a Juju secret (secret:...) holding the users")]
        content = self.secrets.get(self.auth_users)
        text = secret_value(content, "users")
        if text is None:
            return [("auth-users", secret_problem(self.auth_users, "users"))]
        users, problems = parse_users(text, admin=self.basic_auth)
        self._derive("users", users)
        return [("auth-users", why) for why in problems]

    def _check_cache(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if bool(self.cache_username) != bool(self.cache_password):
            problems.append(("cache-username, cache-password", "set both or neither"))
        if not self.cache_remoteurl:
            if self.cache_username or self.cache_password:
                problems.append(("cache-remoteurl", "needed by cache-username/cache-password"))
            return problems
        if not is_absolute_url(self.cache_remoteurl):
            problems.append(("cache-remoteurl", "must be an absolute http(s) URL"))
        if not problems:
            self._derive(
                "cache", Upstream(self.cache_remoteurl, self.cache_username, self.cache_password)
            )
        return problems

    def _check_mirrors(self) -> list[tuple[str, str]]:
        mirrors, problems = parse_mirrors(self.cache_mirrors, self.secrets)
        self._derive("mirrors", mirrors)
        return problems

    def _check_maintenance(self) -> list[tuple[str, str]]:
        rules, problems = parse_retention(self.retention_policy)
        self._derive("retention", rules)
        if why := schedule_problem(self.maintenance_schedule):
            problems.append(("maintenance-schedule", why))
        if not 1 <= self.maintenance_window <= MAX_MAINTENANCE_WINDOW:
            problems.append(
                ("maintenance-window", f"must be 1 to {MAX_MAINTENANCE_WINDOW} minutes")
            )
        return problems

    def _check_storage(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if self.storage_cache not in STORAGE_CACHES:
            problems.append(("storage-cache", f"must be one of {', '.join(STORAGE_CACHES)}"))
        swift = {
            "storage-swift-username": self.storage_swift_username,
            "storage-swift-password": self.storage_swift_password,
            "storage-swift-container": self.storage_swift_container,
        }
        s3 = {
            "storage-s3-region": self.storage_s3_region,
            "storage-s3-bucket": self.storage_s3_bucket,
        }
        if self.storage_swift_authurl:
            problems += self._swift_problems(swift)
        elif any(s3.values()) or self.storage_s3_accesskey or self.storage_s3_secretkey:
            problems += self._s3_problems(s3)
        elif self.storage_swift_username or self.storage_swift_password:
            problems.append(("storage-swift-authurl", "needed by the other storage-swift-*"))
        return problems

    def _swift_problems(self, required: dict[str, str]) -> list[tuple[str, str]]:
        missing = [option for option, value in required.items() if not value]
        if missing:
            return [(", ".join(missing), "needed for Swift storage")]
        if not is_absolute_url(self.storage_swift_authurl):
            return [("storage-swift-authurl", "must be an absolute http(s) URL")]
        params: dict[str, str | int | bool] = {
            "authurl": self.storage_swift_authurl,
            "username": self.storage_swift_username,
            "password": self.storage_swift_password,
            "container": self.storage_swift_container,
        }
        for name, value in (
            ("region", self.storage_swift_region),
            ("tenant", self.storage_swift_tenant),
            ("domain", self.storage_swift_domain),
        ):
            if value:
                params[name] = value
        self._derive("storage", Storage("swift", params))
        return []

    def _s3_problems(self, required: dict[str, str]) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        missing = [option for option, value in required.items() if not value]
        if missing:
            problems.append((", ".join(missing), "needed for S3 storage"))
        if bool(self.storage_s3_accesskey) != bool(self.storage_s3_secretkey):
            problems.append(("storage-s3-accesskey, storage-s3-secretkey", "set both or neither"))
        if self.storage_s3_regionendpoint and not is_absolute_url(self.storage_s3_regionendpoint):
            problems.append(("storage-s3-regionendpoint", "must be an absolute http(s) URL"))
        if self.storage_s3_chunksize < S3_MIN_CHUNK:
            problems.append(("storage-s3-chunksize", f"must be at least {S3_MIN_CHUNK}"))
        if self.storage_s3_loglevel not in S3_LOG_LEVELS:
            problems.append(("storage-s3-loglevel", f"must be one of {', '.join(S3_LOG_LEVELS)}"))
        for option, value in (
            ("storage-s3-multipartcopychunksize", self.storage_s3_multipartcopychunksize),
            (
                "storage-s3-multipartcopymaxconcurrency",
                self.storage_s3_multipartcopymaxconcurrency,
            ),
            ("storage-s3-multipartcopythresholdsize", self.storage_s3_multipartcopythresholdsize),
        ):
            if value < 1:
                problems.append((option, "must be positive"))
        if problems:
            return problems
        params: dict[str, str | int | bool] = {
            "region": self.storage_s3_region,
            "bucket": self.storage_s3_bucket,
            "forcepathstyle": self.storage_s3_forcepathstyle,
            "encrypt": self.storage_s3_encrypt,
            "secure": self.storage_s3_secure,
            "skipverify": self.storage_s3_skip_verify,
            "v4auth": not self.storage_s3_skip_v4_auth,
            "chunksize": self.storage_s3_chunksize,
            "multipartcopychunksize": self.storage_s3_multipartcopychunksize,
            "multipartcopymaxconcurrency": self.storage_s3_multipartcopymaxconcurrency,
            "multipartcopythresholdsize": self.storage_s3_multipartcopythresholdsize,
            "storageclass": self.storage_s3_storageclass,
            "usedualstack": self.storage_s3_usedualstack,
            "accelerate": self.storage_s3_accelerate,
            "objectacl": self.storage_s3_objectacl,
            "loglevel": self.storage_s3_loglevel,
        }
        for name, value in (
            ("accesskey", self.storage_s3_accesskey),
            ("secretkey", self.storage_s3_secretkey),
            ("regionendpoint", self.storage_s3_regionendpoint),
            ("keyid", self.storage_s3_keyid),
            ("rootdirectory", self.storage_s3_rootdirectory),
            ("useragent", self.storage_s3_useragent),
        ):
            if value:
                params[name] = value
        self._derive("storage", Storage("s3", params))
        return []

    def _check_tls_paths(self) -> list[tuple[str, str]]:
        """The TLS files go to distinct paths of their own, never onto the charm's files."""
        problems: list[tuple[str, str]] = []
        seen: dict[str, str] = {}
        for option in TLS_PATH_OPTIONS:
            path = getattr(self, option.replace("-", "_"))
            if not path.startswith("/") or not path.isprintable() or path.endswith("/"):
                problems.append((option, "must be an absolute path to a file"))
            elif posixpath.normpath(path) != path:
                problems.append((option, "must be a normalised path (no '.', '..' or '//')"))
            elif path in CHARM_FILES or any(
                path.startswith(f"{folder}/") for folder in RESERVED_DIRS
            ):
                problems.append((option, "names a file or folder the charm uses for itself"))
            elif path in seen:
                problems.append((f"{seen[path]}, {option}", "must name different files"))
            seen.setdefault(path, option)
        return problems

    def _check_tls(self) -> list[tuple[str, str]]:
        blobs = {
            "tls-cert-blob": self.tls_cert_blob,
            "tls-key-blob": self.tls_key_blob,
            "tls-ca-blob": self.tls_ca_blob,
        }
        problems = self._check_tls_paths()
        if self.tls_client_auth not in ("", "on", "off"):
            problems.append(("tls-client-auth", 'must be "on", "off" or empty'))
        if not any(blobs.values()):
            return problems
        if not self.tls_cert_blob or not self.tls_key_blob:
            return [*problems, ("tls-cert-blob, tls-key-blob", "set both or neither")]
        decoded: dict[str, str] = {}
        for option, value in blobs.items():
            if not value:
                continue
            try:
                decoded[option] = decode_base64_pem(value)
            except TLSMaterialError as e:
                problems.append((option, str(e)))
        if problems:
            return problems
        try:
            tls = check_server_tls(
                decoded["tls-cert-blob"],
                decoded["tls-key-blob"],
                decoded.get("tls-ca-blob"),
                self.checked_tls,
            )
        except TLSMaterialError as e:
            part, _, why = str(e).partition(": ")
            option = {"certificate": "tls-cert-blob", "key": "tls-key-blob"}.get(
                part, "tls-ca-blob"
            )
            return [(option, why)]
        self._derive("tls", tls)
        return []

    def _check_nagios(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if not is_nagios_name(self.nagios_context):
            problems.append(("nagios_context", NAGIOS_NAME_RULE))
        if not all(is_nagios_name(n) for n in servicegroup_names(self.nagios_servicegroups)):
            problems.append(("nagios_servicegroups", f"comma-separated names; {NAGIOS_NAME_RULE}"))
        return problems

    def _check_apt(self) -> list[tuple[str, str]]:
        names, problems = extra_packages(self.extra_packages)
        sources, source_problems = apt_sources(self.install_sources, self.install_keys)
        problems += source_problems
        if self.package_status not in PACKAGE_STATUSES:
            problems.append(("package_status", f"must be one of {', '.join(PACKAGE_STATUSES)}"))
        if not problems:
            self._derive("extra_package_names", names)
            self._derive("apt_sources", sources)
        return problems


def secret_problem(uri: str, option: str) -> str:
    """What to tell the operator when a secret an option names cannot be used."""
    return (
        f"cannot read {uri}: juju grant-secret it to this application, with one key"
        f" or a key named {option}"
    )


def parse_users(
    text: str, *, admin: BasicAuth | None = None
) -> tuple[tuple[User, ...], list[str]]:
    """The users of an `auth-users` secret, and what is wrong with it (naming the users).

    `name: {password: ..., role: pull|push|admin, prefix: team-a/}`; a prefix
    only for `push`. No secret value appears in a problem.
    """
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError):
        return (), ["the key users is not valid YAML (or nests too deep)"]
    if not isinstance(data, dict) or not data:
        return (), ["the key users must be a YAML mapping of user names to {password, role}"]
    users: list[User] = []
    problems: list[str] = []
    for name, entry in data.items():
        if not isinstance(name, str) or not BASIC_USER.fullmatch(name) or not name.isprintable():
            problems.append(
                f"user {str(name)[:64]!r}: a name holds no ':', whitespace or control"
                " characters and does not start with '#'"
            )
            continue
        if name.startswith(RESERVED_PREFIX) or (admin and name == admin.user):
            problems.append(
                f"user {name!r}: the name is the charm's ({RESERVED_PREFIX}*) or auth-basic-user's"
            )
            continue
        if not isinstance(entry, dict) or set(entry) - {"password", "role", "prefix"}:
            problems.append(f"user {name!r}: must be a mapping of password, role and prefix")
            continue
        password, role, prefix = entry.get("password"), entry.get("role"), entry.get("prefix", "")
        if not isinstance(password, str) or not password:
            problems.append(f"user {name!r}: needs a password (a string)")
        elif not password.isprintable() or len(password.encode()) > BCRYPT_MAX_BYTES:
            problems.append(
                f"user {name!r}: the password must be printable, at most {BCRYPT_MAX_BYTES} bytes"
            )
        elif role not in ROLES:
            problems.append(f"user {name!r}: role must be one of {', '.join(ROLES)}")
        elif prefix and role != "push":
            problems.append(f"user {name!r}: only a push user has a prefix")
        elif not isinstance(prefix, str) or (
            prefix and not REPOSITORY_PREFIX.fullmatch(prefix.rstrip("/") + "/")
        ):
            problems.append(
                f"user {name!r}: prefix must be repository path components (a-z, 0-9, . _ -),"
                " e.g. team-a/"
            )
        else:
            users.append(User(name, password, role, prefix.rstrip("/") + "/" if prefix else ""))
    return tuple(users), problems
