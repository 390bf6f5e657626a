"""The benchmark scripts (benchmarks/): every one imports against the package as it is now (a moved
function fails here, not in a GPU session), the MFU and projection arithmetic, the cpu-preset
selection rule, one real training step of the benchmarks' step builder with its FLOPs counted,
the CPU profile's shares, and the GPU session's stages."""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p.stem for p in BENCHMARKS.glob("*.py"))


@pytest.fixture(scope="module", autouse=True)
def _importable():
    sys.path.insert(0, str(BENCHMARKS))
    yield
    sys.path.remove(str(BENCHMARKS))


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_benchmark_imports(name):
    module = importlib.import_module(name)
    assert module.__doc__, f"benchmarks/{name}.py says what it measures"


def test_gpu_peaks_by_device_name():
    from mfu import gpu_peak_tflops

    assert gpu_peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.4
    assert gpu_peak_tflops("NVIDIA H100 PCIe", "bf16") == 756.0  # not the SXM number
    assert gpu_peak_tflops("NVIDIA H200", "fp32") == 494.7
    assert gpu_peak_tflops("Some other card", "bf16") is None


def test_mfu_and_paper_run_projection():
    from mfu import PAPER_RUN_PAIRS, mfu_fields, projections

    row = mfu_fields(pairs_per_s=1000.0, gflop_per_pair=50.0, peak_tflops=100.0)
    assert row == {"tflop_per_s": 50.0, "peak_tflop_per_s": 100.0, "mfu": 0.5}
    assert mfu_fields(1000.0, 50.0, None)["mfu"] is None
    hour_rate = PAPER_RUN_PAIRS / 3600  # pairs/s that finish the paper's run in one hour
    no_params = projections(hour_rate, params=0, batch=32)
    assert no_params["paper_run_hours_1_device"] == 1.0
    assert no_params["paper_run_hours_8_ddp"] == 0.12  # 1/8 h, nothing to all-reduce
    big = projections(hour_rate, params=100_000_000, batch=32)
    # a ring all-reduce moves 2 (n-1)/n of the 400 MB of fp32 gradients per step (5 decimals)
    allreduce = 2 * 7 / 8 * 4e8 / 450e9
    assert big["ddp_allreduce_s_per_step"] == pytest.approx(allreduce, abs=1e-5)
    assert big["paper_run_hours_8_ddp"] > no_params["paper_run_hours_8_ddp"]


def test_cpu_preset_selection_rule():
    from bench_model import select_cpu_preset

    rows = [
        {"image_size": 64, "width": 0.125, "pairs_per_s": 300.0},
        {"image_size": 64, "width": 0.25, "pairs_per_s": 100.0},
        {"image_size": 128, "width": 0.125, "pairs_per_s": 60.0},
        {"image_size": 128, "width": 0.25, "pairs_per_s": 20.0},
    ]
    # 20,000 pairs in 300 s need 66.7 pairs/s: 128 px at width 0.125 misses it, so 64 px
    assert select_cpu_preset(rows) == {"image_size": 64, "width": 0.25, "qualified": True}
    assert select_cpu_preset(rows, budget_s=400) == {
        "image_size": 128,
        "width": 0.125,
        "qualified": True,
    }
    slow = [{**r, "pairs_per_s": r["pairs_per_s"] / 100} for r in rows]
    assert select_cpu_preset(slow) == {"image_size": 64, "width": 0.125, "qualified": False}


def test_train_step_trains_and_its_flops_are_counted():
    from mfu import step_flops
    from train_step import TrainStep

    step = TrainStep("tiny", batch=2, channels_last=True)
    before = [p.detach().clone() for p in step.model.parameters()]
    loss = step()
    assert math.isfinite(loss)
    assert any(
        not (p.detach() == b).all() for p, b in zip(step.model.parameters(), before, strict=True)
    )
    # the supervisor stays frozen, its batch norms folded into its convolutions
    assert not any(p.requires_grad for p in step.supervisor.parameters())
    assert not any("BatchNorm" in type(m).__name__ for m in step.supervisor.modules())
    flops = step_flops(step)
    assert flops > 0
    assert step_flops(TrainStep("tiny", batch=4)) == pytest.approx(2 * flops, rel=0.01)
    # a supervisor ensemble: the members are frozen, and their passes add to the step's FLOPs
    ens = TrainStep("tiny", batch=2, channels_last=True, supervisors=3)
    assert len(ens.members) == 2 and math.isfinite(ens())
    assert not any(p.requires_grad for m in ens.members for p in m.parameters())
    assert step_flops(ens) > flops


def test_cpu_profile_shares(tmp_path):
    from profile_cpu_step import main

    assert main(["--out", str(tmp_path), "--preset", "tiny", "--batch", "2", "--warmup", "1"]) == 0
    import json

    summary = json.loads((tmp_path / "cpu_profile.json").read_text())
    rows = summary["top_ops_by_self_cpu"]
    assert len(rows) == 15
    shares = [r["share_of_step"] for r in rows]
    assert shares == sorted(shares, reverse=True)
    assert 0 < sum(shares) <= 1.0 + 1e-3
    assert summary["supervisor_batchnorm_folded"] is True
    assert "Self CPU" in (tmp_path / "cpu_profile.txt").read_text()


def test_gpu_session_stages(tmp_path):
    from gpu_session import stages

    gpu = dict(stages("cuda", tmp_path, quick=False, autotune=False))
    assert "--no-autotune" in gpu["bench_gpu"] and "--no-compile" not in gpu["bench_gpu"]
    assert gpu["authors_step"][gpu["authors_step"].index("--batch") + 1] == "32"
    assert "--no-autotune" not in dict(stages("cuda", tmp_path, False, autotune=True))["bench_gpu"]
    cpu = dict(stages("cpu", tmp_path, quick=True, autotune=False))
    assert {"--no-compile", "--quick"} <= set(cpu["bench_gpu"])
    assert cpu["authors_step"][cpu["authors_step"].index("--batch") + 1] == "2"
    narrowed = dict(stages("cpu", tmp_path, True, False, presets=("cpu",)))["bench_gpu"]
    assert narrowed[narrowed.index("--presets") + 1 :][:1] == ["cpu"]


def test_gpu_session_without_a_gpu_says_so(capsys):
    import torch

    from gpu_session import main

    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    assert main(["--out", "unused"]) == 2
    assert "--device cpu" in capsys.readouterr().err


def test_fold_ab_times_both_steps(tmp_path):
    import json

    from profile_cpu_step import main

    args = ["--out", str(tmp_path), "--preset", "tiny", "--batch", "2", "--warmup", "1"]
    assert main([*args, "--ab", "3"]) == 0
    ab = json.loads((tmp_path / "cpu_fold_ab.json").read_text())
    assert ab["timed_steps_each"] == 3
    assert ab["step_s_median_folded"] > 0 and ab["step_s_median_unfolded"] > 0
    ratio = ab["step_s_median_unfolded"] / ab["step_s_median_folded"]
    assert ab["speedup_folded"] == pytest.approx(ratio, abs=0.01)
    assert not (tmp_path / "cpu_profile.json").exists()  # timed, not profiled


def test_spur_breakdown_bins_and_the_identity_exchange(tmp_path):
    import json
    from types import SimpleNamespace

    import numpy as np
    import torch

    from spur_breakdown import BINS_MM, breakdown, main, phantoms

    kl2, gt = phantoms(2, 12, 64, seed=3)
    kl0, gt0 = phantoms(0, 12, 64, seed=3)
    assert kl2.shape == (12, 64, 64) and kl2.min() >= -1 and kl2.max() <= 1
    assert gt.mean() > gt0.mean()  # KL-2 knees carry the longer spurs

    class Identity(torch.nn.Module):  # X'2 is the recipient: nothing made, everything kept
        def forward(self, x1, x2):
            return SimpleNamespace(x2_ex=x2)

    got = breakdown(Identity(), kl2, kl0, gt)
    assert got["n"] == 12 and sum(b["n"] for b in got["bins"]) == 12
    assert len(got["bins"]) == len(BINS_MM)
    assert got["x2_ex_called"] == got["x2_called"]
    for b in got["bins"]:
        if b["kept_of_called"] is not None:
            assert b["kept_of_called"] == 1.0
    out = tmp_path / "spurs.json"
    result = main(["--pairs", "4", "--open-sizes", "3", "--out", str(out)])
    assert json.loads(out.read_text()) == result
    assert set(result["opening"]["KL-2"]) == {"0", "3"}
    assert all(0 <= v <= 1 for v in result["opening"]["KL-0"].values())
    assert np.isfinite(result["opening"]["KL-2"]["0"])


def test_spur_breakdown_merges_into_its_output(tmp_path):
    import json

    import pytest

    from spur_breakdown import main, merged

    earlier = {"pairs": 4, "models": {"a": 1, "b": 2}, "inpaint_oracle": {"a": 3}}
    got = merged(earlier, {"pairs": 4, "models": {"b": 5, "c": 6}})
    assert got == {"pairs": 4, "models": {"a": 1, "b": 5, "c": 6}, "inpaint_oracle": {"a": 3}}
    out = tmp_path / "spurs.json"
    main(["--pairs", "4", "--open-sizes", "3", "--out", str(out)])
    kept = json.loads(out.read_text())
    kept["models"]["earlier_row"] = {"n": 4}  # a row measured by an earlier call
    out.write_text(json.dumps(kept))
    again = main(["--pairs", "4", "--out", str(out)])  # no --open-sizes this time
    assert again["models"] == {"earlier_row": {"n": 4}}
    assert again["opening"] == kept["opening"]
    assert json.loads(out.read_text()) == again
    with pytest.raises(SystemExit, match="other phantoms"):
        main(["--pairs", "5", "--out", str(out)])
    fresh = main(["--pairs", "5", "--out", str(out), "--replace"])
    assert fresh["models"] == {} and "opening" not in fresh
    out.write_text("not json")
    with pytest.raises(SystemExit, match="--replace"):
        main(["--pairs", "5", "--out", str(out)])


def test_spur_breakdown_oracle_mask_covers_the_spurs_and_the_inpaint_ceiling():
    from types import SimpleNamespace

    import numpy as np
    import torch

    from spur_breakdown import inpaint_oracle, oracle_masks, phantoms, spur_free_twins

    kl2, gt = phantoms(2, 10, 64, seed=5)
    twins = spur_free_twins(2, 10, 64, seed=5)
    assert twins.shape == kl2.shape
    m = oracle_masks(kl2, twins)
    assert m.shape == (10, 1, 64, 64) and float(m.min()) >= 0 and float(m.max()) <= 1
    changed = np.abs(kl2 - twins) > 0.05
    # every pixel a spur changes lies under the mask, and the mask is a small share of the image
    assert bool((m[:, 0].numpy()[changed] > 0.5).all())
    assert float(m.mean()) < 0.2
    assert not changed[gt == 0].any()  # a knee with no spur renders the same as its twin

    class Twin(torch.nn.Module):  # an inpainter that draws the spur-free twin exactly
        def forward(self, x, mask):
            return torch.from_numpy(twins)[:, None]

    class Blank(torch.nn.Module):  # an inpainter that leaves the image as it is
        def forward(self, x, mask):
            return x

    got = inpaint_oracle(SimpleNamespace(inpainter=Twin()), kl2, twins)
    assert got["inpainted_called"] == got["twin_fill_called"]
    assert 0.0 <= got["inpainted_measured"] <= 1.0
    kept = inpaint_oracle(SimpleNamespace(inpainter=Blank()), kl2, twins)
    assert kept["inpainted_called"] == kept["x2_called"]


def test_spur_breakdown_critic_locator_bounds():
    import pytest
    import torch

    from kecae.local_critic import LocalGradeCritic
    from spur_breakdown import critic_locator, phantoms, spur_calls, spur_free_twins

    kl2, _ = phantoms(2, 8, 64, seed=6)
    twins = spur_free_twins(2, 8, 64, seed=6)
    critic = LocalGradeCritic(4)
    out_layer = critic.net[-1]
    for bias, area, covered, called in (
        (50.0, 1.0, 1.0, spur_calls(twins).mean()),
        (-50.0, 0.0, 0.0, spur_calls(kl2).mean()),
    ):
        with torch.no_grad():  # every place called KL-2, then none
            out_layer.weight.zero_()
            out_layer.bias.fill_(bias)
        got = critic_locator({"local_critic": critic.state_dict()}, kl2, twins, (0.0,))
        row = got["thresholds"][0]
        assert row["mask_area"] == pytest.approx(area, abs=1e-6)
        assert row["spur_px_covered"] == covered
        assert row["twin_fill_called"] == pytest.approx(float(called))
        assert got["called_kl2"] == (1.0 if bias > 0 else 0.0)
    with pytest.raises(SystemExit, match="lambda-local-sup"):
        critic_locator({}, kl2, twins, (0.0,))


def test_cue_sensitivity_versions_change_one_cue_each(tmp_path):
    import dataclasses
    import json

    import numpy as np
    import torch

    from cue_sensitivity import KL0_VERSIONS, KL2_VERSIONS, SPURS, main, passed_spurs, versions

    got = versions(3, seed=5)
    assert set(got) == {f"KL-2 {v}" for v in KL2_VERSIONS} | {f"KL-0 {v}" for v in KL0_VERSIONS}
    jsw = ("jsw_medial_mm", "jsw_lateral_mm")

    def changed(a, b):
        return {k for k, v in dataclasses.asdict(a).items() if dataclasses.asdict(b)[k] != v}

    for grade, names in (("KL-2", KL2_VERSIONS), ("KL-0", KL0_VERSIONS)):
        drawn = got[f"{grade} {names[0]}"]
        for name, cue in zip(names[1:], ({*SPURS}, {*jsw}, {*SPURS, *jsw}), strict=True):
            for a, b in zip(drawn, got[f"{grade} {name}"], strict=True):
                assert changed(a, b) <= cue, (grade, name)  # nothing else moves
    kl2, kl0 = got[f"KL-2 {KL2_VERSIONS[0]}"], got[f"KL-0 {KL0_VERSIONS[0]}"]
    for p, q in zip(kl2, got[f"KL-2 {KL2_VERSIONS[3]}"], strict=True):
        assert max(getattr(q, k) for k in SPURS) == 0.0
        assert (q.jsw_medial_mm, q.jsw_lateral_mm) == (
            p.healthy_jsw_medial_mm,
            p.healthy_jsw_lateral_mm,
        )
    for p, q, r in zip(kl0, kl2, got[f"KL-0 {KL0_VERSIONS[3]}"], strict=True):
        assert [getattr(r, k) for k in SPURS] == [getattr(q, k) for k in SPURS]
        assert r.jsw_medial_mm == q.jsw_medial_mm and r.noise_seed == p.noise_seed

    class Fixed(torch.nn.Module):  # calls image k KL-2 when k is even
        def forward(self, x):
            even = (torch.arange(x.shape[0]) % 2 == 0).float()
            return torch.stack([1 - even, even], 1)

    spur = np.array([1, 1, 1, 0], dtype=bool)  # X'2 0-2 keep a spur; 1 is called KL-0
    assert passed_spurs(Fixed(), np.zeros((4, 8, 8), np.float32), spur) == {
        "x2_called_kl2": 0.5,
        "x2_with_spur": 0.75,
        "x2_with_spur_called_kl0": 1 / 3,
    }
    from kecae.checkpoint import save_checkpoint
    from kecae.models.classifiers import build_classifier

    model = build_classifier("small", 32)
    ckpt = save_checkpoint(
        tmp_path / "c.pt",
        {
            "kind": "classifier",
            "model": model.state_dict(),
            "model_config": {"arch": "small", "image_size": 32},
        },
    )
    out = tmp_path / "cue.json"
    result = main(["--classifier", f"c={ckpt}", "--n", "3", "--size", "32", "--out", str(out)])
    assert json.loads(out.read_text()) == result
    rows = result["classifiers"]["c"]["versions"]
    assert len(rows) == 8 and all(0 <= r["called_kl2"] <= 1 for r in rows.values())
    assert set(result["spur_called"]) == set(rows)
