import os, warnings
from pathlib import Path
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

def data_dir():
    "The folder with real MedMNIST files: $MEDSSL_DATA, else medmnist's own default folder when it holds any."
    d = os.environ.get("MEDSSL_DATA")
    if d and Path(d).is_dir(): return Path(d)
    import medmnist.info
    default = Path(medmnist.info.DEFAULT_ROOT)
    return default if default.is_dir() and any(default.glob("*.npz")) else None

@pytest.fixture
def real_data():
    d = data_dir()
    if d is None: pytest.skip("no real MedMNIST files: set MEDSSL_DATA to a folder holding them")
    return d

@pytest.fixture
def no_data(tmp_path, monkeypatch):
    "An environment with no MedMNIST files anywhere: empty root, no MEDSSL_DATA, medmnist's default pointed at an empty folder."
    import medmnist.info
    monkeypatch.delenv("MEDSSL_DATA", raising=False)
    empty = tmp_path / "default_root"; empty.mkdir()
    monkeypatch.setattr(medmnist.info, "DEFAULT_ROOT", str(empty))
    return tmp_path

@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
