"""The documentation stays true: a page per family, links and pictures that resolve, commands and keys that run.

Every check reads the Markdown as a user would copy from it: a preset named after ``ganforge train`` must exist,
and every ``key=value`` shown in backticks must validate against the config of the page's preset (a renamed key
or a typo fails here, not in a user's terminal).
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from ganforge.config import load_config, preset_dict, preset_names
from ganforge.families import all_families

ROOT = Path(__file__).resolve().parent.parent
FAMILIES_DIR = ROOT / "docs" / "families"
PAGES = sorted(FAMILIES_DIR.glob("*.md"))
MARKDOWN = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

CODE_SPAN = re.compile(r"`([^`\n]+)`")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
KEY_VALUE = re.compile(r"^(model|train|data|eval|guard)\.[\w.]+=\S+$")
GENERIC_PRESET = "dcgan-mnist"  # the pages about losses and tricks show switches of the default DCGAN
# their loose `key=value` spans are switches of a DCGAN without one-sided label smoothing, which a loss without a
# real-label target (hinge, wgan, rpgan) refuses: shown alone, `train.loss=hinge` is valid there
LOOSE_PRESET = "lsgan-mnist"


def code_spans(page: Path) -> list[str]:
    return CODE_SPAN.findall(page.read_text())


def train_commands(page: Path) -> list[list[str]]:
    """The ``ganforge train PRESET ...`` spans of a page, as argument lists (a bare ``ganforge train`` included;
    placeholders such as ``PRESET`` left out)."""
    commands = [shlex.split(span)[2:] for span in code_spans(page) if span.startswith("ganforge train")]
    return [args for args in commands if not (args and args[0].isupper())]


def prose(doc: Path) -> str:
    """A page without its fenced code blocks and code spans, where brackets are code, not links."""
    return CODE_SPAN.sub("", FENCE.sub("", doc.read_text()))


def preset_of(args: list[str]) -> str:
    return args[0] if args and not args[0].startswith("-") else GENERIC_PRESET


def set_items(args: list[str]) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--set"]


def reference_preset(page: Path) -> str:
    """The preset a page's loose ``key=value`` spans belong to: its first preset of the page's own family."""
    for args in train_commands(page):
        name = preset_of(args)
        if name in preset_names() and preset_dict(name)["model"]["family"] == page.stem:
            return name
    return LOOSE_PRESET


def test_every_registered_family_has_a_page_linked_from_the_index():
    index = (FAMILIES_DIR / "README.md").read_text()
    for family in all_families():
        page = FAMILIES_DIR / f"{family}.md"
        assert page.is_file(), f"no documentation page for family {family!r}: write {page}"
        assert f"]({family}.md)" in index, f"docs/families/README.md does not link {family}.md"
    for page in PAGES:
        assert page.name == "README.md" or f"]({page.name})" in index, f"{page.name} is not in the index"
    assert "docs/families/README.md" in (ROOT / "README.md").read_text()


def test_every_family_page_lists_the_train_keys_its_family_reads():
    """The keys ``Family.train_keys`` declares (the rest are refused) are the ones its page names, no more."""
    import re

    from ganforge.config import TrainConfig, family_train_keys

    for family in all_families():
        text = (FAMILIES_DIR / f"{family}.md").read_text()
        assert "## Train keys" in text, f"docs/families/{family}.md has no '## Train keys' section"
        section = text.split("## Train keys", 1)[1].split("\n## ", 1)[0]
        named = {k for k in re.findall(r"`train\.(\w+)`", section) if k in TrainConfig.model_fields}
        assert named - {"lr_decay"} == set(family_train_keys(family)), family


@pytest.mark.parametrize("doc", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_local_links_and_pictures_resolve(doc):
    for target in LINK.findall(prose(doc)):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue  # web addresses and anchors
        path = (doc.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{doc.relative_to(ROOT)} links {target}, which does not exist"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_family_page_commands_name_presets_and_their_overrides_validate(page):
    commands = train_commands(page)
    if page.name != "README.md":
        assert commands, f"{page.name} shows no 'ganforge train' command"
    for args in commands:
        name = preset_of(args)
        assert name in preset_names(), f"{page.name}: 'ganforge train {name}': no such preset"
        load_config(name, set_items(args))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_family_page_config_keys_validate(page):
    preset = reference_preset(page)
    for span in code_spans(page):
        items = set_items(shlex.split(span)) if span.startswith("--set") else [span] if KEY_VALUE.match(span) else []
        if items:  # one span is one set of overrides, given together
            load_config(preset, items)  # raises, naming the key, when the page shows a key the config rejects


@pytest.mark.parametrize("page", [p for p in PAGES if p.name != "README.md"], ids=lambda p: p.name)
def test_family_page_has_the_parts_the_index_promises(page):
    text = page.read_text()
    assert "**The idea.**" in text or "the idea in a sentence" in text, f"{page.name}: no paragraph on the idea"
    assert "## Figures" in text and "## Samples" in text, f"{page.name}: needs Figures and Samples sections"
    assert re.search(r"!\[[^\]]*\]\(\.\./images/", text), f"{page.name}: no sample picture"
