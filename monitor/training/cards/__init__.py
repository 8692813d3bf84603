"""The model cards' text: one markdown template per card beside this file, its ``str.format`` fields filled by
the tool that measures the numbers. The templates ship inside the package; ``tests/test_cards.py`` renders each
from fixed inputs."""

from importlib.resources import files


def render(template: str, **fields) -> str:
    """The card template named ``template`` (a file in this folder) with ``fields`` filled in."""
    return files(__name__).joinpath(template).read_text(encoding="utf-8").format(**fields)
