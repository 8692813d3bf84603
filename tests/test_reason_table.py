"""The reason table's tool (monitor/training/reason_table.py): the card's section on the adaptation study."""

from monitor.training.adaptation_study import bootstrap, default_adaptation, scores


def test_the_tool_rewrites_only_the_cards_section_on_the_study_and_says_what_runs(tmp_path):
    from monitor.training.adaptation_study import PAIRS, PREDICTORS
    from monitor.training.reason_table import ADAPTATION_HEADING, rewrite_adaptation_section

    guesses = [{"baby": f"b{i}", "answers": 1, "true": "tired", "population": "hungry", "majority": "tired",
                "adapted": "tired" if i % 2 else "hungry", "prior": "tired" if i % 3 else "hungry"} for i in range(12)]
    resampled = bootstrap(guesses, PREDICTORS, PAIRS)
    folds = [{"fold": k, "babies": 3, "a": 0.25, "b": 4.0, "floor": 0.01} for k in range(4)]
    study = {"arch": "cnn14-mha", "babies": 12, "clips": 20, "tags": {"tired": 12, "unknown": 8}, "scored": 12,
             "buckets": [{"answers": [1, 2], "guesses": 12, "babies": 12, **{p: scores(guesses, p) for p in PREDICTORS}}],
             "taught": {"guesses": 12, "babies": 12, **resampled["predictors"]}, "differences": resampled["differences"],
             "prior_and_majority_differ": {"guesses": 4, "prior_right": 0, "majority_right": 4},
             "prior_fit": {"grid": {"a": [0.25], "b": [4.0], "floor": [0.01]}, "folds": folds,
                           "shipped": {"a": 0.25, "b": 4.0, "floor": 0.01}},
             "default": default_adaptation(resampled["differences"])}
    card = tmp_path / "classifier.md"
    card.write_text(f"# Card\n\nbefore\n\n{ADAPTATION_HEADING}\nold numbers\n\n## Limits\nafter\n")
    rewrite_adaptation_section(card, study)
    text = card.read_text()
    assert text.startswith("# Card\n\nbefore\n\n" + ADAPTATION_HEADING) and text.endswith("\n\n## Limits\nafter\n")
    assert "old numbers" not in text and study["default"] == "majority"  # everyone else is right less often
    assert "Verdict: **`majority`** runs by default" in text and "| count prior | `prior` | 0.667 (" in text
    assert "a = 0.25, b = 4,\nfloor = 0.01" in text and "differ on 4 of the 12 guesses" in text
