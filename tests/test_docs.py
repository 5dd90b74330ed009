"""The documentation agrees with the code: every setting documented, nothing documented that is not a
setting, docs/configuration.md as `make docs` would write it, and every relative link resolving."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]

#: Pages another branch owns and adds: a link to one is checked once it exists.
OWNED_ELSEWHERE = {DOCS / "runbooks.md"}


def _generator():
    spec = importlib.util.spec_from_file_location("gen_configuration", ROOT / "scripts" / "gen_configuration.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


gen = _generator()


@pytest.mark.parametrize("service, module, source", gen.SERVICES, ids=[s[0] for s in gen.SERVICES])
def test_every_setting_has_its_one_line_of_meaning(service, module, source):
    cls = importlib.import_module(module).Settings
    docs, _ = gen.field_docs(ROOT / source)
    undocumented = [f.name for f in dataclasses.fields(cls) if not docs.get(f.name)]
    assert not undocumented, f"{source}: add a docstring after each of {undocumented}"


def _documented(service: str) -> set[str]:
    """The variables docs/configuration.md lists under ``### <service>`` in its generated part."""
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    generated = text.split(gen.BEGIN, 1)[1].split(gen.END, 1)[0]
    section = generated.split(f"### {service}\n", 1)[1].split("\n### ", 1)[0]
    return set(re.findall(r"^\| `([A-Z0-9_]+)` \|", section, re.M))


@pytest.mark.parametrize("service, module, source", gen.SERVICES, ids=[s[0] for s in gen.SERVICES])
def test_configuration_lists_exactly_the_settings(service, module, source):
    fields = {f.name.upper() for f in dataclasses.fields(importlib.import_module(module).Settings)}
    documented = _documented(service)
    assert not fields - documented, f"settings missing from docs/configuration.md (run `make docs`): {sorted(fields - documented)}"
    assert not documented - fields, f"docs/configuration.md lists settings {service} does not have: {sorted(documented - fields)}"


def test_configuration_page_is_what_make_docs_writes():
    current = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert gen.splice(current, gen.render()) == current, "docs/configuration.md is stale: run `make docs`"


def test_make_docs_rewrites_only_the_generated_part(tmp_path, monkeypatch):
    page = tmp_path / "configuration.md"
    page.write_text(f"# Configuration\n\nProse.\n\n{gen.BEGIN}\n| `GONE` | str | empty | removed |\n{gen.END}\n\nMore prose.\n",
                    encoding="utf-8")
    monkeypatch.setattr(gen, "DOC", page)
    assert gen.main(["--check"]) == 1
    assert gen.main([]) == 0
    assert gen.main(["--check"]) == 0
    text = page.read_text(encoding="utf-8")
    assert "`GONE`" not in text and "`CONNECT_TIMEOUT`" in text
    assert text.startswith("# Configuration\n\nProse.\n\n") and text.endswith("\n\nMore prose.\n")


LINK = re.compile(r"!?\[(?:[^\]]|\][^(])*?\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.M):
        slug = _slug(heading)
        n = seen.get(slug, 0)
        anchors.add(slug if n == 0 else f"{slug}-{n}")
        seen[slug] = n + 1
    return anchors


def _links(page: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", page.read_text(encoding="utf-8")))


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_resolve(page):
    broken = []
    for target in _links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if resolved in OWNED_ELSEWHERE and not resolved.exists():
            continue
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target}: no heading with that anchor in {resolved.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_links_between_docs_are_relative():
    absolute = [(p.name, t) for p in PAGES for t in _links(p)
                if re.match(r"^https?://github\.com/[^/]+/payhook", t, re.I) or t.startswith("/")]
    assert not absolute, f"use relative links: {absolute}"


def test_readme_stays_a_front_page():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail into docs/"
    text = "\n".join(lines)
    assert text.index("make run") < text.index("## How it fits together")
    for page in sorted(DOCS.glob("*.md")):
        assert f"(docs/{page.name}" in text, f"README.md does not link docs/{page.name}"
