"""A small CRI image-service client: pull and inspect images as kubelet does.

kubelet pulls through containerd's CRI plugin, which reads the registry
configuration of containerd's config.toml (`registry.mirrors`,
`registry.configs`, `config_path`), not what `ctr --hosts-dir` is given. The
messages come from our own minimal `cri_api.proto`, compiled when first used
(grpcio-tools), so no generated code is kept in the tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

_PROTO = "support/cri_api.proto"  # found on sys.path, where tests/ is


class CRIError(RuntimeError):
    """The runtime refused a call; carries its status code and message."""

    def __init__(self, code: grpc.StatusCode, details: str):
        self.code = code
        self.details = details
        super().__init__(f"{code.name}: {details}")


@dataclass(frozen=True)
class ImageStatus:
    """What ImageStatus reports of an image (None when the runtime does not have it)."""

    id: str
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]


class CRIClient:
    """`runtime.v1.ImageService` over containerd's unix socket."""

    def __init__(self, socket_path: str, *, timeout: float = 120.0):
        self._messages, services = grpc.protos_and_services(_PROTO)
        self._channel = grpc.insecure_channel(f"unix://{socket_path}")
        self._images: Any = services.ImageServiceStub(self._channel)
        self._timeout = timeout

    def _call(self, method: str, request: object, timeout: float | None) -> Any:
        try:
            return getattr(self._images, method)(request, timeout=timeout or self._timeout)
        except grpc.RpcError as e:
            raise CRIError(e.code(), e.details() or "") from None

    def _spec(self, image: str) -> Any:
        return self._messages.ImageSpec(image=image)

    def pull(
        self, image: str, *, username: str = "", password: str = "", timeout: float | None = None
    ) -> str:
        """PullImage (with kubelet's pull-secret credentials if given); returns the image id."""
        auth = self._messages.AuthConfig(username=username, password=password)
        request = self._messages.PullImageRequest(
            image=self._spec(image), auth=auth if username else None
        )
        return self._call("PullImage", request, timeout).image_ref

    def status(self, image: str) -> ImageStatus | None:
        """ImageStatus of `image`, None when the runtime does not hold it."""
        response = self._call(
            "ImageStatus", self._messages.ImageStatusRequest(image=self._spec(image)), None
        )
        if not response.HasField("image"):
            return None
        found = response.image
        return ImageStatus(found.id, tuple(found.repo_tags), tuple(found.repo_digests))

    def remove(self, image: str) -> None:
        """RemoveImage; removing an image the runtime does not hold is not an error."""
        self._call("RemoveImage", self._messages.RemoveImageRequest(image=self._spec(image)), None)

    def repo_digest(self, image: str) -> str:
        """The digest of `image`'s repository, as `crictl inspecti` shows in `repoDigests`.

        Seed 004's check that a pull came through a mirror: the digest after
        `@` equals the source's manifest digest.
        """
        status = self.status(image)
        if status is None:
            raise KeyError(f"the runtime holds no image {image!r}")
        repository = image.rsplit("@", 1)[0]
        tail = repository.rsplit("/", 1)[-1]
        if ":" in tail:
            repository = repository[: -len(tail)] + tail.split(":", 1)[0]
        for repo_digest in status.repo_digests:
            name, _, digest = repo_digest.partition("@")
            if name == repository:
                return digest
        raise KeyError(f"{image!r} has no repository digest for {repository}: {status}")

    def close(self) -> None:
        self._channel.close()
