"""The documentation site, built offline from the committed notebooks and opened page by page in headless Chromium.

CI (.ci/run) installs Chromium and sets MEDSSL_REQUIRE_BROWSER=1, so there a missing browser fails the test instead of
skipping it; on a machine without Chromium the browser test is skipped with the command that installs it."""
from pathlib import Path
import re
import pytest, yaml
from medssl_nb.site import build_site, check_site, site_pages

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "_site"
    return out, build_site(ROOT / "nbs", out, progress=False)

def test_site_has_every_page_in_sidebar_order(site):
    out, rep = site
    order = [p for _, p in site_pages(ROOT / "nbs")]
    assert [p["notebook"] for p in rep["pages"]] == order
    assert all((out / p["page"]).exists() for p in rep["pages"])
    nbs = {p.relative_to(ROOT / "nbs").as_posix() for p in (ROOT / "nbs").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts}
    assert set(order) == nbs, f"notebooks missing from nbs/sidebar.yml: {sorted(nbs - set(order))}"
    assert sum(p["api_entries"] for p in rep["pages"]) > 200                     # show_doc after the exported definitions
    assert [s for s in dict.fromkeys(p["section"] for p in rep["pages"])] == ["Start here", "Part I: Foundations", "Part II: Pretext families", "Part III: 3D", "Part IV: Studies", "Appendix: Engineering"]

def test_committed_notebooks_show_real_results(site):
    "The notebooks are committed executed: every study page shows figures, and no committed output is an error."
    _, rep = site
    assert sum(p["error_outputs"] for p in rep["pages"]) == 0, [p["notebook"] for p in rep["pages"] if p["error_outputs"]]
    studies = [p for p in rep["pages"] if p["section"] in ("Part IV: Studies", "Part III: 3D")]
    assert studies and all(p["images"] > 0 for p in studies), [(p["notebook"], p["images"]) for p in studies]

def test_every_page_in_a_browser(site, tmp_path, chromium):
    out, rep = site
    shots = {"methods/11_contrastive.html": tmp_path / "contrastive.png", "20_label_efficiency.html": tmp_path / "label_efficiency.png"}
    df = check_site(out, screenshots=shots)
    assert len(df) == len(rep["pages"]) and df.loaded.all(), df[~df.loaded]
    assert (df.broken_links == 0).all(), df[df.broken_links > 0][["page", "broken"]].to_string()
    assert (df.error_cells == 0).all(), df[df.error_cells > 0]
    assert (df.images_drawn == df.images).all(), df[df.images_drawn < df.images]      # every image decoded and laid out
    assert (df.images >= df.image_outputs).all()                                   # every figure output reached the page
    assert (df.internal_links > 20).all()                                          # the sidebar is on every page
    assert all(f.stat().st_size > 20_000 for f in shots.values())
    # equations: KaTeX typeset every page whose markdown has TeX, without errors, and no `$...$` is left raw outside code
    assert (df.raw_math == 0).all(), df[df.raw_math > 0][["page", "raw_sample"]].to_string()
    assert (df.math_errors == 0).all(), df[df.math_errors > 0][["page", "math_errors"]]
    assert ((df.math_spans == 0) | (df.math_rendered > 0)).all() and df.math_rendered.sum() > 100, df[["page", "math_spans", "math_rendered"]]
    assert df.set_index("page").loc["methods/11_contrastive.html", "math_rendered"] > 10

def test_refuses_to_overwrite_a_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("keep")
    from medssl_nb.core import MedSSLError
    with pytest.raises(MedSSLError, match="not a site"): build_site(ROOT / "nbs", tmp_path, progress=False)
    assert (tmp_path / "mine.txt").read_text() == "keep"

def test_workflows_are_nbdevs():
    wf = {p.name: yaml.safe_load(p.read_text()) for p in (ROOT / ".github" / "workflows").glob("*.yaml")}
    ci = (ROOT / ".ci" / "run").read_text()
    run = [s.get("run", "") for s in wf["test.yaml"]["jobs"]["test"]["steps"]]
    assert "pytest" in run and any('pip install -e ".[dev]"' in r for r in run)                  # the public CI runs README's two commands, as .ci/run does
    readme = (ROOT / "README.md").read_text()
    assert '```sh\npip install -e ".[dev]"\npytest\n```' in readme
    assert '\npip install -e ".[dev]" || fast=$?\n' in ci and "then pytest || fast=$?; fi" in ci
    assert wf["deploy.yaml"]["jobs"]["deploy"]["steps"] == [{"uses": "fastai/workflows/quarto-ghp@master"}]
    assert any("medssl site" in s.get("run", "") and "--check" in s.get("run", "") for s in wf["site.yaml"]["jobs"]["site"]["steps"])

def test_quarto_config_is_nbdevs():
    "What nbdev_docs reads with Quarto: _quarto.yml (website, metadata files that exist), nbdev.yml from settings.ini, the sidebar."
    for q in (ROOT / "_quarto.yml", ROOT / "nbs" / "_quarto.yml"):
        cfg = yaml.safe_load(q.read_text())
        assert cfg["project"]["type"] == "website" and cfg["website"]["sidebar"]["style"] == "floating"
    meta = yaml.safe_load((ROOT / "nbs" / "_quarto.yml").read_text())["metadata-files"]
    assert all((ROOT / "nbs" / m).exists() for m in meta), meta
    nbdev_yml = yaml.safe_load((ROOT / "nbs" / "nbdev.yml").read_text())
    assert nbdev_yml["project"]["output-dir"] == "_docs" and nbdev_yml["website"]["repo-url"].endswith("medssl_nb")

def test_index_lists_the_learning_path_in_sidebar_order():
    "The landing page's learning path links every chapter of the sidebar, under its part, in the sidebar's order."
    import json, re
    text = "".join("".join(c["source"]) for c in json.loads((ROOT / "nbs" / "index.ipynb").read_text())["cells"] if c["cell_type"] == "markdown")
    path = text.split("## The learning path", 1)[1].split("\n## ", 1)[0]
    listed = [(sec, link) for sec, line in re.findall(r"^- \*\*(.+?):\*\* (.*)$", path, re.M) for link in re.findall(r"\]\(([^)]+)\.ipynb\)", line)]
    want = [(s, p.removesuffix(".ipynb")) for s, p in site_pages(ROOT / "nbs") if p != "index.ipynb"]
    assert listed == want, [x for x in want if x not in listed] or listed

def test_readme_links_point_into_nbs():
    from medssl_nb.site import readme_from_index
    text = readme_from_index(ROOT / "nbs" / "index.ipynb")
    links = re.findall(r"\]\(([^)\s]+\.ipynb)(?:#[^)]*)?\)", text)
    assert links and all((ROOT / l).exists() for l in links), [l for l in links if not (ROOT / l).exists()]
