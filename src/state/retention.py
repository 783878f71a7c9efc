"""The `retention-policy` option, and which manifests a policy expires.

The value is a YAML list of rules; a repository follows the first rule whose
`repositories` pattern (a shell glob, `*` matching `/` too) it matches, and
repositories matching no rule are never touched::

    - repositories: ["ci/*", "builds/*"]
      keep-last: 10          # the newest 10 tags by push time (not counting keep-tags)
      keep-tags: ["v*", latest]   # always kept
      untagged-days: 7       # manifests no tag points to, pushed over 7 days ago

The registry API deletes manifests, not tags: a manifest goes only when every
tag pointing at it expires, and the children of an index that stays, stay.
Deciding is pure (no I/O): the action gathers tags, push times and manifests.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass

from state.settings import load_yaml_option

OPTION = "retention-policy"
KEYS = ("repositories", "keep-last", "keep-tags", "untagged-days")
EXAMPLE = "e.g. '- {repositories: ci/*, keep-last: 10, keep-tags: [v*]}'"
DAY = 86400.0


@dataclass(frozen=True)
class RetentionRule:
    """What to keep in the repositories matching `repositories`; None: no limit."""

    repositories: tuple[str, ...]
    keep_last: int | None = None
    keep_tags: tuple[str, ...] = ()
    untagged_days: float | None = None

    def matches(self, repository: str) -> bool:
        """Whether the repository's name matches one of the rule's patterns."""
        return any(fnmatch.fnmatchcase(repository, p) for p in self.repositories)

    def protects(self, tag: str) -> bool:
        """Whether a tag is always kept."""
        return any(fnmatch.fnmatchcase(tag, p) for p in self.keep_tags)


def rule_for(rules: tuple[RetentionRule, ...], repository: str) -> RetentionRule | None:
    """The first rule matching the repository; None: the policy leaves it alone."""
    return next((rule for rule in rules if rule.matches(repository)), None)


def parse_retention(value: str) -> tuple[tuple[RetentionRule, ...], list[tuple[str, str]]]:
    """The rules `value` lists, and the problems found (empty when it is valid)."""
    if not value.strip():
        return (), []
    entries, problems = load_yaml_option(OPTION, value)
    if problems:
        return (), problems
    if not isinstance(entries, list) or not entries:
        return (), [(OPTION, f"must be a list of rules, {EXAMPLE}")]
    rules = []
    for number, entry in enumerate(entries, 1):
        rule, why = _parse_rule(entry)
        if rule is None:
            problems.append((OPTION, f"rule {number}: {why}"))
        else:
            rules.append(rule)
    return tuple(rules), problems


def _patterns(value: object) -> tuple[str, ...] | None:
    """A pattern or a list of them, as a tuple; None if not strings."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) and i.strip() for i in items):
        return None
    if not all(i.isprintable() for i in items):
        return None
    return tuple(items)


def _parse_rule(entry: object) -> tuple[RetentionRule | None, str]:
    """One rule, or None and why not."""
    if not isinstance(entry, dict):
        return None, f"must be a mapping with {', '.join(KEYS)}"
    unknown = sorted(str(key)[:64] for key in entry if key not in KEYS)
    if unknown:
        return None, f"unknown keys {', '.join(unknown)} (expected {', '.join(KEYS)})"
    repositories = _patterns(entry.get("repositories"))
    if not repositories:
        return None, "repositories: give a repository name pattern or a list of them"
    keep_tags = _patterns(entry.get("keep-tags", []))
    if keep_tags is None:
        return None, "keep-tags: give a tag pattern or a list of them"
    keep_last, untagged_days = entry.get("keep-last"), entry.get("untagged-days")
    if keep_last is not None and (
        isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 0
    ):
        return None, "keep-last: must be a whole number, 0 or more"
    if untagged_days is not None and (
        isinstance(untagged_days, bool)
        or not isinstance(untagged_days, int | float)
        or not 0 <= untagged_days < 100000
    ):
        return None, "untagged-days: must be a number of days, 0 or more"
    if keep_last is None and untagged_days is None:
        return None, "give keep-last, untagged-days or both (otherwise the rule keeps everything)"
    return RetentionRule(repositories, keep_last, keep_tags, untagged_days), ""


@dataclass(frozen=True)
class RepositoryContents:
    """What a repository holds: tags and untagged manifests, with push times (seconds)."""

    tags: Mapping[str, tuple[str, float]]
    """tag -> (manifest digest, when the tag was pushed)."""
    untagged: Mapping[str, float]
    """Digest of each manifest no tag points to -> when it was pushed."""
    children: Mapping[str, tuple[str, ...]]
    """Digest of each index -> the digests of the manifests it names."""


@dataclass(frozen=True)
class Expiry:
    """The manifests a rule deletes, each with why; tags kept only for sharing a manifest."""

    manifests: Mapping[str, str]
    held: tuple[str, ...] = ()
    """Expired tags that stay: they point at a manifest a kept tag also names."""


def expire(rule: RetentionRule, contents: RepositoryContents, now: float) -> Expiry:
    """The manifests `rule` deletes from a repository holding `contents` at time `now`."""
    disposable = sorted(
        (tag for tag in contents.tags if not rule.protects(tag)),
        key=lambda tag: (-contents.tags[tag][1], tag),
    )
    expired_tags = disposable[rule.keep_last :] if rule.keep_last is not None else []
    kept_digests = {d for tag, (d, _) in contents.tags.items() if tag not in expired_tags}
    manifests: dict[str, str] = {}
    held = []
    for tag in sorted(expired_tags):
        digest = contents.tags[tag][0]
        if digest in kept_digests:
            held.append(tag)
        else:
            tags = sorted(t for t in expired_tags if contents.tags[t][0] == digest)
            manifests[digest] = f"tags {', '.join(tags)} beyond the newest {rule.keep_last}"
    if rule.untagged_days is not None:
        cutoff = now - rule.untagged_days * DAY
        for digest, pushed in sorted(contents.untagged.items()):
            if pushed < cutoff:
                manifests[digest] = f"untagged, pushed over {rule.untagged_days:g} days ago"
    # An index goes with its platform manifests; a tagged one, or one a staying index
    # names, stays.
    for digest in list(manifests):
        for child in contents.children.get(digest, ()):
            manifests.setdefault(child, f"named only by {digest}")
    staying = (kept_digests | set(contents.untagged)) - set(manifests)
    needed = kept_digests | {c for index in staying for c in contents.children.get(index, ())}
    return Expiry(
        {digest: why for digest, why in manifests.items() if digest not in needed},
        tuple(held),
    )
