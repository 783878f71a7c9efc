"""The documentation stays true: links resolve, the reference matches the YAML, commands exist."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import itertools
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from charm import FREE_SPACE, STOPPED_BY_OPERATOR, STOPPED_FOR_JUJU, STOPPED_FOR_STORAGE
from charm_context import ACTIONS, CONFIG, META, PROJECT
from relations.cert_provider import WAITING

PAGES = sorted(
    [PROJECT / "README.md", PROJECT / "CONTRIBUTING.md", *(PROJECT / "docs").rglob("*.md")]
)
# Pages whose command blocks operators copy: each must name only what exists.
TASK_PAGES = sorted([PROJECT / "README.md", PROJECT / "docs/tutorial.md"])
TASK_PAGES += sorted((PROJECT / "docs/how-to").glob("*.md"))
FENCE = re.compile(
    r"^(?P<fence>```+|~~~+)(?P<lang>[^\n`]*)\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.M | re.S
)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(?P<text>.+?)[ \t#]*$", re.M)
HTML_ID = re.compile(r"<a\s+(?:id|name)=\"(?P<id>[^\"]+)\"")
PAGES_RENDERED = ("docs/reference/config.md", "docs/reference/actions.md")
SHELL_LANGS = {"sh", "bash", "shell", "console"}
SEPARATORS = {"|", "||", "&&", ";"}


def load_render_reference():
    """scripts/render-reference as a module (it has no .py suffix)."""
    path = PROJECT / "scripts/render-reference"
    loader = importlib.machinery.SourceFileLoader("render_reference", str(path))
    spec = importlib.util.spec_from_loader("render_reference", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def without_code(markdown: str) -> str:
    """The page without fenced blocks and code spans, where links and headings are not."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", markdown))


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text, lowercased, punctuation dropped."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links: their text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor a page has: its headings' slugs (with GitHub's -1, -2 for repeats), ids."""
    text = FENCE.sub("", page.read_text())
    found: set[str] = set(HTML_ID.findall(text))
    seen: dict[str, int] = {}
    for match in HEADING.finditer(text):
        slug = github_slug(match["text"])
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(f"{slug}-{count}" if count else slug)
    return found


def relative_links(page: Path) -> list[str]:
    return [
        m["target"]
        for m in LINK.finditer(without_code(page.read_text()))
        if not re.match(r"^[a-z][a-z0-9+.-]*:", m["target"])
    ]


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (linked.suffix != ".md" or anchor not in anchors(linked)):
            broken.append(f"{target}: no such anchor")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(PROJECT)))
def test_every_relative_link_and_anchor_resolves(page):
    assert broken_links(page) == []


def test_the_link_check_catches_a_missing_file_and_anchor(tmp_path):
    (tmp_path / "other.md").write_text(
        "# Other page\n\n## A `code` heading, twice\n\n## A `code` heading, twice\n"
    )
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n[ok](other.md#a-code-heading-twice-1) [ok](#page) [gone](missing.md)"
        " [bad](other.md#nowhere) `[in code](missing.md)`\n"
    )
    assert broken_links(page) == ["missing.md: no such file", "other.md#nowhere: no such anchor"]


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        ("Restarts, disk and health", "restarts-disk-and-health"),
        ("The one seam: `Machine`", "the-one-seam-machine"),
        (
            "`website` (we provide; haproxy's `reverseproxy`)",
            "website-we-provide-haproxys-reverseproxy",
        ),
        ("storage-s3-skip-v4-auth", "storage-s3-skip-v4-auth"),
        ("Air-gapped sites: image bundles", "air-gapped-sites-image-bundles"),
    ],
)
def test_anchors_follow_githubs_slug_rules(heading, slug):
    assert github_slug(heading) == slug


def test_the_reference_pages_are_rendered_from_the_yaml_files():
    """Fails when an option or action changed without `scripts/render-reference`."""
    for path, (current, rendered) in load_render_reference().rendered().items():
        assert current == rendered, f"{path.relative_to(PROJECT)}: run scripts/render-reference"


def test_a_new_option_changes_the_rendered_reference():
    render = load_render_reference()
    config = (PROJECT / "config.yaml").read_text()
    added = config + "  brand-new-option:\n    type: int\n    default: 3\n    description: New.\n"
    assert "### brand-new-option" not in render.render_config(config)
    assert "### brand-new-option\n\nType `int`, default `3`." in render.render_config(added)


def test_the_script_reports_drift_then_renders_it_away(tmp_path):
    for name in ("scripts/render-reference", "config.yaml", "actions.yaml", *PAGES_RENDERED):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROJECT / name, tmp_path / name)
    with (tmp_path / "actions.yaml").open("a") as actions:
        actions.write("new-action:\n  description: Does something new.\n")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        script = str(tmp_path / "scripts/render-reference")
        return subprocess.run(
            [sys.executable, script, *args], capture_output=True, text=True, check=False
        )

    drift = run("--check")
    assert drift.returncode == 1
    assert drift.stdout == "docs/reference/actions.md: out of date; run scripts/render-reference\n"
    assert run().returncode == 0
    assert run("--check").returncode == 0
    assert (
        "\n## new-action\n\nDoes something new.\n\nNo parameters.\n"
        in (tmp_path / "docs/reference/actions.md").read_text()
    )


def test_every_option_and_action_has_its_reference_entry():
    config_page = (PROJECT / "docs/reference/config.md").read_text()
    actions_page = (PROJECT / "docs/reference/actions.md").read_text()
    for option in CONFIG["options"]:
        assert f"\n### {option}\n" in config_page, option
    for action, spec in ACTIONS.items():
        assert f"\n## {action}\n" in actions_page, action
        for param in spec.get("params", {}):
            assert f"| `{param}` |" in actions_page, (action, param)


# Where the charm words a status: the statuses themselves, the plan's refusals, the
# pieces the Active message is built from.
STATUS_TEXT = re.compile(r'(?:Status|PlanError)\(\s*f?"([^"]*)"|\b(?:ready|how) \+?= f?"([^"]*)"')


def status_wordings() -> set[str]:
    """The fixed words of every status message in src/ (the longest run between fields)."""
    found = {STOPPED_BY_OPERATOR, STOPPED_FOR_JUJU, STOPPED_FOR_STORAGE, FREE_SPACE, WAITING}
    for module in (PROJECT / "src").rglob("*.py"):
        for match in STATUS_TEXT.finditer(module.read_text()):
            literal = match[1] if match[1] is not None else match[2]
            found.add(max(re.split(r"\{[^}]*\}", literal), key=len).strip())
    return {words for words in found if words}


def test_the_status_reference_names_every_status_the_charm_sets():
    page = (PROJECT / "docs/reference/statuses.md").read_text().replace("\\|", "|")
    wordings = status_wordings()
    assert "Ready at" in wordings  # the patterns still find the Active message
    assert "is held by another process; the registry cannot serve" in wordings
    assert sorted(w for w in wordings if w not in page) == []


def shell_commands(markdown: str) -> list[list[str]]:
    """The commands of the page's shell blocks, split into words; `$(...)` ones too."""
    commands: list[list[str]] = []
    for block in FENCE.finditer(markdown):
        if block["lang"].strip() not in SHELL_LANGS:
            continue
        script = re.sub(r"\\\n", " ", block["body"])
        for line in script.splitlines():
            commands += split_command(re.sub(r"^\s*\$ ", "", line))
    return commands


def split_command(line: str) -> list[list[str]]:
    try:
        words = shlex.split(line, comments=True)
    except ValueError:  # a line of a heredoc or TOML, not a command
        return []
    commands: list[list[str]] = [[]]
    for word in words:
        if word in SEPARATORS:
            commands.append([])
            continue
        commands[-1].append(word)
        for inner in re.findall(r"\$\(([^()]*)\)", word):
            commands += split_command(inner)
    return [c for c in commands if c]


def unknown_names(command: list[str]) -> list[str]:
    """What a juju command names on this charm that does not exist."""
    if command[:1] != ["juju"] or len(command) < 3:
        return []
    verb, target, *rest = command[1:]
    options = CONFIG["options"]
    if verb == "config" and target == "docker-registry":
        names = [w.split("=", 1)[0] for w in rest if not w.startswith("-")]
        return [f"option {n}" for n in names if n not in options]
    if verb == "deploy" and any(w == "docker-registry" or w.endswith(".charm") for w in command):
        given = [
            w.split("=", 1)[0] for prev, w in itertools.pairwise(command) if prev == "--config"
        ]
        return [f"option {n}" for n in given if n not in options]
    if verb == "run" and target.startswith("docker-registry/"):
        if not rest or rest[0] not in ACTIONS:
            return [f"action {rest[0] if rest else '(none)'}"]
        params = ACTIONS[rest[0]].get("params", {})
        names = [w.split("=", 1)[0] for w in rest[1:] if "=" in w and not w.startswith("-")]
        return [f"{rest[0]} param {n}" for n in names if n not in params]
    return []


@pytest.mark.parametrize("page", TASK_PAGES, ids=lambda p: str(p.relative_to(PROJECT)))
def test_commands_name_only_options_actions_and_params_that_exist(page):
    commands = shell_commands(page.read_text())
    assert [(c, unknown_names(c)) for c in commands if unknown_names(c)] == []


def test_the_command_check_catches_what_does_not_exist():
    page = """
```sh
juju config docker-registry registry-port=443 no-such-option=1
juju deploy docker-registry --config storage-s3-bukket=x -n 3
juju run docker-registry/0 push image=a nope=1 --format=json
juju run docker-registry/0 frobnicate
juju config containerd custom_registries="$(juju run docker-registry/0 images repo=x)"
```
"""
    found = [name for command in shell_commands(page) for name in unknown_names(command)]
    assert found == [
        "option no-such-option",
        "option storage-s3-bukket",
        "push param nope",
        "action frobnicate",
        "images param repo",
    ]


def test_the_readme_is_a_landing_page_with_the_two_commands_on_top():
    readme = (PROJECT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    first_block = FENCE.search(readme)
    assert first_block is not None
    assert "./scripts/install-test-deps && .venv/bin/pytest" in first_block["body"]
    assert "charmcraft pack && juju deploy" in first_block["body"]


def test_metadata_points_at_the_docs():
    docs = META["docs"]
    assert docs.endswith(("/docs", "docs/index.md")), docs
    assert docs.startswith(yaml.safe_load((PROJECT / "metadata.yaml").read_text())["source"])
