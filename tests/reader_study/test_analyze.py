"""Table III (kecae.reader_study.analyze) against scikit-learn and statsmodels, and the
analyze command's outputs."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from kecae.evaluation import agreement
from kecae.reader_study import analyze as A


def _fill(study, calls: dict[str, dict[str, tuple]]) -> None:
    """Write answers straight into the database: reader -> item id -> (kl, realism, match)."""
    con = sqlite3.connect(study / "study.sqlite")
    with con:
        for name, per_item in calls.items():
            rid = con.execute("SELECT id FROM readers WHERE name = ?", (name,)).fetchone()[0]
            for item, (kl, realism, match) in per_item.items():
                con.execute(
                    "INSERT INTO answers (reader_id, item_id, kl_call, realism, match, "
                    "answered_at) VALUES (?, ?, ?, ?, ?, 'now')",
                    (rid, item, kl, realism, match),
                )
    con.close()


def test_analyze_against_sklearn_and_statsmodels(study, kit):
    from sklearn.metrics import cohen_kappa_score
    from statsmodels.stats.inter_rater import aggregate_raters
    from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

    items = kit.schedule(study, "alice")  # the same items for everyone
    p1 = sorted((r for r in items if r["phase"] == 1), key=lambda r: r["id"])
    p2 = sorted((r for r in items if r["phase"] == 2), key=lambda r: r["id"])
    rng = np.random.default_rng(3)
    truth = np.array([r["grade"] for r in p1])
    kinds = np.array([r["kind"] for r in p1])
    calls, realism = {}, {}
    calls["alice"] = truth.copy()  # always right
    calls["bob"] = np.where(truth == 0, 2, truth)  # always KL-2
    calls["carol"] = np.where(rng.random(len(truth)) < 0.7, truth, 2 - truth)
    fill: dict[str, dict] = {}
    for name in kit.READERS:
        realism[name] = rng.integers(1, 6, len(truth))
        fill[name] = {
            r["id"]: (int(calls[name][i]), int(realism[name][i]), None) for i, r in enumerate(p1)
        }
        # phase 2: alice says yes to everything, the others answer half of it
        for i, r in enumerate(p2):
            if name == "alice" or i % 2 == 0:
                fill[name][r["id"]] = (None, None, int(name == "alice" or r["kind"] != "sham"))
    _fill(study, fill)
    res = A.analyze_study(study, n_boot=200, seed=0)
    rows = {r.reader: r for r in res.readers}

    gen = kinds == "exchanged"
    for name in kit.READERS:
        c, t, s = calls[name], truth, realism[name]
        ok = c == t
        assert rows[name].accuracy["all"].value == pytest.approx(ok[gen].mean())
        assert rows[name].accuracy["KL-0"].value == pytest.approx(ok[gen & (t == 0)].mean())
        assert rows[name].accuracy["KL-2"].value == pytest.approx(ok[gen & (t == 2)].mean())
        assert rows[name].realism["KL-2"].mean == pytest.approx(s[gen & (t == 2)].mean())
        assert rows[name].control_accuracy["all"].value == pytest.approx(ok[~gen].mean())
        assert rows[name].control_realism["all"].mean == pytest.approx(s[~gen].mean())
        lo, hi = rows[name].accuracy["all"].ci_low, rows[name].accuracy["all"].ci_high
        assert lo <= rows[name].accuracy["all"].value <= hi
    assert rows["alice"].accuracy["all"].value == 1.0
    assert rows["bob"].accuracy["KL-0"].value == 0.0 and rows["bob"].accuracy["KL-2"].value == 1
    assert rows["alice"].match_rate["all"].value == 1.0
    assert rows["alice"].sham_match_rate.value == 1.0
    assert rows["bob"].sham_match_rate.value in (0.0, None)
    assert rows["alice"].answered == rows["alice"].total == 20
    assert res.overall.accuracy["all"].n == 3 * gen.sum()
    assert res.overall.accuracy["all"].value == pytest.approx(
        np.mean([(calls[n] == truth)[gen].mean() for n in kit.READERS])
    )

    kappas = {(g.statistic, tuple(g.readers), g.images): g for g in res.agreement}
    for a, b in (("alice", "bob"), ("alice", "carol"), ("bob", "carol")):
        g = kappas[("cohen_kappa", (a, b), "generated")]
        assert g.kappa == pytest.approx(cohen_kappa_score(calls[a][gen], calls[b][gen]))
        assert g.n_items == gen.sum() and g.ci_low <= g.kappa <= g.ci_high
    table, _ = aggregate_raters(np.stack([calls[n][gen] for n in kit.READERS], axis=1))
    g = kappas[("fleiss_kappa", tuple(kit.READERS), "generated")]
    assert g.kappa == pytest.approx(sm_fleiss(table, method="fleiss"))
    assert g.ci_low <= g.kappa <= g.ci_high
    assert ("fleiss_kappa", tuple(kit.READERS), "control") in kappas
    # seeded: the same intervals again
    again = A.analyze_study(study, n_boot=200, seed=0)
    assert again.to_dict() == res.to_dict()


@pytest.mark.parametrize("seed", range(5))
def test_fleiss_kappa_matches_statsmodels(seed):
    from statsmodels.stats.inter_rater import aggregate_raters
    from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

    rng = np.random.default_rng(seed)
    ratings = rng.choice(
        [0, 2, 3], size=(rng.integers(5, 40), rng.integers(2, 7)), p=[0.5, 0.3, 0.2]
    )
    table, _ = aggregate_raters(ratings)
    assert agreement.fleiss_kappa(ratings) == pytest.approx(sm_fleiss(table, method="fleiss"))


def test_kappa_edges():
    # one category throughout: undefined
    assert np.isnan(agreement.cohen_kappa([0, 0, 0], [0, 0, 0]))
    assert agreement.cohen_kappa([0, 0, 2], [0, 0, 2]) == 1.0
    assert A.kappa(np.array([[0, 2, 2, 0], [0, 2, 0, 0]])) == pytest.approx(
        agreement.cohen_kappa([0, 2, 2, 0], [0, 2, 0, 0])
    )
    k, _, _, n = A.agreement(np.array([[0, 2, np.nan, 0], [0, 2, 2, np.nan]]), n_boot=50)
    assert n == 2 and k == 1.0  # only the items both readers called


def test_analyze_cli_writes_json_csv_metrics_and_report(study, tmp_path, kit):
    import csv

    from kecae.report import write_report

    link = kit.links(study)
    with kit.Server(study) as server:
        for name, kl in (("alice", "2"), ("bob", "2"), ("carol", "0")):
            kit.answer_phase1(server, link[name], 10, kl=kl, realism="4")
    run = tmp_path / "run"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "kecae",
            "reader-study",
            "analyze",
            str(study),
            "--run",
            str(run),
            "--bootstrap",
            "100",
        ],
        cwd=kit.ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "Table III" in out.stdout and "all readers" in out.stdout
    assert "Fleiss' κ" in out.stdout and "Cohen's κ, alice – bob" in out.stdout
    data = json.loads((study / "analysis.json").read_text())
    assert [r["reader"] for r in data["readers"]] == kit.READERS
    assert data["readers"][0]["realism"]["all"]["mean"] == 4.0
    with open(study / "analysis.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["statistic"] for r in rows} == {
        "accuracy",
        "realism_mean",
        "match_rate",
        "cohen_kappa",
        "fleiss_kappa",
    }
    acc = next(
        r
        for r in rows
        if r["statistic"] == "accuracy"
        and r["reader"] == "carol"
        and r["images"] == "generated"
        and r["label"] == "KL-0"
    )
    assert float(acc["value"]) == 1.0 and acc["n"] == "3"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["reader_study"]["readers"][2]["reader"] == "carol"
    page = write_report(run).read_text()
    assert "Reader study" in page and "Cohen" in page and "alice" in page
    assert "reader_study.readers" not in page  # laid out, not dumped as a raw entry
