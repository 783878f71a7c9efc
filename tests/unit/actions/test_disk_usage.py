"""The disk-usage action's accounting, over a registry API answered in memory."""

from __future__ import annotations

import json

from actions.disk_usage import UNKNOWN, human, measure, results
from workload.registry_api import Manifest


def image(layers: dict[str, int]) -> dict:
    return {
        "config": {"digest": "sha256:c", "size": 10},
        "layers": [{"digest": digest, "size": size} for digest, size in layers.items()],
    }


class FakeClient:
    """Repositories with tags; manifests by tag or digest (a tag may vanish mid-read)."""

    def __init__(self, repositories: dict[str, dict[str, Manifest | None]]):
        self.repositories = repositories

    def catalog(self) -> list[str]:
        return sorted(self.repositories)

    def tags(self, repository: str) -> list[str]:
        return list(self.repositories[repository])

    def manifest(self, repository: str, reference: str) -> Manifest | None:
        return self.repositories[repository].get(reference)


def test_object_storage_reports_what_the_api_cannot_tell_as_unknown_and_keeps_top_n():
    shared = Manifest("sha256:m1", 100, image({"sha256:base": 1000, "sha256:own": 50}))
    client = FakeClient({f"repo{i}": {"v1": shared, "gone": None} for i in range(5)})
    usage = measure(client, None, log=lambda _: None)  # type: ignore[arg-type]
    found = results(usage, top=2)
    assert found["total-bytes"] == 100 + 10 + 1000 + 50, "shared blobs counted once"
    assert found["shared-bytes"] == found["total-bytes"]
    assert found["repository-count"] == 5
    assert found["tag-count"] == 5, "a tag deleted while reading is skipped"
    assert found["repositories"].splitlines() == [
        "repo0 1160 (1.1 KiB, 1.1 KiB shared)",
        "repo1 1160 (1.1 KiB, 1.1 KiB shared)",
    ]
    assert found["untagged-count"] == UNKNOWN
    assert found["garbage-bytes"] == UNKNOWN
    assert "stored-bytes" not in found
    json.dumps(found)


def test_human_sizes():
    assert human(512) == "512 B"
    assert human(1536) == "1.5 KiB"
    assert human(3 * 1024**3) == "3.0 GiB"
