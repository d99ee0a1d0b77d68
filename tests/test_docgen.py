"""docs/reference.md is generated from the models (python -m doris_operator.api.docgen) and up to date."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from doris_operator.api import docgen
from doris_operator.api import doriscluster as dc

ROOT = Path(__file__).resolve().parents[1]


def test_checked_in_reference_is_up_to_date() -> None:
    path = ROOT / docgen.REFERENCE_PATH
    assert path.exists(), f"{path} missing: run python -m doris_operator.api.docgen"
    assert path.read_text() == docgen.render(), (
        f"{path} is stale: run python -m doris_operator.api.docgen and commit the result"
    )


def test_every_spec_field_is_documented() -> None:
    text = docgen.render()
    order, _ = docgen.walk()
    for model in order:
        assert f"### {model.__name__}" in text or model is dc.DorisCluster
        for name, field in docgen.own_fields(model).items():
            assert f"| `{docgen.wire_name(name, field)}`" in text, f"{model.__name__}.{name}"


def test_extensions_enums_and_bounds_are_shown() -> None:
    text = docgen.render()
    assert "| `externalTrafficPolicy` *(extension)* | string |" in text
    assert "One of `Cluster`, `Local`." in text
    assert "| `loadBalancerIP` | string |" in text  # official field: no marker
    assert "Bounds: >= 0, <= 65535." in text  # servicePorts[].nodePort
    assert "[][ServicePort](#serviceport)" in text
    assert "map[string]quantity" in text
    assert "`spec.<comp>Spec.service.servicePorts[]`" in text
    assert "nodePort must be in the node port range 30000-32767" in text  # CEL rule
    # the extension marker sits in the field column, not in the description
    assert "| *(extension)*" not in text
    assert not re.search(r"\| \*\(extension\)\* ", text)


def test_every_internal_link_has_an_anchor() -> None:
    text = docgen.render()
    anchors = set(re.findall(r'<a id="([a-z0-9]+)"></a>', text))
    links = set(re.findall(r"\]\(#([a-z0-9]+)\)", text))
    assert links <= anchors, links - anchors


def test_type_names() -> None:
    assert docgen.type_name(list[dc.Component] | None) == "[]string"
    assert docgen.type_name(dict[str, str] | None) == "map[string]string"
    assert docgen.type_name(int | None) == "integer"
    assert docgen.enum_values(list[dc.ServiceType] | None) == ["ClusterIP", "NodePort", "LoadBalancer"]


def test_check_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert docgen.main(["--check"]) == 1
    assert docgen.main([]) == 0
    assert docgen.main(["--check"]) == 0


def test_fallback_descriptions_name_existing_fields_without_docstrings() -> None:
    models = {m.__name__: m for m in docgen.walk()[0]}
    for key in docgen.FALLBACK:
        model_name, _, name = key.partition(".")
        model = models[model_name]
        assert name in model.model_fields, key
        doc = (model.model_fields[name].description or "").replace(docgen.EXTENSION, "").strip()
        assert not doc, f"{key} has a docstring now: drop the fallback"


USER_DOCS = ("getting-started.md", "access.md", "operations.md", "reference.md")


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes; plus explicit ids."""
    out = set(re.findall(r'<a id="([^"]+)"></a>', markdown))
    for heading in re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE):
        out.add(re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-"))
    return out


@pytest.mark.parametrize("doc", USER_DOCS)
def test_doc_links_resolve(doc: str) -> None:
    text = (ROOT / "docs" / doc).read_text()
    for target, anchor in re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]+))?\)", text):
        if target.startswith(("http://", "https://")):
            continue
        path = (ROOT / "docs" / target) if target else ROOT / "docs" / doc
        assert path.exists(), f"{doc}: link to missing {target}"
        if anchor and path.suffix == ".md":
            assert anchor in _anchors(path.read_text()), f"{doc}: no anchor #{anchor} in {path.name}"
