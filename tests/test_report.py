"""Every number the README and the committed notebooks show about a recorded run is rendered from results/:
`medssl report --check` passes on the committed tree and fails, naming the block and the value, when a results file changes."""
import shutil
from pathlib import Path
import pandas as pd
from medssl_nb.report import check, render, RENDERERS
from medssl_nb.cli import main

ROOT = Path(__file__).resolve().parents[1]

def test_every_rendered_block_agrees_with_the_results_files():
    problems = check(ROOT)
    assert problems == [], "\n".join(problems)

def test_every_study_is_reported_in_a_chapter_and_headlined_in_the_readme():
    "Each study's full block is in a chapter; the README (under 120 lines) carries the headline table, one row per study, and the chapter times."
    from medssl_nb.report import HEADLINES
    texts = {p.relative_to(ROOT / "nbs").as_posix(): p.read_text() for p in (ROOT / "nbs").rglob("*.ipynb") if p.name != "index.ipynb"}
    for name in ("quickstart", "compare", "label_efficiency", "ood", "scaling", "compute", "imbalance", "volumetric", "representations", "benchmarks", "robustness"):
        assert any(f"<!-- report:{name} -->" in t for t in texts.values()), name
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 120 and "<!-- report:headlines -->" in readme and "<!-- report:chapter_times -->" in readme
    for _, name, chapter, _ in HEADLINES:
        assert any(k.endswith(f"{chapter}.ipynb") and f"<!-- report:{name} -->" in t for k, t in texts.items()), (name, chapter)

def test_check_fails_when_one_value_in_one_results_file_changes(tmp_path):
    shutil.copytree(ROOT / "results", tmp_path / "results"); shutil.copytree(ROOT / "nbs", tmp_path / "nbs")
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    assert check(tmp_path) == []
    f = tmp_path / "results" / "ood" / "ood_best_worst.csv"
    d = pd.read_csv(f); d.loc[d.setup == "shift: blur 5", "best_auroc"] = 0.5; d.to_csv(f, index=False)
    problems = check(tmp_path)
    assert problems and all("'ood'" in p for p in problems) and any("0.970" in p and "0.500" in p for p in problems), problems
    assert main(["report", "--check", "--root", str(tmp_path)]) == 1
    assert main(["report", "--check", "--root", str(ROOT)]) == 0

def test_every_renderer_runs_on_the_committed_results():
    for name in RENDERERS:
        block = render(name, ROOT / "results")
        assert block.startswith(f"<!-- report:{name} -->") and "nan" not in block.lower().replace("nan)", ""), name
