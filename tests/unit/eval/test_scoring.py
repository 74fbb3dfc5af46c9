"""The weighted score, the ratings CSV and how partial totals rank."""

import random

import pytest

from wanray.scoring import (
    RatingsError,
    parse_ratings,
    ratings_template,
    read_ratings,
    score_table,
    weighted_total,
)

HEADER = "rater,model,entry,dynamic,camera,quality,accuracy\n"


def test_weighted_total_is_the_seeds_formula_on_random_values():
    rng = random.Random()
    for _ in range(50):
        ratings = [rng.randint(1, 5) for _ in range(4)]
        psnr, ssim = rng.uniform(5, 50), rng.uniform(0, 1)
        expected = (sum(ratings) / 20) * 0.5 + (psnr / 50) * 0.25 + ssim * 0.25
        assert weighted_total(subjective=sum(ratings), psnr=psnr, ssim=ssim) == pytest.approx(expected)
    assert weighted_total(subjective=20, psnr=50, ssim=1) == pytest.approx(1.0)
    assert weighted_total(subjective=4, psnr=0, ssim=0) == pytest.approx(0.1)


def test_psnr_above_50_db_counts_as_50():
    assert weighted_total(subjective=20, psnr=100, ssim=1) == pytest.approx(1.0)


def test_subjective_outside_4_to_20_is_refused():
    with pytest.raises(ValueError, match="4..20"):
        weighted_total(subjective=21, psnr=30, ssim=0.9)


def test_ratings_csv_is_read_with_any_column_order_and_blank_template_rows_skipped(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text(
        "\ufeffModel, entry ,rater,dynamic,camera,quality,accuracy\n"
        "lora,e1,ana,4,3,5,4\n"
        "lora,e2,,,,,\n"  # template row, not rated yet
        "\n"
        "base,e1,bo, 2 ,2,3,1\n"
    )
    ratings = read_ratings(path)
    assert [(r.rater, r.model, r.entry, r.subjective, r.line) for r in ratings] == [
        ("ana", "lora", "e1", 16, 2),
        ("bo", "base", "e1", 8, 5),
    ]


@pytest.mark.parametrize(
    "header, message",
    [
        ("rater,model,entry,dynamic,camera,quality\n", "missing columns: accuracy"),
        (HEADER.strip() + ",notes\n", "unknown columns: 'notes'"),
        ("rater,model,entry,dynamic,camera,quality,accuracy,camera\n", "repeated columns: camera"),
        ("", "empty file"),
    ],
)
def test_bad_headers_are_named(header, message):
    with pytest.raises(RatingsError, match=message):
        parse_ratings(header)


def test_every_bad_row_is_reported_with_its_line():
    text = HEADER + (
        "ana,lora,e1,4,3,5,4\n"  # line 2: fine
        "ana,lora,e2,6,3,5,4\n"  # 3: out of range
        "ana,lora,e3,4,3.5,5,4\n"  # 4: not whole
        "ana,lora,e4,4,,5,4\n"  # 5: partly empty
        ",lora,e5,4,3,5,4\n"  # 6: no rater
        "ana,lora,e1,1,1,1,1\n"  # 7: duplicate of line 2
        "ana,lora,e6,4,3\n"  # 8: short row
    )
    with pytest.raises(RatingsError) as e:
        parse_ratings(text, source="ratings.csv")
    msg = str(e.value)
    assert msg.startswith("ratings.csv: 6 bad row(s)")
    assert "line 3: dynamic (dynamic performance) must be a whole number from 1 to 5, got '6'" in msg
    assert "line 4: camera (camera control) must be a whole number from 1 to 5, got '3.5'" in msg
    assert "line 5: camera empty: give all four ratings or none" in msg
    assert "line 6: rater is empty" in msg
    assert "line 7: rater 'ana' already rated model 'lora' entry 'e1' on line 2" in msg
    assert "line 8: 5 fields, the header has 7" in msg


def test_missing_file_is_named(tmp_path):
    with pytest.raises(RatingsError, match="does not exist"):
        read_ratings(tmp_path / "nope.csv")


def test_template_round_trips_as_unrated():
    text = ratings_template([("base", "e1"), ("lora", "e,2")])
    assert text.splitlines()[0] == HEADER.strip()
    assert parse_ratings(text) == []


def _metrics(models, entries, rng):
    return {(m, e): (rng.uniform(15, 40), rng.uniform(0.3, 0.95)) for m in models for e in entries}


def _row(rater, model, entry, scores):
    return f"{rater},{model},{entry},{','.join(map(str, scores))}\n"


def test_complete_totals_are_the_mean_of_entry_totals_and_raters_are_averaged():
    rng = random.Random()
    entries = ["e1", "e2", "e3"]
    metrics = _metrics(["base", "lora"], entries, rng)
    text, sums = HEADER, {}
    for m in ("base", "lora"):
        for e in entries:
            a, b = [rng.randint(1, 5) for _ in range(4)], [rng.randint(1, 5) for _ in range(4)]
            text += _row("ana", m, e, a) + _row("bo", m, e, b)
            sums[(m, e)] = (sum(a) + sum(b)) / 2
    table = score_table(metrics, parse_ratings(text))
    assert table.missing == () and table.unused == ()
    for model in table.models:
        expected = sum(
            weighted_total(subjective=sums[(model.model, e)], psnr=metrics[(model.model, e)][0],
                           ssim=metrics[(model.model, e)][1])
            for e in entries
        ) / 3
        assert model.complete and model.total == pytest.approx(expected)
        assert model.basis == "complete: metrics + ratings of all 3 entries"
    assert [m.rank for m in table.models] == [1, 2]
    assert table.models[0].total >= table.models[1].total
    assert all(e.raters == 2 and e.basis.startswith("complete") for e in table.entries)


def test_missing_ratings_are_reported_and_partial_totals_rank_after_complete_ones():
    metrics = {
        ("great_unrated", "e1"): (49.0, 0.99), ("great_unrated", "e2"): (49.0, 0.99),
        ("half_rated", "e1"): (45.0, 0.98), ("half_rated", "e2"): (45.0, 0.98),
        ("rated", "e1"): (10.0, 0.1), ("rated", "e2"): (10.0, 0.1),
    }
    text = HEADER + _row("ana", "rated", "e1", [1, 1, 1, 1]) + _row("ana", "rated", "e2", [1, 1, 1, 1])
    text += _row("ana", "half_rated", "e1", [5, 5, 5, 5])
    text += _row("ana", "ghost", "e1", [3, 3, 3, 3]) + _row("ana", "rated", "e9", [3, 3, 3, 3])
    table = score_table(metrics, parse_ratings(text))
    order = [m.model for m in table.models]
    # the only complete model ranks first although its total is lowest
    assert order == ["rated", "great_unrated", "half_rated"]
    rated, unrated, half = table.models
    assert rated.complete and rated.rank == 1
    assert rated.total == pytest.approx(weighted_total(subjective=4, psnr=10, ssim=0.1))
    assert not unrated.complete and unrated.subjective_part is None and unrated.subjective is None
    assert unrated.total == pytest.approx(49 / 50 * 0.25 + 0.99 * 0.25)
    assert unrated.basis == "partial: metrics only; no ratings for its 2 entries"
    assert not half.complete and half.subjective == 20  # shown, but not in its total
    assert half.total == pytest.approx(45 / 50 * 0.25 + 0.98 * 0.25)
    assert half.basis == "partial: metrics only; ratings for 1 of 2 entries (missing for 1)"
    assert set(table.missing) == {("great_unrated", "e1"), ("great_unrated", "e2"), ("half_rated", "e2")}
    assert [(r.model, r.entry, r.line) for r in table.unused] == [("ghost", "e1", 5), ("rated", "e9", 6)]


def test_without_any_ratings_every_total_is_partial_and_ranked_by_metrics():
    rng = random.Random()
    metrics = _metrics(["a", "b", "c"], ["e1", "e2"], rng)
    table = score_table(metrics)
    totals = [m.total for m in table.models]
    assert totals == sorted(totals, reverse=True)
    assert all(not m.complete for m in table.models) and len(table.missing) == 6


def test_models_with_the_same_scores_on_other_entries_tie_and_rank_by_name():
    rng = random.Random()
    for _ in range(10_000):  # draw until summing in another order leaves "b" ahead in the last bits
        values = [(rng.uniform(15, 35), rng.uniform(0.5, 0.95)) for _ in range(rng.randint(3, 8))]
        shuffled = rng.sample(values, len(values))
        metrics = {("b", f"e{i}"): v for i, v in enumerate(values)}
        metrics |= {("a", f"e{i}"): v for i, v in enumerate(shuffled)}
        totals = {m.model: m.total for m in score_table(metrics).models}
        if totals["b"] > totals["a"]:
            break
    else:
        pytest.fail("no draw put b ahead by rounding")
    models = score_table(metrics).models
    assert [m.model for m in models] == ["a", "b"] and [m.rank for m in models] == [1, 2]
    assert models[0].total == pytest.approx(models[1].total, abs=1e-12)
