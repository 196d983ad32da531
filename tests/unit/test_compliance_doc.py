"""docs/compliance.md is generated from the modules' specs and must be kept in sync."""

from pathlib import Path

from blether.compliance import render
from blether.features import REGISTRY

DOC = Path(__file__).parents[2] / "docs" / "compliance.md"


def test_compliance_doc_is_up_to_date() -> None:
    assert DOC.read_text() == render(), (
        "docs/compliance.md is stale: run `python -m blether.compliance > docs/compliance.md`")


def test_every_module_declares_a_spec() -> None:
    for name, cls in REGISTRY.items():
        assert cls.specs, f"module {name} declares no RFC/XEP spec"
        for spec in cls.specs:
            assert spec.status in ("complete", "partial", "planned"), (name, spec)
