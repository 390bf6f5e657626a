"""kecae.report.sections: the page's sections in order, each drawn from a full run folder and
each a note (never an error) on a run folder that holds nothing of it."""

from __future__ import annotations

import re

import pytest

from kecae.report.load import load_run
from kecae.report.sections import SECTIONS

ANCHORS = [anchor for anchor, _, _ in SECTIONS]


def test_the_page_order():
    """The data first, then what a reader looks at first (headline, targets), the generator and
    its measures, the studies, and the settings last."""
    assert ANCHORS[:3] == ["data", "headline", "targets"]
    assert ANCHORS[-2:] == ["training", "configuration"]
    before = [
        ("examples", "exchange"),
        ("exchange", "plausibility"),
        ("plausibility", "fidelity"),
        ("fidelity", "grade-match"),
        ("quality", "downstream"),
        ("downstream", "downstream_shortcut"),
        ("downstream_shortcut", "ablation"),
        ("ablation", "robustness"),
        ("robustness", "tune"),
    ]
    for first, then in before:
        assert ANCHORS.index(first) < ANCHORS.index(then), (first, then)


def test_anchors_and_headings_are_unique_and_usable():
    assert len(set(ANCHORS)) == len(ANCHORS)
    assert all(re.fullmatch(r"[a-z_-]+", a) for a in ANCHORS)
    headings = [heading for _, heading, _ in SECTIONS]
    assert len(set(headings)) == len(headings) and all(headings)


@pytest.fixture(scope="module")
def full(tmp_path_factory, full_run):
    return load_run(full_run(tmp_path_factory.mktemp("full")))


@pytest.mark.parametrize(("anchor", "build"), [(a, b) for a, _, b in SECTIONS], ids=ANCHORS)
def test_each_section_renders_from_a_full_run(full, anchor, build):
    html = build(full)
    assert isinstance(html, str) and html.strip()
    assert "Traceback" not in html and "None" not in re.sub(r"<[^>]+>", " ", html)


#: Sections whose numbers the full run folder holds: their table shows a value of it.
SHOWN = {
    "exchange": "93.0",  # the judge's agreement, KL-0 -> KL-2
    "plausibility": "0.944",  # plausible X' / real
    "separability": "91.0",  # SVM on hK
    "quality": "27.3",  # reconstruction PSNR
    "tune": "0.552",  # the best trial's test objective
}


@pytest.mark.parametrize(("anchor", "value"), sorted(SHOWN.items()))
def test_sections_show_the_run_s_numbers(full, anchor, value):
    build = {a: b for a, _, b in SECTIONS}[anchor]
    assert value in build(full)


@pytest.mark.parametrize(("anchor", "build"), [(a, b) for a, _, b in SECTIONS], ids=ANCHORS)
def test_each_section_is_a_note_on_an_empty_run(tmp_path, anchor, build):
    html = build(load_run(tmp_path))
    assert isinstance(html, str) and html.strip()


def test_the_recipe_says_what_the_warp_bound_limits():
    from kecae.models.autoencoder import KECAEConfig
    from kecae.report.recipe import _exchange_text

    field = KECAEConfig(image_size=64, depth=4, exchange="warp", warp_grid=32)
    change = KECAEConfig(image_size=64, depth=4, exchange="warp", warp_grid=32, warp_bound="change")
    assert "(≤ 3 px, 32×32 grid)" in _exchange_text(field)
    assert "(its change from X1's own field ≤ 3 px, 32×32 grid)" in _exchange_text(change)


def test_the_recipe_says_when_both_images_of_each_pair_were_augmented(tmp_path_factory, full_run):
    from kecae.report.recipe import generator_section

    root = full_run(tmp_path_factory.mktemp("augmented"))
    assert "augmented" not in generator_section(load_run(root))
    config = root / "kecae" / "config.yaml"
    config.write_text(config.read_text().replace("augment_pairs: false", "augment_pairs: true"))
    html = generator_section(load_run(root))
    assert "2000 steps × 32 pairs, Adam lr 0.0001; both images of each pair augmented" in html
