"The project's own promises: README's two commands, CI runs README's test command, the nbdev 2 layout and requirements."
import configparser, re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def readme_blocks():
    "The shell blocks of README.md, each as its list of commands (comment lines left out)."
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:sh|bash)\n(.*?)```", text, re.S)
    return [[l.strip() for l in b.splitlines() if l.strip() and not l.strip().startswith("#")] for b in blocks]

def test_readme_has_exactly_two_commands():
    "Two commands: the quickstart, and the test command (the dev install, then `pytest`, on two lines so each can be timed)."
    blocks = readme_blocks()
    assert len(blocks) == 2, blocks
    quick, test = blocks
    assert len(quick) == 1 and "medssl quickstart" in quick[0], quick
    assert test == ['pip install -e ".[dev]"', "pytest"], test

def test_ci_runs_readmes_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    for line in readme_blocks()[1]: assert re.search(rf"(^|\n)\s*(if .*then )?{re.escape(line)}( \|\||;|$)", ci, re.M), line

def test_layout_and_requirements():
    for p in ("nbs", "medssl_nb", "settings.ini", "setup.py", "README.md", "_quarto.yml", "tests"):
        assert (ROOT / p).exists(), p
    cfg = configparser.ConfigParser(); cfg.read(ROOT / "settings.ini")
    req = cfg["DEFAULT"]["requirements"]
    for pkg in ("torch", "torchvision", "medmnist", "monai", "matplotlib", "seaborn", "umap-learn", "scikit-learn", "tqdm"):
        assert re.search(rf"(^|\s){re.escape(pkg)}([<>=!~ ]|$)", req), pkg
    for m in re.finditer(r"torch(?:vision)?\s*(==|>=|>)\s*([\d.]+)", req):  # never ask for a torch newer than the local cap
        assert m.group(1) != "==" or m.group(2).startswith(("2.", "0.")), m.group(0)
    dev = cfg["DEFAULT"]["dev_requirements"]
    for pkg in ("nbdev==2.4.14", "fastcore", "execnb", "jupyterlab", "pytest"): assert pkg in dev

def test_readme_is_the_index_notebook():
    "README.md is generated from nbs/index.ipynb (`medssl readme`, as nbdev_readme would with Quarto): the two must say the same."
    from medssl_nb.site import readme_from_index
    assert readme_from_index(ROOT / "nbs" / "index.ipynb") == (ROOT / "README.md").read_text(), "README.md is stale: edit nbs/index.ipynb, then `medssl readme`"
