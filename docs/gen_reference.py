"""Writes the generated pages into the site (run by mkdocs-gen-files at build time): the reference
pages from the code, the home page from README.md and the changelog from CHANGELOG.md, so that
neither is kept twice."""

import sys
from pathlib import Path

import mkdocs_gen_files

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from reference_pages import PAGES  # noqa: E402

for path, write in PAGES.items():
    with mkdocs_gen_files.open(path, "w") as page:
        page.write(write())


def site_links(text: str) -> str:
    """A top-level file's links point into docs/; on the site they are relative to docs/."""
    return text.replace("](docs/", "](").replace("](CHANGELOG.md)", "](changelog.md)")


for source, target in (("README.md", "index.md"), ("CHANGELOG.md", "changelog.md")):
    with mkdocs_gen_files.open(target, "w") as page:
        page.write(site_links((HERE.parent / source).read_text()))
