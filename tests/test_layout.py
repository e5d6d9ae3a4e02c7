"""The package's layers, checked on its source: the study layer is the only thing studies share (no study imports another),
every loss function lives in losses.py, the command line stays thin, and no function grows past a screen."""
import ast, re
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "medssl_nb"
# one module per question (and the commands that run methods on data): each imports the study layer, never each other
STUDY_MODULES = {"pretrain", "quickstart", "label_efficiency", "volumetric", "imbalance", "ood", "scaling", "compute", "representations"}
LOSS_NAME = re.compile(r"(_loss|^nt_xent\w*|^info_nce|^negative_cosine|^masked_(mse|l1)|^pretext_cross_entropy|^gaussian_kl)$")

def modules():
    return {p: ast.parse(p.read_text()) for p in sorted(PKG.rglob("*.py")) if p.name != "_modidx.py"}

def imported_modules(tree: ast.Module) -> set:
    "The medssl_nb modules a file imports, by their dotted name below the package."
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and n.module:
            if n.level: out.add(n.module)                                      # `from .pretrain import ...`
            elif n.module.startswith("medssl_nb."): out.add(n.module[len("medssl_nb."):])
        elif isinstance(n, ast.Import):
            out |= {a.name[len("medssl_nb."):] for a in n.names if a.name.startswith("medssl_nb.")}
    return out

def test_study_modules_exist():
    assert {p.stem for p in PKG.glob("*.py")} >= STUDY_MODULES | {"study"}

def test_no_study_module_imports_another():
    for p, tree in modules().items():
        if p.stem not in STUDY_MODULES: continue
        bad = sorted(m for m in imported_modules(tree) if m in STUDY_MODULES - {p.stem})
        assert not bad, f"{p.name} imports the study module(s) {bad}: share through medssl_nb.study instead"

def _decorators(fn) -> set:
    return {d.id if isinstance(d, ast.Name) else getattr(d, "attr", "") for d in fn.decorator_list}

def test_loss_functions_are_defined_in_losses_only():
    for p, tree in modules().items():
        if p.name == "losses.py": continue
        found = [n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and (LOSS_NAME.search(n.name) or "in_fp32" in _decorators(n))]
        assert not found, f"{p.relative_to(PKG.parent)} defines loss function(s) {found}: define them in losses.py (`#| export losses`)"

def test_losses_module_holds_the_losses_once():
    tree = modules()[PKG / "losses.py"]
    names = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    assert len(names) == len(set(names)), f"defined twice (an export appended twice?): {sorted({n for n in names if names.count(n) > 1})}"
    assert {"nt_xent", "info_nce", "moco_v3_loss", "byol_loss", "dino_loss", "barlow_twins_loss", "vicreg_loss", "vae_loss",
            "gan_d_loss", "masked_mse", "ibot_patch_loss", "koleo_loss"} <= set(names)

def test_no_function_longer_than_60_lines():
    long = [f"{p.relative_to(PKG.parent)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)" for p, tree in modules().items()
            for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > 60]
    assert not long, long

def test_cli_is_thin():
    assert len((PKG / "cli.py").read_text().splitlines()) < 200

def test_the_checks_can_fail(tmp_path):
    "The import and loss checks flag a file that breaks them."
    bad = ast.parse("from .label_efficiency import StudyBudget\nfrom medssl_nb.ood import run_ood\n@in_fp32\ndef my_loss(x): return x\n")
    assert imported_modules(bad) == {"label_efficiency", "ood"}
    assert [n.name for n in ast.walk(bad) if isinstance(n, ast.FunctionDef) and "in_fp32" in _decorators(n)] == ["my_loss"]
