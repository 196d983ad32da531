"""docs/configuration.md lists exactly the keys the server accepts, with real defaults."""

from pathlib import Path

from blether.config_doc import render

DOC = Path(__file__).parents[2] / "docs" / "configuration.md"


def test_configuration_doc_is_up_to_date() -> None:
    assert DOC.read_text() == render(), (
        "docs/configuration.md is stale: run `python -m blether.config_doc > "
        "docs/configuration.md`")
