"""The learning chapters follow one template: learning goals and prerequisites first; the idea, the code and the experiments; 'What we saw'
(rendered from the chapter's outputs and checked by asserts); 3 to 6 exercises, conceptual and coding, whose solutions are cells the tests
execute (collapsed in JupyterLab, hidden on the site); further reading with links. The Part II chapters follow it so far."""
import json, re
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
TEMPLATED = ["01_data", "02_views", "03_backbones", "04_losses", "05_fit", "06_evaluate", "methods/11_contrastive", "methods/12_innate", "methods/13_distillation", "methods/14_redundancy", "methods/15_generative",
             "methods/16_selfpred", "methods/17_volumetric", "20_label_efficiency", "21_volumetric", "26_representations",
             "methods/09_heads", "methods/10_interface", "22_imbalance", "23_ood", "24_scaling", "25_compute", "methods/18_hybrid"]

def _cells(name):
    return [(c["cell_type"], "".join(c["source"]), c.get("metadata", {})) for c in json.loads((ROOT / "nbs" / f"{name}.ipynb").read_text())["cells"]]

@pytest.mark.parametrize("name", TEMPLATED)
def test_learning_chapter_follows_the_template(name):
    cells = _cells(name)
    heads = [(i, l) for i, (t, s, _) in enumerate(cells) if t == "markdown" for l in s.splitlines() if l.startswith("## ")]
    titles = [h for _, h in heads]
    assert titles[0] == "## Learning goals and prerequisites", titles[:2]
    at = {h: i for i, h in heads}
    for h in ("## What we saw", "## Exercises", "## Further reading"): assert h in at, (name, h)
    assert at["## What we saw"] < at["## Exercises"] < at["## Further reading"]
    goals = cells[at["## Learning goals and prerequisites"]][1]
    assert "**Prerequisites:**" in goals and goals.count("\n- ") >= 3
    saw = [s for t, s, _ in cells[at["## What we saw"]:at["## Exercises"]] if t == "code"]
    assert saw and all("assert" in s for s in saw), "every cell of 'What we saw' checks what it says"
    ex = cells[at["## Exercises"]][1]
    items = re.findall(r"^(\d+)\. \*\*\((concept|code)\)\*\*", ex, re.M)
    assert 3 <= len(items) <= 6 and [int(n) for n, _ in items] == list(range(1, len(items) + 1)), items
    kinds = {k for _, k in items}; assert kinds == {"concept", "code"}, kinds
    assert ex.count("<details><summary>Answer</summary>") == sum(k == "concept" for _, k in items)   # every conceptual one has its answer
    sols = {int(m.group(1)): md for t, s, md in cells if t == "code" for m in [re.match(r"#\| hide\n# Solution to exercise (\d+)", s)] if m}
    assert set(sols) == {int(n) for n, k in items if k == "code"}, (sorted(sols), items)
    assert all(md.get("jupyter", {}).get("source_hidden") for md in sols.values()), "solution cells start collapsed in JupyterLab"
    reading = cells[at["## Further reading"]][1]
    assert len(re.findall(r"\]\(https?://", reading)) >= 3
