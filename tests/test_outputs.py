"Committed notebook outputs are what a reader sees on the site: no warnings, tracebacks or paths of the machine that ran them."
import json, re
from pathlib import Path

NBS = Path(__file__).resolve().parents[1] / "nbs"
BAD = re.compile(r"Traceback \(most recent call last\)|\w*Warning: |(?<![\w.])/(?:tmp|work|home|root|Users|private|var/folders)/[\w.-]+")

def output_texts(nb: dict):
    "(cell index, text) of every output of every code cell: streams, plain text, markdown, HTML and error tracebacks."
    for i, c in enumerate(nb["cells"]):
        for o in c.get("outputs", []):
            parts = [o.get("text", "")] + [o.get("data", {}).get(k, "") for k in ("text/plain", "text/markdown", "text/html")] + o.get("traceback", [])
            yield i, "".join("".join(p) if isinstance(p, list) else p for p in parts)

def findings(path: Path) -> list[str]:
    return [f"{path.relative_to(NBS)} cell {i}: {m.group(0)!r}" for i, t in output_texts(json.loads(path.read_text())) for m in BAD.finditer(t)]

def test_committed_outputs_are_clean():
    bad = [f for p in sorted(NBS.rglob("*.ipynb")) if ".ipynb_checkpoints" not in p.parts for f in findings(p)]
    assert not bad, "outputs a reader should not see (re-execute the notebook, or fix the cell):\n" + "\n".join(bad[:40])

def test_the_check_can_fail(tmp_path):
    nb = {"cells": [{"cell_type": "code", "source": "", "outputs": [
        {"output_type": "stream", "name": "stderr", "text": ["/tmp/tmpab12/x.py:3: UserWarning: careful\n"]},
        {"output_type": "error", "ename": "ValueError", "evalue": "", "traceback": ["Traceback (most recent call last)"]}]}]}
    p = NBS / "_probe_outputs.ipynb"
    try:
        p.write_text(json.dumps(nb)); got = findings(p)
    finally: p.unlink()
    assert any("/tmp/tmpab12" in g for g in got) and any("UserWarning" in g for g in got) and any("Traceback" in g for g in got)
