"""The model zoo shipped in results/zoo: every entry loads, its MD5s and provenance are in the manifest, a changed file is refused."""
import json, shutil
from pathlib import Path
import pytest
import torch
from medssl_nb.core import MedSSLError
from medssl_nb.data import expected_md5, file_md5
from medssl_nb.zoo import ZOO, MANIFEST, load_pretrained, weights_md5, zoo_status

ZOO_DIR = Path(__file__).resolve().parents[1] / "results" / "zoo"

def manifest(): return json.loads((ZOO_DIR / MANIFEST).read_text())

def test_every_entry_is_recorded_with_its_provenance():
    man = manifest()
    assert set(man) == set(ZOO)
    for key, r in man.items():
        assert r["commit"] and r["command"].startswith("medssl zoo build") and r["precision"] == "fp32" and r["seed"] == 0
        assert r["data_md5"] == expected_md5(r["dataset"], r["size"]), f"{key} was not trained on the official file"
        if ZOO[key].has_file:
            assert r["file_md5"] == file_md5(ZOO_DIR / r["file"]) and len(r["history"]) >= 1
    assert sum(p.stat().st_size for p in ZOO_DIR.iterdir()) < 25e6

@pytest.mark.parametrize("key", sorted(ZOO))
def test_every_entry_loads_to_its_recorded_weights(key):
    s, r = ZOO[key], manifest()[key]
    enc = load_pretrained(s.name, s.dataset, s.size)
    assert not enc.training and weights_md5(enc) == r["weights_md5"]
    if s.has_file: assert torch.load(ZOO_DIR / r["file"], weights_only=True).keys() == enc.state_dict().keys()

def test_a_changed_file_is_refused(tmp_path):
    shutil.copytree(ZOO_DIR, tmp_path / "zoo")
    p = tmp_path / "zoo" / "simclr_breastmnist.pt"; b = bytearray(p.read_bytes()); b[len(b) // 2] ^= 1; p.write_bytes(bytes(b))
    with pytest.raises(MedSSLError, match="MD5.*rebuild=True"): load_pretrained("simclr", "breastmnist", folder=tmp_path / "zoo")
    (tmp_path / "zoo" / "byol_breastmnist.pt").unlink()
    with pytest.raises(MedSSLError, match="missing"): load_pretrained("byol", "breastmnist", folder=tmp_path / "zoo")

def test_unknown_entries_are_refused_with_the_list():
    with pytest.raises(MedSSLError, match="It has: simclr"): load_pretrained("simclr", "pathmnist")
    with pytest.raises(MedSSLError, match="It has"): load_pretrained("rotation", "breastmnist")

def test_status_and_cli():
    st = zoo_status()
    assert st.verified.all() and set(st["where"]) == {"results/zoo"}
    from medssl_nb.cli import main
    assert main(["zoo", "list", "--folder", str(ZOO_DIR)]) == 0
