"""The retention-policy option: validation, and which manifests a rule expires."""

from __future__ import annotations

import pytest

from charm_context import unit_state
from state.retention import (
    DAY,
    RepositoryContents,
    RetentionRule,
    expire,
    parse_retention,
    rule_for,
)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("[", "not valid YAML (line 1)"),
        ("ci/*: 3", "must be a list of rules"),
        ("- 3", "rule 1: must be a mapping"),
        ("- {repositories: a, keep-last: 1, keep: 2}", "rule 1: unknown keys keep"),
        ("- {keep-last: 1}", "rule 1: repositories: give a repository name pattern"),
        ("- {repositories: [a, 3], keep-last: 1}", "rule 1: repositories: give"),
        ("- {repositories: a, keep-last: -1}", "rule 1: keep-last: must be a whole number"),
        ("- {repositories: a, keep-last: true}", "rule 1: keep-last: must be a whole number"),
        ("- {repositories: a, untagged-days: x}", "rule 1: untagged-days: must be a number"),
        ("- {repositories: a, keep-tags: v*}", "rule 1: give keep-last, untagged-days or both"),
        ("- {repositories: a, keep-last: 1, keep-tags: {v: 1}}", "rule 1: keep-tags: give"),
    ],
)
def test_bad_policies_name_the_rule_and_the_problem(value, problem):
    rules, problems = parse_retention(value)
    assert rules == ()
    assert len(problems) == 1
    option, why = problems[0]
    assert option == "retention-policy"
    assert why.startswith(problem), why


def test_a_policy_parses_and_the_first_matching_rule_wins():
    rules, problems = parse_retention(
        "- {repositories: ci/keep/*, keep-last: 100}\n"
        "- repositories: [ci/*, builds]\n"
        "  keep-last: 2\n"
        "  keep-tags: [v*, latest]\n"
        "  untagged-days: 1.5\n"
    )
    assert problems == []
    assert rules[1] == RetentionRule(("ci/*", "builds"), 2, ("v*", "latest"), 1.5)
    assert rule_for(rules, "ci/keep/x") is rules[0]
    assert rule_for(rules, "ci/a/b") is rules[1], "* matches / too"
    assert rule_for(rules, "builds") is rules[1]
    assert rule_for(rules, "other") is None


def test_an_invalid_policy_blocks_the_charm_naming_the_option(ctx, port):
    state = ctx.run(ctx.on.config_changed(), unit_state(port, config={"retention-policy": "x"}))
    assert state.unit_status.name == "blocked"
    assert "retention-policy" in state.unit_status.message


NOW = 1_000_000_000.0
RULE = RetentionRule(("*",), keep_last=2, keep_tags=("v*", "latest"), untagged_days=7)


def contents(tags: dict[str, tuple[str, float]], untagged=None, children=None):
    return RepositoryContents(tags, untagged or {}, children or {})


def test_the_newest_n_tags_by_push_time_stay_and_protected_tags_do_not_count():
    expiry = expire(
        RULE,
        contents(
            {
                "b1": ("sha256:1", NOW - 10),
                "b2": ("sha256:2", NOW - 5),
                "b3": ("sha256:3", NOW - 1),
                "b0": ("sha256:0", NOW - 50),
                "v1.0": ("sha256:9", NOW - 99),
                "latest": ("sha256:3", NOW),
            }
        ),
        NOW,
    )
    assert set(expiry.manifests) == {"sha256:1", "sha256:0"}
    assert expiry.held == ()


def test_a_manifest_a_kept_tag_names_stays_and_the_expired_tag_is_reported_held():
    expiry = expire(
        RULE,
        contents(
            {"old": ("sha256:v", NOW - 50), "a": ("sha256:a", NOW), "b": ("sha256:b", NOW)}
            | {"v2": ("sha256:v", NOW - 60)}
        ),
        NOW,
    )
    assert expiry.manifests == {}
    assert expiry.held == ("old",)


def test_untagged_manifests_go_after_the_days_and_an_index_takes_its_children():
    expiry = expire(
        RULE,
        contents(
            {"a": ("sha256:a", NOW), "keep": ("sha256:k", NOW), "x": ("sha256:i", NOW - 9)},
            untagged={"sha256:old": NOW - 8 * DAY, "sha256:new": NOW - 6 * DAY},
            children={"sha256:i": ("sha256:c1", "sha256:c2"), "sha256:k": ("sha256:c2",)},
        ),
        NOW,
    )
    assert list(expiry.manifests) == ["sha256:i", "sha256:old", "sha256:c1"], (
        "index first; c2 stays, a kept index names it"
    )


def test_a_rule_without_keep_last_keeps_every_tag():
    rule = RetentionRule(("*",), untagged_days=0)
    expiry = expire(rule, contents({"a": ("sha256:a", 0.0)}, {"sha256:u": NOW - 1}), NOW)
    assert expiry.manifests == {"sha256:u": "untagged, pushed over 0 days ago"}


def test_a_platform_manifest_with_a_kept_tag_of_its_own_stays_when_its_index_goes():
    rule = RetentionRule(("*",), keep_last=1, keep_tags=("v*",))
    expiry = expire(
        rule,
        contents(
            {"old": ("sha256:i", NOW - 9), "new": ("sha256:n", NOW), "v1-amd64": ("sha256:c", 0)},
            children={"sha256:i": ("sha256:c", "sha256:d")},
        ),
        NOW,
    )
    assert list(expiry.manifests) == ["sha256:i", "sha256:d"]
