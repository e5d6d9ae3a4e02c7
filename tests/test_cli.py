import json, pandas as pd, pytest
from pathlib import Path
from medssl_nb.cli import main
from medssl_nb.quickstart import run_quickstart, QuickstartConfig, format_table
from medssl_nb.data import SyntheticFallbackWarning

def tiny_cfg(out, **kw):
    return QuickstartConfig(**{**dict(seeds=(0, 1), fractions=(0.1, 1.0), epochs=1, sup_epochs=1, width=4, depth=10,
                                      out=str(out), progress=False), **kw})

def test_quickstart_synthetic_writes_table_csv_figure_provenance(tmp_path):
    df, summary, prov = run_quickstart(tiny_cfg(tmp_path, synthetic=True))
    assert set(df.protocol) == {"SimCLR linear probe", "SimCLR kNN", "random-init linear probe", "supervised from scratch"}
    assert len(df) == 2 * 2 * 4 and df.auc.between(0, 1).all() and (df.source == "synthetic").all()
    assert set(summary.seeds) == {2}
    for suffix in ("_runs.csv", "_summary.csv", "_provenance.json", ".png"):
        assert (tmp_path / f"quickstart_synthetic2d{suffix}").stat().st_size > 0
    p = json.loads((tmp_path / "quickstart_synthetic2d_provenance.json").read_text())
    assert {"commit", "config", "seeds", "hardware", "wall_time_s", "data_source"} <= set(p) and p["seeds"] == [0, 1]
    assert "supervised from scratch" in format_table(summary)

def test_quickstart_real_breastmnist_records_md5(real_data, tmp_path):
    df, summary, prov = run_quickstart(tiny_cfg(tmp_path, seeds=(0,), root=str(real_data)))
    assert (df.source == "medmnist").all() and prov["data_file"]["md5"] == "750601b1f35ba3300ea97c75c52ff8f6"

def test_cli_no_data_falls_back_loudly(no_data, tmp_path, capsys):
    with pytest.warns(SyntheticFallbackWarning):
        rc = main(["quickstart", "--seeds", "0", "--fractions", "1.0", "--epochs", "1", "--sup-epochs", "1", "--width", "4",
                   "--depth", "10", "--no-download", "--no-progress", "--out", str(tmp_path / "o")])
    out = capsys.readouterr()
    assert rc == 0 and "SYNTHETIC" in out.out and "SYNTHETIC" in out.err

def test_cli_bad_input_is_a_clear_error(tmp_path, capsys):
    assert main(["quickstart", "--dataset", "breastmnst", "--out", str(tmp_path)]) == 2
    assert "Unknown MedMNIST dataset flag" in capsys.readouterr().err
    assert main(["quickstart", "--fractions", "0", "--out", str(tmp_path)]) == 2
    assert not any(tmp_path.iterdir())

def test_narrow_resnet_run_exits_cleanly(real_data, tmp_path):
    "Regression: width < 16 ResNets in channels_last made oneDNN corrupt memory; the process died at exit (rc 139/134)."
    import subprocess, sys
    code = ("from medssl_nb.quickstart import run_quickstart, QuickstartConfig; "
            f"run_quickstart(QuickstartConfig(seeds=(0,), fractions=(0.1, 1.0), epochs=1, sup_epochs=1, width=4, depth=10, "
            f"out={str(tmp_path)!r}, progress=False, root={str(real_data)!r}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"exit code {r.returncode}\n{r.stderr[-3000:]}"

def test_pretrain_cli_writes_encoder_and_report(tmp_path, capsys):
    rc = main(["pretrain", "--method", "simclr", "--synthetic", "--epochs", "1", "--width", "16", "--depth", "10",
               "--fractions", "1.0", "--no-progress", "--out", str(tmp_path)])
    assert rc == 0 and "SYNTHETIC" in capsys.readouterr().out
    rep = json.loads((tmp_path / "synthetic2d_simclr_seed0.json").read_text())
    assert {"commit", "config", "results", "history", "hardware"} <= set(rep) and rep["results"][0]["protocol"] == "linear probe"
    import torch
    ck = torch.load(tmp_path / "synthetic2d_simclr_seed0_encoder.pt", weights_only=False)
    assert ck["backbone"] == "resnet" and ck["in_chans"] == 1

def test_pretrain_cli_unknown_method_is_a_clear_error(tmp_path, capsys):
    assert main(["pretrain", "--method", "simclrr", "--synthetic", "--out", str(tmp_path)]) == 2
    assert "Unknown method" in capsys.readouterr().err and not any(tmp_path.iterdir())

def test_compare_resumes_and_refuses_other_settings(tmp_path, capsys):
    args = ["compare", "--methods", "simclr", "--datasets", "breastmnist", "--synthetic", "--seeds", "0", "--fractions", "1.0",
            "--epochs", "1", "--width", "16", "--depth", "10", "--sup-epochs", "1", "--no-progress", "--out", str(tmp_path)]
    assert main(args) == 0
    runs = pd.read_csv(tmp_path / "compare_runs.csv")
    assert set(runs.unit) == {"baselines", "simclr"} and runs.commit.notna().all()
    for f in ("compare_summary.csv", "compare_table.md", "compare.png", "compare_provenance.json"): assert (tmp_path / f).stat().st_size > 0
    assert main(args) == 0 and len(pd.read_csv(tmp_path / "compare_runs.csv")) == len(runs)   # nothing re-run
    capsys.readouterr()
    assert main([("2" if a == "1" and args[i - 1] == "--epochs" else a) for i, a in enumerate(args)]) == 2
    assert "other settings" in capsys.readouterr().err

def test_study_label_efficiency_cli_runs_and_refuses_bad_input(tmp_path, capsys):
    "The study from the command line on flag-shaped stand-ins (3-channel, 6-class DermaMNIST included), then bad input."
    from medssl_nb.cli import main
    out = tmp_path / "le"
    args = ["study", "label-efficiency", "--synthetic", "--synthetic-n", "80", "--datasets", "dermamnist", "--methods", "simclr",
            "--pools", "in-domain", "--protocols", "linear probe", "fine-tune", "--seeds", "0", "1", "--fractions", "0.1", "1.0",
            "--pretrain-steps", "3", "--sup-epochs", "1", "--ft-epochs", "1", "--batch-size", "16", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    import pandas as pd
    df = pd.read_csv(out / "label_efficiency.csv")
    assert set(df.protocol) == {"linear probe", "fine-tune", "supervised"} and set(df.seed) == {0, 1} and len(df) == 2 * 2 * 3
    assert (out / "label_efficiency.png").exists() and (out / "label_efficiency_provenance.json").exists()
    for bad, msg in ((["--datasets", "dermamnistt"], "Unknown MedMNIST dataset flag"), (["--fractions", "0"], "Label fractions"),
                     (["--methods", "simclrr"], "Unknown method"), (["--pools", "everywhere"], "pretraining pool")):
        assert main(["study", "label-efficiency", "--synthetic", "--out", str(tmp_path / "bad"), "--no-progress", *bad]) == 2
        assert msg in capsys.readouterr().err
    assert not (tmp_path / "bad" / "label_efficiency.csv").exists()

@pytest.mark.parametrize("argv", [["--help"], ["quickstart", "--help"], ["pretrain", "--help"], ["compare", "--help"], ["study", "--help"],
                                  ["study", "label-efficiency", "--help"], ["study", "volumetric", "--help"],
                                  ["study", "imbalance", "--help"], ["study", "ood", "--help"], ["study", "scaling", "--help"],
                                  ["study", "compute", "--help"], ["study", "representations", "--help"], ["site", "--help"], ["readme", "--help"]])
def test_every_help_text_renders(argv, capsys):
    "argparse %-formats help strings: a bare '%' once printed a dict into the help; every page must render cleanly."
    with pytest.raises(SystemExit) as e: main(argv)
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: medssl") and "option_strings" not in out

def test_study_volumetric_cli_runs_and_refuses_bad_input(tmp_path, capsys):
    "The 3D study from the command line on OrganMNIST3D-shaped phantoms (11 classes -> 6), then bad input that must write nothing."
    out = tmp_path / "vol"
    args = ["study", "volumetric", "--synthetic", "--synthetic-n", "36", "--dataset", "organmnist3d", "--methods", "mae",
            "--protocols", "linear probe", "--seeds", "0", "--fractions", "1.0", "--vit-dim", "32", "--vit-depth", "1", "--vit-heads", "2",
            "--pretrain-epochs", "1", "--sup-epochs", "1", "--ft-epochs", "1", "--sup-width", "4", "--batch-size", "12", "--sup-batch", "12",
            "--out", str(out), "--no-progress"]
    assert main(args) == 0
    df = pd.read_csv(out / "volumetric.csv")
    assert set(df.method) == {"random-init ViT", "supervised ResNet-3D (v2 recipe)", "supervised ViT (from scratch)", "mae"}
    assert df.auc.between(0, 1).all() and (out / "volumetric.png").exists()
    for bad, msg in ((["--dataset", "breastmnist"], "2D set"), (["--dataset", "adrenal"], "Unknown MedMNIST dataset flag"),
                     (["--methods", "dino4d"], "Unknown method"), (["--size", "32"], "size"), (["--local-size", "12"], "multiple of the ViT patch")):
        assert main(["study", "volumetric", "--synthetic", "--out", str(tmp_path / "bad"), "--no-progress", *bad]) == 2, bad
        assert msg in capsys.readouterr().err, bad
    assert not (tmp_path / "bad" / "volumetric.csv").exists()

def test_study_imbalance_cli_runs_and_refuses_bad_input(tmp_path, capsys):
    "The imbalance study from the command line on a BreastMNIST-shaped stand-in, then bad input that writes nothing."
    out = tmp_path / "imb"
    args = ["study", "imbalance", "--synthetic", "--synthetic-n", "120", "--datasets", "breastmnist", "--methods", "simclr", "--seeds", "0", "1",
            "--label-ratios", "1", "10", "--pool-ratios", "10", "--pretrain-steps", "2", "--sup-epochs", "1", "--ft-epochs", "1", "--width", "4",
            "--batch-size", "16", "--sup-batch", "16", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    df = pd.read_csv(out / "imbalance.csv")
    assert set(df.strategy) == {"none", "resample", "reweight"} and set(df.label_ratio) == {1.0, 10.0} and set(df.seed) == {0, 1}
    assert "Zhang et al." in capsys.readouterr().out and (out / "imbalance_breastmnist.png").exists()
    for bad, msg in ((["--datasets", "chestmnist"], "multi-label"), (["--label-ratios", "0.5"], "must be >= 1"),
                     (["--strategies", "smote"], "Unknown strategies"), (["--methods", "simclrr"], "Unknown method")):
        assert main(["study", "imbalance", "--synthetic", "--out", str(tmp_path / "bad"), "--no-progress", *bad]) == 2, bad
        assert msg in capsys.readouterr().err, bad
    assert not (tmp_path / "bad" / "imbalance.csv").exists()

def test_study_ood_cli_runs_and_refuses_bad_input(tmp_path, capsys):
    "The OOD study from the command line on stand-ins (far OOD and one shift, no held-out class), then bad input that writes nothing."
    out = tmp_path / "ood"
    args = ["study", "ood", "--synthetic", "--synthetic-n", "64", "--methods", "simclr", "--finetune-methods", "simclr", "--heldout-dataset", "",
            "--shifts", "blur", "--seeds", "0", "--pretrain-steps", "2", "--sup-epochs", "1", "--ft-epochs", "1", "--width", "4",
            "--batch-size", "16", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    df = pd.read_csv(out / "ood.csv")
    assert set(df.setup_kind) == {"far", "shift"} and df.auroc.between(0, 1).all() and {"MSP", "ODIN", "energy", "kNN"} <= set(df.detector)
    assert (out / "ood_shift_heatmap.png").exists() and (out / "ood_best_worst.csv").exists()
    for bad, msg in ((["--dataset", "adrenalmnist3d"], "2D single-label"), (["--shifts", "rain"], "Unknown shifts"),
                     (["--heldout-class", "9"], "heldout_class"), (["--far-flags", "breastmnist"], "ID set")):
        assert main(["study", "ood", "--synthetic", "--out", str(tmp_path / "bad"), "--no-progress", *bad]) == 2, bad
        assert msg in capsys.readouterr().err, bad
    assert not (tmp_path / "bad" / "ood.csv").exists()

def test_study_scaling_cli_runs_and_refuses_bad_input(tmp_path, capsys):
    "A 3 x 3 scaling grid from the command line on stand-ins, then bad input (3D set, repeated size, ViT width, a grid larger than the pool) that writes nothing."
    out = tmp_path / "sc"
    args = ["study", "scaling", "--synthetic", "--synthetic-n", "80", "--datasets", "breastmnist", "--methods", "simclr", "--data-sizes", "20", "40", "80",
            "--resnet-widths", "2", "4", "8", "--pretrain-steps", "1", "--batch-size", "16", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    df = pd.read_csv(out / "scaling.csv"); fits = pd.read_csv(out / "scaling_fits.csv")
    assert len(df) == 3 + 9 and set(df.data_size) == {0, 20, 40, 80} and set(fits.axis) == {"model", "data"}
    assert "resnet10-w8" in capsys.readouterr().out and (out / "scaling.png").exists()
    for bad, msg in ((["--datasets", "adrenalmnist3d"], "3D set"), (["--data-sizes", "20", "20"], "distinct"),
                     (["--methods", "mae", "--vit-dims", "40"], "multiples of vit_head_dim"), (["--datasets", "breastmnist", "--data-sizes", "20", "100000"], "exceeds the pool"),
                     (["--methods", "simclrr"], "Unknown method")):
        assert main(["study", "scaling", "--synthetic", "--synthetic-n", "60", "--out", str(tmp_path / "bad"), "--no-progress", *bad]) == 2, bad
        assert msg in capsys.readouterr().err, bad
    assert not (tmp_path / "bad").exists()

@pytest.mark.slow
def test_study_compute_cli_runs(tmp_path, capsys):
    "The compute study from the command line on stand-ins at tiny settings (slow tier: chapter 25 runs the same study in the fast one)."
    out = tmp_path / "co"
    args = ["study", "compute", "--synthetic", "--synthetic-n", "64", "--methods", "simclr", "rotation", "--sweep-methods", "simclr", "--width", "4",
            "--batch-size", "16", "--timed-steps", "1", "--repeats", "1", "--warmup-steps", "0", "--frontier-epochs", "1", "--batch-sizes", "8",
            "--precisions", "fp32", "--matmul-n", "128", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    df = pd.read_csv(out / "compute.csv")
    assert set(df.part) == {"throughput", "frontier", "sweep"} and set(df.method) == {"simclr", "rotation"} and (df.status == "ok").all()
    assert (df[df.part == "throughput"].images_per_s > 0).all() and (out / "compute.png").exists()

def test_study_compute_cli_refuses_bad_input(tmp_path, capsys):
    "The compute study from the command line refuses bad input and writes nothing."
    for bad, msg in ((["--dataset", "adrenalmnist3d"], "3D"), (["--precisions", "fp16"], "precisions"),
                     (["--methods", "simclrr"], "Unknown method"), (["--timed-steps", "0"], ">= 1")):
        assert main(["study", "compute", "--synthetic", "--out", str(tmp_path / "bad"), "--no-progress", *bad]) == 2, bad
        assert msg in capsys.readouterr().err, bad
    assert not (tmp_path / "bad").exists()

@pytest.mark.slow
def test_study_representations_cli_runs(tmp_path, capsys):
    "The representation study from the command line on stand-ins at tiny settings (slow tier: chapter 26 runs the same study in the fast one)."
    out = tmp_path / "rp"
    args = ["study", "representations", "--synthetic", "--synthetic-n", "48", "--methods", "simclr", "--pretrain-steps", "1", "--sup-epochs", "1",
            "--width", "4", "--vit-dim", "32", "--batch-size", "16", "--n-queries", "16", "--bank-per-dataset", "24", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    ret = pd.read_csv(out / "representations_retrieval.csv")
    assert set(ret.encoder) == {"random init", "simclr", "supervised"} and ret.precision_at_k.between(0, 1).all()
    assert (out / "representations_umap.png").exists() and "precision_at_k" in capsys.readouterr().out

def test_study_representations_cli_refuses_bad_input(tmp_path, capsys):
    "The representation study from the command line refuses bad input and writes nothing."
    for bad, msg in ((["--datasets", "adrenalmnist3d"], "3D"), (["--methods", "simclrr"], "Unknown method"), (["--k", "0"], ">= 1"),
                     (["--k", "30", "--bank-per-dataset", "10"], "larger than")):
        assert main(["study", "representations", "--synthetic", "--out", str(tmp_path / "bad"), "--no-progress", *bad]) == 2, bad
        assert msg in capsys.readouterr().err, bad
    assert not (tmp_path / "bad").exists()

def test_readme_cli_writes_the_front_page(tmp_path):
    assert main(["readme", "--out", str(tmp_path / "R.md")]) == 0
    assert (tmp_path / "R.md").read_text() == (Path(__file__).resolve().parents[1] / "README.md").read_text()

def test_data_list_and_fetch(tmp_path, capsys):
    (tmp_path / "breastmnist.npz").write_bytes(b"not the official file")
    assert main(["data", "list", "breastmnist", "--root", str(tmp_path)]) == 0
    line = [l for l in capsys.readouterr().out.splitlines() if l.strip().startswith("breastmnist")][0]
    assert str(tmp_path) in line and line.split()[-1] == "False"          # found in --root first, and its MD5 refused
    assert main(["data", "fetch", "breastmnist", "--root", str(tmp_path)]) == 2
    assert "MD5" in capsys.readouterr().err and (tmp_path / "breastmnist.npz").read_bytes() == b"not the official file"
    assert main(["data", "fetch", "breastmnistt"]) == 2 and "Did you mean breastmnist" in capsys.readouterr().err

def test_data_fetch_finds_a_verified_file(real_data, capsys):
    assert main(["data", "fetch", "breastmnist", "--root", str(real_data)]) == 0
    assert capsys.readouterr().out.split("\n")[1].split()[-1] == "True"
