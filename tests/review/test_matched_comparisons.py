"""A comparison is a fixed, named thing (issue 8): only outputs made with identical settings (same prompt, same
sample index and seed) are paired, battled, shown side by side or counted, and the pages say which settings."""
from __future__ import annotations

import re

import pytest

from labeling.models import PairTask, Prompt
from tests.factories import UserFactory, make_pair_vote
from tests.review.conftest import MATCHED, SETTINGS, add_output, review_setup
from training.models import Battle, GenerationJob
from training.review import battles as review_battles
from training.review import leaderboard as review_leaderboard
from training.review import matched_outputs as review_matched_outputs
from training.review import results as review_results
from training.review import side_by_side as review_side_by_side
from training.review.comparisons import comparison_key, describe_settings
from training.review.versions import ReviewError

pytestmark = pytest.mark.django_db

WARM = {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 256, "seed": 0}
HOT = {"temperature": 1.2, "top_p": 1.0, "max_new_tokens": 64, "seed": 5}


def _sample(settings: dict, k: int) -> dict:
    return {**settings, "sample": k}


def _text(html: str) -> str:
    """The page's text as a reader sees it: tags dropped, whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _vote_all(choice_for_tuned: str, setup) -> None:  # noqa: ANN001
    annotator = UserFactory()
    for task in PairTask.objects.filter(purpose="review").select_related("completion_a"):
        tuned_is_a = task.completion_a.model_version_id == setup.tuned.pk
        choice = {"win": "a" if tuned_is_a else "b", "loss": "b" if tuned_is_a else "a"}.get(choice_for_tuned, choice_for_tuned)
        make_pair_vote(task, annotator, choice)


# ---------------------------------------------------------------- pairing


def test_outputs_made_with_different_settings_are_never_paired():
    # Given two jobs' outputs: job 1 (WARM, 3 samples) made base and tuned; job 2 (HOT) made only the tuned model's.
    s = review_setup(prompts=2, with_outputs=False)
    for prompt in s.heldout:
        for k in range(3):
            add_output(prompt, s.base, f"base warm {prompt.pk}/{k}", _sample(WARM, k))
            add_output(prompt, s.tuned, f"tuned warm {prompt.pk}/{k}", _sample(WARM, k))
        add_output(prompt, s.tuned, f"tuned hot {prompt.pk}", _sample(HOT, 0))
    # When battles are created for the default comparison
    battle = review_battles.battles_create(project=s.project, version_a=s.tuned, version_b=s.base, seed=1)
    # Then there is one pair per prompt and sample, each of outputs made with the same settings and seed
    tasks = list(PairTask.objects.filter(purpose="review").select_related("completion_a", "completion_b"))
    assert battle.tasks_created == len(tasks) == 6
    for task in tasks:
        assert task.completion_a.generation_settings == task.completion_b.generation_settings
        assert task.matched_settings == WARM
    assert {(t.prompt_id, t.completion_a.generation_settings["sample"]) for t in tasks} == {
        (p.pk, k) for p in s.heldout for k in range(3)
    }
    assert battle.settings == WARM and battle.identical_skipped == 0
    # and HOT, which only the tuned model has, gives nothing to battle
    with pytest.raises(ReviewError, match="generate them first"):
        review_battles.battles_create(project=s.project, version_a=s.tuned, version_b=s.base, settings=HOT)
    assert PairTask.objects.filter(purpose="review").count() == 6


def test_a_legacy_unmatched_pair_is_left_out_of_win_rates_and_the_leaderboard(setup):
    # Given the newest-output-per-prompt pairing of old: base made with SETTINGS, tuned with HOT, voted on
    prompt = setup.heldout[0]
    legacy = PairTask.objects.create(
        project=setup.project, prompt=prompt, purpose="review", overlap=1,
        completion_a=add_output(prompt, setup.tuned, "tuned hot, much longer answer", _sample(HOT, 0)),
        completion_b=setup.base.completions.get(prompt=prompt),
    )
    make_pair_vote(legacy, UserFactory(), "a")
    # and matched battles, all won by the base
    review_battles.battles_create(project=setup.project, version_a=setup.tuned, version_b=setup.base, settings=MATCHED, seed=1)
    matched = PairTask.objects.filter(purpose="review").exclude(pk=legacy.pk)
    assert matched.count() == 4 and all(t.matched_settings == MATCHED for t in matched)
    annotator = UserFactory()
    for task in matched.select_related("completion_a"):
        make_pair_vote(task, annotator, "b" if task.completion_a.model_version_id == setup.tuned.pk else "a")
    # Then the legacy vote counts nowhere
    results = review_results.battle_results(project=setup.project, tuned=setup.tuned, base=setup.base)
    assert (results.wins, results.losses, results.tasks, results.unmatched) == (0, 4, 4, 1)
    assert all(a != b for a, b, *_ in review_leaderboard.review_battles(project=setup.project))
    assert len(review_leaderboard.review_battles(project=setup.project)) == 4
    top = review_leaderboard.leaderboard(project=setup.project, rounds=10)[0]
    assert top.version == setup.base and top.battles == 4 and (top.wins, top.losses) == (4, 0)


def test_outputs_stored_without_settings_are_never_paired():
    s = review_setup(prompts=2, with_outputs=False)
    for prompt in s.heldout:
        add_output(prompt, s.base, "old base", {})
        add_output(prompt, s.tuned, "old tuned", {})
    assert review_matched_outputs.comparisons(project=s.project, first=s.base, second=s.tuned) == []
    with pytest.raises(ReviewError, match="generate them first"):
        review_battles.battles_create(project=s.project, version_a=s.tuned, version_b=s.base)
    with pytest.raises(ReviewError, match="generate them first"):
        review_battles.battles_create(project=s.project, version_a=s.tuned, version_b=s.base, settings={})


def test_identical_outputs_are_never_battled_and_are_counted(setup):
    for prompt in setup.heldout[:3]:
        tuned = setup.tuned.completions.get(prompt=prompt)
        tuned.text = setup.base.completions.get(prompt=prompt).text + "\n"
        tuned.save()
    battle = review_battles.battles_create(project=setup.project, version_a=setup.tuned, version_b=setup.base, seed=0)
    assert (battle.tasks_created, battle.identical_skipped, battle.prompts_missing_outputs) == (1, 3, 0)
    task = PairTask.objects.get(purpose="review")
    assert task.prompt_id == setup.heldout[3].pk


def test_calling_again_adds_only_new_pairs_and_stamps_an_older_matched_pair(setup):
    prompt = setup.heldout[0]
    old = PairTask.objects.create(
        project=setup.project, prompt=prompt, purpose="review", overlap=1,
        completion_a=setup.base.completions.get(prompt=prompt), completion_b=setup.tuned.completions.get(prompt=prompt),
    )
    battle = review_battles.battles_create(project=setup.project, version_a=setup.tuned, version_b=setup.base)
    assert battle.tasks_created == 3, "the older pair of the same two outputs is not battled twice"
    old.refresh_from_db()
    assert old.matched_settings == MATCHED, "both its outputs were made with the same settings: it is matched"
    assert review_battles.battles_create(project=setup.project, version_a=setup.base, version_b=setup.tuned).tasks_created == 0


def test_the_default_comparison_is_the_newest_review_jobs_settings():
    s = review_setup(prompts=2, with_outputs=False)
    for prompt in s.heldout:
        for settings in (WARM, HOT):
            add_output(prompt, s.base, f"base {settings['temperature']} {prompt.pk}", _sample(settings, 0))
            add_output(prompt, s.tuned, f"tuned {settings['temperature']} {prompt.pk}", _sample(settings, 0))
    options = review_matched_outputs.comparisons(project=s.project, first=s.base, second=s.tuned)
    assert [c.settings for c in options] == [HOT, WARM], "newest outputs first"
    assert all(c.pairs == 2 and c.prompts == 2 for c in options)
    GenerationJob.objects.create(project=s.project, run=s.run, prompt_ids=[], settings={**WARM, "n": 1}, status="succeeded")
    assert review_matched_outputs.comparison_choose(options, run=s.run).settings == WARM
    assert review_matched_outputs.comparison_choose(options, key=comparison_key(HOT), run=s.run).settings == HOT
    assert review_matched_outputs.comparison_choose(options, key="no-such-key", run=s.run).settings == WARM
    assert review_matched_outputs.comparison_choose(options).settings == HOT


def test_settings_are_described_for_people():
    assert describe_settings(WARM, range(3)) == "temperature 0.7, top-p 0.9, up to 256 tokens, seeds 0–2 (3 samples per prompt)"
    assert describe_settings(SETTINGS, [0]) == "greedy (temperature 0), top-p 0.9, up to 16 tokens, seed 0 (1 sample per prompt)"
    assert describe_settings(HOT, [0, 2]) == "temperature 1.2, top-p 1, up to 64 tokens, seeds 5, 7 (2 samples per prompt)"
    assert describe_settings(WARM) == "temperature 0.7, top-p 0.9, up to 256 tokens, from seed 0"
    assert comparison_key({**WARM, "sample": 2}) == comparison_key({**WARM, "n": 3}) == comparison_key({**WARM, "temperature": 0.7})
    assert comparison_key({**SETTINGS, "temperature": 0}) == comparison_key(SETTINGS), "0 and 0.0 are one temperature"


# ---------------------------------------------------------------- side by side


def test_side_by_side_shows_one_row_per_prompt_and_sample_of_the_chosen_comparison():
    s = review_setup(prompts=2, with_outputs=False)
    for prompt in s.heldout:
        for k in range(2):
            add_output(prompt, s.base, f"base {prompt.pk}/{k}", _sample(WARM, k))
            add_output(prompt, s.tuned, f"tuned {prompt.pk}/{k}", _sample(WARM, k), finish_reason="length" if k else "stop")
        add_output(prompt, s.tuned, f"tuned hot {prompt.pk}", _sample(HOT, 0))
    rows = review_side_by_side.side_by_side(project=s.project, base=s.base, tuned=s.tuned, settings=WARM)
    assert [(r.prompt.pk, r.sample) for r in rows] == [(p.pk, k) for p in s.heldout for k in range(2)]
    assert all(r.base.generation_settings == r.tuned.generation_settings for r in rows)
    assert [r.tuned.is_truncated for r in rows] == [False, True, False, True]
    hot = review_side_by_side.side_by_side(project=s.project, base=s.base, tuned=s.tuned, settings=HOT)
    assert [(r.base, r.tuned.text) for r in hot] == [(None, f"tuned hot {p.pk}") for p in s.heldout]


def test_search_finds_accented_and_quoted_text(setup):
    prompt = Prompt.objects.create(
        project=setup.project, split="heldout",
        messages=[{"role": "system", "content": "Be kind."}, {"role": "user", "content": 'Où est le café? She said "hello there".'}],
    )
    add_output(prompt, setup.base, "Près de la gare.", SETTINGS)
    add_output(prompt, setup.tuned, "Le café est près de la gare.", SETTINGS)
    compare = {"project": setup.project, "base": setup.base, "tuned": setup.tuned, "settings": MATCHED}
    for needle in ("café", "CAFÉ", '"hello there"', "said \"hello", "Où est", "près de la gare", "cafe\u0301"):
        found = review_side_by_side.side_by_side(**compare, search=needle)
        assert [r.prompt.pk for r in found] == [prompt.pk], needle
    assert review_side_by_side.side_by_side(**compare, search='"hello here"') == []


def test_the_review_page_searches_accented_and_quoted_text(admin_client, setup):
    prompt = Prompt.objects.create(project=setup.project, split="heldout", messages=[{"role": "user", "content": 'Le "café" du coin?'}])
    add_output(prompt, setup.base, "Oui.", SETTINGS)
    add_output(prompt, setup.tuned, "Oui, bien sûr.", SETTINGS)
    for needle in ("café", '"café"'):
        html = admin_client.get(f"/runs/{setup.run.pk}/review/", {"q": needle}).content.decode()
        assert "Oui, bien sûr." in html and "Tuned answer 1" not in html, needle


def test_the_review_page_names_the_settings_and_marks_cut_off_outputs(admin_client):
    s = review_setup(prompts=2, with_outputs=False)
    for prompt in s.heldout:
        for k in range(3):
            add_output(prompt, s.base, f"base {prompt.pk}/{k}", _sample(WARM, k))
            add_output(prompt, s.tuned, f"tuned {prompt.pk}/{k}", _sample(WARM, k), finish_reason="length" if k == 2 else "stop")
    html = admin_client.get(f"/runs/{s.run.pk}/review/").content.decode()
    text = _text(html)
    assert "temperature 0.7, top-p 0.9, up to 256 tokens, seeds 0–2 (3 samples per prompt)" in text
    assert "6 matched pairs on 2 held-out prompts" in text
    assert html.count('data-testid="tuned-cut-off"') == 2 and 'data-testid="base-cut-off"' not in html
    assert html.count("<tr data-prompt=") == 6
    # The headline counts them, and a third of the tuned answers (a sixth of all) is not yet worth a warning.
    assert "Finished? cut off at 256 tokens: 2 of 6 tuned outputs, 0 of the base's" in text
    assert 'data-testid="cut-off-warning"' not in html


def test_a_review_where_a_quarter_of_the_answers_are_cut_off_says_to_generate_again(admin_client):
    s = review_setup(prompts=2, with_outputs=False)
    for prompt in s.heldout:
        for k in range(2):
            add_output(prompt, s.base, f"base {prompt.pk}/{k}", _sample(WARM, k), finish_reason="length" if k else "stop")
            add_output(prompt, s.tuned, f"tuned {prompt.pk}/{k}", _sample(WARM, k), finish_reason="stop")

    html = admin_client.get(f"/runs/{s.run.pk}/review/").content.decode()

    assert "cut off at 256 tokens: 0 of 4 tuned outputs, 2 of the base's" in _text(html)
    assert 'data-testid="cut-off-warning"' in html and "Generate the review outputs again with a higher token limit" in html


def test_review_outputs_default_to_the_candidates_token_limit(admin_client):
    from training.review.forms import CANDIDATE_MAX_NEW_TOKENS, GenerationForm

    s = review_setup(prompts=3, with_outputs=False, name="Limits")
    html = admin_client.get(f"/runs/{s.run.pk}/review/").content.decode()

    assert GenerationForm().fields["max_new_tokens"].initial == CANDIDATE_MAX_NEW_TOKENS == 384
    assert re.search(r'name="max_new_tokens" value="384"', html)


def test_the_admin_picks_which_comparison_to_view_and_battle(admin_client):
    s = review_setup(prompts=2, with_outputs=False)
    for prompt in s.heldout:
        for settings in (WARM, HOT):
            add_output(prompt, s.base, f"base {settings['temperature']} {prompt.pk}", _sample(settings, 0))
            add_output(prompt, s.tuned, f"tuned {settings['temperature']} {prompt.pk}", _sample(settings, 0))
    html = admin_client.get(f"/runs/{s.run.pk}/review/").content.decode()
    assert 'data-testid="comparison-picker"' in html and "tuned 1.2" in html and "tuned 0.7" not in html
    warm = comparison_key(WARM)
    html = admin_client.get(f"/runs/{s.run.pk}/review/", {"settings": warm}).content.decode()
    assert "tuned 0.7" in html and "tuned 1.2" not in html
    response = admin_client.post(f"/runs/{s.run.pk}/battles/create/", {"settings": warm}, follow=True)
    assert "Created 2 blind battles (temperature 0.7, top-p 0.9, up to 256 tokens, from seed 0)" in response.content.decode()
    assert {t.matched_settings["temperature"] for t in PairTask.objects.filter(purpose="review")} == {0.7}
    assert Battle.objects.get().settings == WARM


# ---------------------------------------------------------------- did the model move?


def test_identical_outputs_create_no_battle_and_the_review_page_warns(admin_client, setup):
    for prompt in setup.heldout:
        tuned = setup.tuned.completions.get(prompt=prompt)
        tuned.text = setup.base.completions.get(prompt=prompt).text
        tuned.save()
    response = admin_client.post(f"/runs/{setup.run.pk}/battles/create/", follow=True)
    assert "Created 0 blind battles" in response.content.decode()
    assert "4 matched pairs were left out: both versions wrote the same text" in response.content.decode()
    assert PairTask.objects.filter(purpose="review").count() == 0
    html = admin_client.get(f"/runs/{setup.run.pk}/review/").content.decode()
    assert "The tuned model did not move: 4 of 4 outputs are identical to the base&#x27;s." in html
    assert f'href="/projects/{setup.project.pk}/runs/new/"' in html


def test_the_warning_reads_the_workers_measurement(admin_client, setup):
    GenerationJob.objects.create(
        project=setup.project, run=setup.run, prompt_ids=[p.pk for p in setup.heldout], settings={**MATCHED, "n": 1},
        status="succeeded", movement={"pairs": 6, "identical": 6, "identical_share": 1.0, "kl_per_token": 0.0003, "tokens": 120},
    )
    text = _text(admin_client.get(f"/runs/{setup.run.pk}/review/").content.decode())
    assert (
        "The tuned model did not move: 6 of 6 outputs are identical to the base's (KL 3e-4 per token). "
        "Try more steps, a larger learning rate, or more data. Launch a new run"
    ) in text.replace("&#x27;", "'")
    assert "100.0% identical · KL 3e-4" in text


def test_a_model_that_moved_gets_no_warning(admin_client, setup):
    html = admin_client.get(f"/runs/{setup.run.pk}/review/").content.decode()
    assert 'data-testid="not-moved"' not in html and 'data-testid="degenerate-warning"' not in html
    assert "0.0% of 4 matched outputs are identical" in _text(html)
    # The fixture's base answers ("Base answer 3.") have two words: fragments, and fewer than the tuned model's.
    assert "loops, fragments or symbol soup in 0 of 4 tuned outputs, 4 of the base's" in _text(html)


def test_tuned_outputs_that_are_not_answers_are_counted_and_warned_about(admin_client, setup):
    broken = ["POPPI! " * 30, "Yes", "good " * 12 + "answer answer answer answer " * 6]
    for prompt, text in zip(setup.heldout, broken, strict=False):
        tuned = setup.tuned.completions.get(prompt=prompt)
        tuned.text = text
        tuned.save()
    for prompt in setup.heldout:
        base = setup.base.completions.get(prompt=prompt)
        base.text = f"A complete answer to question {prompt.pk}, in a sentence."
        base.save()

    text = _text(admin_client.get(f"/runs/{setup.run.pk}/review/").content.decode()).replace("&#x27;", "'")

    assert "loops, fragments or symbol soup in 3 of 4 tuned outputs, 0 of the base's" in text
    assert "3 of 4 tuned answers are not answers (loops, fragments, symbol soup) against 0 of the base's" in text
    assert "one short string repeated: “POPPI! POPPI!" in text
    assert "fewer than three words: “Yes…”" in text
    assert "the same few words over and over" in text


# ---------------------------------------------------------------- figures, headline, labels


def test_the_battles_page_shows_paired_and_length_controlled_win_rates(admin_client, setup):
    review_battles.battles_create(project=setup.project, version_a=setup.tuned, version_b=setup.base, seed=3)
    tasks = sorted(PairTask.objects.filter(purpose="review").select_related("completion_a"), key=lambda t: t.prompt_id)
    annotator = UserFactory()
    for task, outcome in zip(tasks, ["win", "win", "tie", "loss"], strict=True):
        tuned_is_a = task.completion_a.model_version_id == setup.tuned.pk
        make_pair_vote(task, annotator, {"win": "a" if tuned_is_a else "b", "loss": "b" if tuned_is_a else "a"}.get(outcome, outcome))
    results = review_results.battle_results(project=setup.project, tuned=setup.tuned, base=setup.base, settings=MATCHED)
    assert results.paired.rate == pytest.approx(0.625) and results.paired.prompts == 4 and results.paired.votes == 4
    assert results.length_controlled is not None and results.length_controlled.length_unit == "words"
    assert results.mean_word_change == pytest.approx(3.0)
    html = admin_client.get(f"/runs/{setup.run.pk}/battles/").content.decode()
    text = _text(html)
    assert "Paired win rate 62.5%" in text and f"95% CI {results.paired_interval} · sign test {results.sign_test}" in text
    assert f"Length-controlled win rate {results.lc_percent}" in text and f"95% CI {results.lc_interval}" in text
    assert "4 of 4" in text and "4 votes on 4 prompts" in text
    assert "resamples whole prompts" in text and "as long as the base's" in text.replace("&#x27;", "'")
    assert re.search(r"\d\.\d{5,}", text) is None, "no Python reprs of floats"


def test_the_review_page_leads_with_validation_then_the_matched_comparison(admin_client, setup):
    type(setup.run).objects.filter(pk=setup.run.pk).update(outcome={
        "kept_step": 120, "best_metric": 0.93, "validation_rows": 20, "train_rows": 180,
        "validation": {"rewards/accuracies": 0.93, "rewards/margins": -0.06400000000000006, "loss": 0.41234},
        "final_train": {"rewards/accuracies": 1.0, "loss": 0.0001},
    })
    html = admin_client.get(f"/runs/{setup.run.pk}/review/").content.decode()
    text = _text(html)
    headline = text[text.index("Training:"):]
    assert headline.startswith("Training: validation implicit-reward accuracy 0.93 on 20 pairs (kept checkpoint, step 120)")
    assert "reward margin −0.064" in headline and "-0.0640000" not in html
    assert headline.index("validation implicit-reward") < headline.index("Matched outputs: greedy (temperature 0)")
    assert "Final training metrics" not in text and "0.0001" not in text, "never the last training batch"


def test_a_kto_runs_headline_gives_loss_kl_and_ranking_accuracy(admin_client, setup):
    type(setup.run).objects.filter(pk=setup.run.pk).update(method="kto", outcome={
        "kept_step": 40, "validation_rows": 12,
        "validation": {"eval_loss": 0.512345, "eval_kl": 0.0123, "eval_ranking_accuracy": 0.8333333},
    })
    text = _text(admin_client.get(f"/runs/{setup.run.pk}/review/").content.decode())
    assert "validation loss 0.512, KL 0.0123, ranking accuracy 0.833 on 12 rows (kept checkpoint, step 40)" in text


def test_a_run_without_an_outcome_says_so_instead_of_a_train_batch(admin_client, setup):
    text = _text(admin_client.get(f"/runs/{setup.run.pk}/review/").content.decode())
    assert "no validation figures were recorded for this run" in text


def test_the_base_is_labelled_base_once(admin_client, setup):
    review_battles.battles_create(project=setup.project, version_a=setup.tuned, version_b=setup.base, seed=1)
    _vote_all("tie", setup)
    for url in (f"/runs/{setup.run.pk}/review/", f"/runs/{setup.run.pk}/battles/", f"/projects/{setup.project.pk}/leaderboard/"):
        text = _text(admin_client.get(url).content.decode())
        assert "test-base (base)" in text and "(base) (base)" not in text and "(base) base" not in text, url


def test_a_contaminated_version_is_flagged_next_to_its_figures(admin_client, setup):
    type(setup.tuned).objects.filter(pk=setup.tuned.pk).update(saw_heldout=True)
    review_battles.battles_create(project=setup.project, version_a=setup.tuned, version_b=setup.base, seed=1)
    _vote_all("win", setup)
    flag = "trained on held-out votes: its win rate is contaminated"
    review = admin_client.get(f"/runs/{setup.run.pk}/review/").content.decode()
    battles = admin_client.get(f"/runs/{setup.run.pk}/battles/").content.decode()
    board = admin_client.get(f"/projects/{setup.project.pk}/leaderboard/").content.decode()
    assert review.count(flag) >= 5, "the headline and each win-rate figure"
    assert battles.count(flag) >= 4
    assert board.count(flag) == 1
    row = re.search(rf'<tr data-version="{setup.tuned.pk}">.*?</tr>', board, re.S).group(0)
    assert flag in row
    type(setup.tuned).objects.filter(pk=setup.tuned.pk).update(saw_heldout=False)
    assert flag not in admin_client.get(f"/runs/{setup.run.pk}/battles/").content.decode()


def test_the_leaderboard_form_starts_on_two_different_versions_and_an_empty_board_says_what_next(admin_client, setup):
    html = admin_client.get(f"/projects/{setup.project.pk}/leaderboard/").content.decode()
    picked = re.findall(r'<select name="(version_[ab])".*?<option value="(\d+)" selected', html, re.S)
    assert dict(picked) == {"version_a": str(setup.tuned.pk), "version_b": str(setup.base.pk)}
    empty = _text(html)
    assert "No votes on matched review pairs yet" in empty
    assert "Generate base and tuned outputs" in empty and "Create blind battles" in empty and "vote" in empty


# ---------------------------------------------------------------- the form


def test_the_generation_form_asks_for_enough_samples_for_90_matched_pairs(admin_client):
    from training.review.forms import GenerationForm

    assert GenerationForm(heldout_prompts=30).fields["n"].initial == 3
    assert GenerationForm(heldout_prompts=30).samples_sentence == "30 held-out prompts × 3 samples = 90 matched pairs."
    assert GenerationForm(heldout_prompts=100).fields["n"].initial == 1
    assert GenerationForm(heldout_prompts=31).fields["n"].initial == 3
    assert GenerationForm(heldout_prompts=4).fields["n"].initial == 8
    assert "32 matched pairs (fewer than 90" in GenerationForm(heldout_prompts=4).samples_sentence
    s = review_setup(prompts=30, with_outputs=False, name="Thirty")
    html = admin_client.get(f"/runs/{s.run.pk}/review/").content.decode()
    assert "30 held-out prompts × 3 samples = 90 matched pairs" in html
    assert re.search(r'name="n" value="3"', html)


def test_greedy_decoding_with_several_samples_is_refused(admin_client, setup):
    response = admin_client.post(
        f"/runs/{setup.run.pk}/review/generate/",
        {"n": 3, "max_new_tokens": 16, "temperature": 0, "top_p": 0.9, "seed": 0, "create_review_tasks": "on"}, follow=True,
    )
    assert "Greedy decoding" in response.content.decode() and GenerationJob.objects.count() == 0
