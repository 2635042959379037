"""The admin dashboard, the disagreements page and adjudication, through the client against literal URLs."""
from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from labeling.models import PairTask, Project
from tests.factories import (
    PASSWORD,
    CompletionFactory,
    ProjectFactory,
    PromptFactory,
    UserFactory,
    make_pair_task,
    make_pair_vote,
    make_rate_task,
    make_rating,
)
from training.models import GenerationJob


@dataclass
class Voted:
    project: Project
    tasks: list[PairTask]  # t0 unanimous a, t1 a/a/b, t2 a/b/tie, t3 unanimous b, t4 open with no votes
    users: dict


@pytest.fixture
def voted(db) -> Voted:
    """Three annotators, overlap 3, a known set of votes (the figures in the tests are worked from it).

    task   ann        bob        cat
    t0     a (1 s)    a (4 s)    a
    t1     a (2 s)    a (4 s)    b
    t2     a (3 s)    b (4 s)    tie
    t3     b (10 s)   b (4 s)    b
    t4     open, no votes
    A is always shown on the left for ann, on the right for bob and cat; cat's times were not measured (0).
    """
    project = ProjectFactory(overlap=3)
    users = {name: UserFactory(username=name) for name in ("ann", "bob", "cat")}
    project.members.add(*users.values())
    tasks = [make_pair_task(project, n) for n in range(5)]
    table = [("a", "a", "a"), ("a", "a", "b"), ("a", "b", "tie"), ("b", "b", "b")]
    ann_ms = [1000, 2000, 3000, 10_000]
    for task, (ann, bob, cat), ms in zip(tasks, table, ann_ms, strict=False):
        make_pair_vote(task, users["ann"], ann, a_side="left", time_spent_ms=ms, rationale=f"ann on {task.pk}")
        make_pair_vote(task, users["bob"], bob, a_side="right", time_spent_ms=4000)
        make_pair_vote(task, users["cat"], cat, a_side="right", rationale="<script>alert('cat')</script>")
    for task in tasks:
        task.refresh_from_db()
    return Voted(project=project, tasks=tasks, users=users)


def url(project: Project, page: str) -> str:
    return f"/projects/{project.pk}/{page}/"


def adjudicate_url(project: Project, task: PairTask) -> str:
    return f"/projects/{project.pk}/pairs/{task.pk}/adjudicate/"


def test_it_shows_progress_for_known_votes(admin_client, voted):
    response = admin_client.get(url(voted.project, "dashboard"))

    assert response.status_code == 200
    progress = response.context["progress"]
    assert progress["tasks_total"] == 5
    assert progress["tasks_complete"] == 4
    assert progress["tasks_open"] == 1
    assert progress["votes"] == 12
    assert progress["ratings"] == 0
    assert progress["votes_wanted"] == 15
    assert progress["percent_votes"] == 80.0
    assert progress["percent_complete"] == 80.0
    html = response.content.decode()
    assert '<b data-testid="tasks-complete">4</b> of 5 tasks' in html
    assert '<b data-testid="votes">12</b>' in html
    assert 'style="width: 80.0%"' in html


def test_the_overlap_beside_the_title_says_what_it_is(admin_client, voted):
    html = admin_client.get(url(voted.project, "dashboard")).content.decode()

    assert '<span class="muted" data-testid="overlap" title="How many different annotators judge each task">3 votes per task</span>' in html
    assert "overlap 3" not in html


def test_it_counts_the_answers_annotators_wrote(admin_client, voted):
    from labeling.models import PairVote

    votes = PairVote.objects.filter(task__project=voted.project)
    votes.filter(task=voted.tasks[0], annotator=voted.users["ann"]).update(edited_text="A rewrite of A.")
    votes.filter(task=voted.tasks[2], annotator=voted.users["cat"]).update(edited_text="What neither said.")

    html = admin_client.get(url(voted.project, "dashboard")).content.decode()

    assert '<b data-testid="written-answers">2</b> answers written (1 rewrites of a pick, 1 in place of both)' in html


def test_it_shows_agreement_for_known_votes(admin_client, voted):
    response = admin_client.get(url(voted.project, "dashboard"))

    agreement = response.context["agreement"]
    # Alpha by hand over t0–t3 (t4 has no votes): n = 12; n_a = 3+2+1 = 6, n_b = 1+1+3 = 5, n_tie = 1.
    # Off-diagonal coincidences: t1 {a,a,b}: 4 ordered a/b pairs / (3-1) = 2; t2 {a,b,tie}: 6 / 2 = 3; Σ = 5.
    # Σ_{c≠k} n_c n_k = 144 - (36 + 25 + 1) = 82.  alpha = 1 - 11·5/82 = 27/82 ≈ 0.329.
    assert agreement.pair_alpha == pytest.approx(27 / 82)
    assert agreement.pair_units == 4
    assert agreement.rating_alpha is None
    # Kappa by hand. ann (a,a,a,b), bob (a,a,b,b), cat (a,b,tie,b).
    # ann–bob: p_o = 3/4, p_e = 3/4·1/2 + 1/4·1/2 = 1/2 → 0.5.
    # ann–cat: p_o = 2/4, p_e = 3/4·1/4 + 1/4·2/4 = 5/16 → (3/16)/(11/16) = 3/11.
    # bob–cat: p_o = 2/4, p_e = 1/2·1/4 + 1/2·2/4 = 3/8 → (1/8)/(5/8) = 0.2.
    kappas = {(k.first, k.second): (k.kappa, k.n_shared) for k in agreement.pair_kappas}
    assert kappas == {
        ("ann", "bob"): (pytest.approx(0.5), 4),
        ("ann", "cat"): (pytest.approx(3 / 11), 4),
        ("bob", "cat"): (pytest.approx(0.2), 4),
    }
    html = response.content.decode()
    assert '<b data-testid="pair-alpha">0.329</b>' in html
    for shown in ("0.500", "0.273", "0.200"):
        assert shown in html


def test_it_shows_per_annotator_figures(admin_client, voted):
    response = admin_client.get(url(voted.project, "dashboard"))

    stats = {s.username: s for s in response.context["annotators"]}
    assert set(stats) == {"ann", "bob", "cat"}
    assert stats["ann"].pair_votes == 4
    assert stats["ann"].median_seconds == 2.5  # median of 1, 2, 3, 10
    assert stats["bob"].median_seconds == 4.0
    assert stats["cat"].median_seconds is None  # never measured
    assert stats["cat"].tie_rate == 0.25
    assert stats["ann"].tie_rate == 0.0
    # ann always saw A on the left: picks a, a, a, b → left, left, left, right.
    assert (stats["ann"].position.left, stats["ann"].position.n) == (3, 4)
    # cat saw A on the right: a → right, b → left, tie skipped, b → left.
    assert (stats["cat"].position.left, stats["cat"].position.n) == (2, 3)
    assert not any(s.position.biased for s in stats.values())  # too few picks to tell
    assert stats["ann"].last_active is not None
    html = response.content.decode()
    assert "75% of 4" in html
    assert 'data-testid="bias-badge"' not in html


def test_it_flags_an_annotator_with_position_bias(admin_client, db):
    project = ProjectFactory(overlap=2)
    lefty, fair = UserFactory(username="lefty"), UserFactory(username="fair")
    for n in range(10):
        task = make_pair_task(project, n)
        # lefty clicks the left side every time (A shown left, picks A); fair alternates.
        make_pair_vote(task, lefty, "a", a_side="left")
        make_pair_vote(task, fair, "a" if n % 2 else "b", a_side="left")

    response = admin_client.get(url(project, "dashboard"))

    stats = {s.username: s for s in response.context["annotators"]}
    assert stats["lefty"].position.biased
    assert stats["lefty"].position.p_value == pytest.approx(2 / 1024)
    assert not stats["fair"].position.biased
    html = response.content.decode()
    assert html.count('data-testid="bias-badge"') == 1
    lefty_row = html[html.index('data-annotator="lefty"') : html.index("</tr>", html.index('data-annotator="lefty"'))]
    assert "position bias" in lefty_row


def test_it_shows_rating_agreement(admin_client, db):
    project = ProjectFactory(mode=Project.Mode.RATE, overlap=2)
    ann, bob = UserFactory(username="ann"), UserFactory(username="bob")
    for n, (first, second) in enumerate([("up", "up"), ("up", "down"), ("down", "down")]):
        task = make_rate_task(project, n)
        make_rating(task, ann, first, time_spent_ms=1500)
        make_rating(task, bob, second)

    response = admin_client.get(url(project, "dashboard"))

    # n = 6, n_up = n_down = 3; one split task gives Σ_{c≠k} o = 2; Σ n_c n_k = 18.
    # alpha = 1 - 5·2/18 = 4/9 ≈ 0.444.
    assert response.context["agreement"].rating_alpha == pytest.approx(4 / 9)
    assert response.context["progress"]["ratings"] == 6
    assert '<b data-testid="rating-alpha">0.444</b>' in response.content.decode()


def test_it_shows_an_empty_project(admin_client, db):
    project = ProjectFactory()

    response = admin_client.get(url(project, "dashboard"))

    assert response.status_code == 200
    assert response.context["agreement"].pair_alpha is None
    assert "No judgements yet." in response.content.decode()


def test_it_links_to_the_other_admin_pages(admin_client, voted):
    pk = voted.project.pk

    html = admin_client.get(url(voted.project, "dashboard")).content.decode()

    for href in (f"/projects/{pk}/import/", f"/projects/{pk}/export/", f"/projects/{pk}/settings/"):
        assert f'href="{href}"' in html
    assert f'href="/projects/{pk}/disagreements/"' in html
    assert '<span data-testid="disagreement-count">2</span>' in html


def _queries_for(client: Client, path: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(path).status_code == 200
    return len(captured)


@pytest.mark.parametrize("page", ["dashboard", "disagreements"])
def test_it_runs_the_same_number_of_queries_however_many_votes(admin_client, voted, page):
    before = _queries_for(admin_client, url(voted.project, page))
    extra = UserFactory(username="dan")
    for n in range(10, 30):
        task = make_pair_task(voted.project, n)
        make_pair_vote(task, voted.users["ann"], "a", time_spent_ms=500)
        make_pair_vote(task, voted.users["bob"], "b")
        make_pair_vote(task, extra, "tie")

    after = _queries_for(admin_client, url(voted.project, page))

    assert after == before


@pytest.mark.parametrize(
    ("method", "page"),
    [("get", "dashboard"), ("get", "disagreements"), ("post", "adjudicate")],
)
def test_it_forbids_annotators(annotator_client, annotator, voted, method, page):
    voted.project.members.add(annotator)
    disputed = voted.tasks[1]
    path = adjudicate_url(voted.project, disputed) if page == "adjudicate" else url(voted.project, page)

    response = getattr(annotator_client, method)(path, {"choice": "a"} if method == "post" else None)

    assert response.status_code == 403
    disputed.refresh_from_db()
    assert disputed.adjudicated_choice == ""


def test_it_lists_only_disputed_pairs_with_their_votes(admin_client, voted):
    t0, t1, t2, t3, _ = voted.tasks

    response = admin_client.get(url(voted.project, "disagreements"))

    assert response.status_code == 200
    items = response.context["items"]
    assert [item.task.pk for item in items] == [t1.pk, t2.pk]
    assert items[0].majority == "a"
    assert items[1].majority is None
    html = response.content.decode()
    assert f'id="task-{t1.pk}"' in html and f'id="task-{t2.pk}"' in html
    assert f'id="task-{t0.pk}"' not in html and f'id="task-{t3.pk}"' not in html
    assert "no majority" in html
    assert t2.prompt.text in html
    assert t2.completion_a.text in html and t2.completion_b.text in html
    assert f"ann on {t2.pk}" in html  # a rationale
    for name in ("ann", "bob", "cat"):
        assert f"<td>{name}</td>" in html
    assert "not decided" in html


def test_it_escapes_user_text(admin_client, voted):
    html = admin_client.get(url(voted.project, "disagreements")).content.decode()

    assert "<script>alert('cat')</script>" not in html
    assert "&lt;script&gt;alert(&#x27;cat&#x27;)&lt;/script&gt;" in html


def test_it_adjudicates_a_pair(admin_client, admin_user, voted):
    disputed = voted.tasks[2]

    response = admin_client.post(adjudicate_url(voted.project, disputed), {"choice": "b", "page": "1"})

    assert response.status_code == 302
    assert response["Location"] == f"/projects/{voted.project.pk}/disagreements/?page=1#task-{disputed.pk}"
    disputed.refresh_from_db()
    assert disputed.adjudicated_choice == "b"
    assert disputed.adjudicated_by == admin_user
    page = admin_client.get(response["Location"]).content.decode()
    assert f"Pair {disputed.pk} adjudicated: B is better." in page
    assert "decided: B is better by" in page


def test_it_clears_an_adjudication(admin_client, admin_user, voted):
    disputed = voted.tasks[2]
    admin_client.post(adjudicate_url(voted.project, disputed), {"choice": "tie"})

    response = admin_client.post(adjudicate_url(voted.project, disputed), {"choice": "clear"}, follow=True)

    disputed.refresh_from_db()
    assert disputed.adjudicated_choice == ""
    assert disputed.adjudicated_by is None
    assert f"Cleared the decision on pair {disputed.pk}." in response.content.decode()


def test_it_refuses_an_unknown_choice(admin_client, voted):
    disputed = voted.tasks[2]

    response = admin_client.post(adjudicate_url(voted.project, disputed), {"choice": "left"}, follow=True)

    disputed.refresh_from_db()
    assert disputed.adjudicated_choice == ""
    assert "Unknown choice &#x27;left&#x27;" in response.content.decode()


def test_it_returns_the_row_to_htmx(admin_client, voted):
    disputed = voted.tasks[1]

    response = admin_client.post(
        adjudicate_url(voted.project, disputed), {"choice": "a"}, headers={"HX-Request": "true"}
    )

    assert response.status_code == 200
    assert [t.name for t in response.templates][0] == "labeling/_disagreement_row.html"
    html = response.content.decode()
    assert "<html" not in html
    assert html.strip().startswith(f'<article class="card disagreement is-adjudicated" id="task-{disputed.pk}"')
    assert "decided: A is better" in html
    disputed.refresh_from_db()
    assert disputed.adjudicated_choice == "a"


def test_it_returns_the_row_with_an_error_to_htmx(admin_client, voted):
    disputed = voted.tasks[1]

    response = admin_client.post(
        adjudicate_url(voted.project, disputed), {"choice": "nope"}, headers={"HX-Request": "true"}
    )

    assert response.status_code == 400
    assert 'role="alert"' in response.content.decode()


def test_it_answers_get_on_adjudicate_with_405(admin_client, voted):
    response = admin_client.get(adjudicate_url(voted.project, voted.tasks[1]))

    assert response.status_code == 405


def test_it_404s_for_a_task_of_another_project(admin_client, voted):
    other = make_pair_task(ProjectFactory(), 99)

    response = admin_client.post(adjudicate_url(voted.project, other), {"choice": "a"})

    assert response.status_code == 404
    other.refresh_from_db()
    assert other.adjudicated_choice == ""


def test_it_enforces_csrf(admin_user, voted):
    client = Client(enforce_csrf_checks=True)
    assert client.login(username=admin_user.username, password=PASSWORD)
    disputed = voted.tasks[1]

    refused = client.post(adjudicate_url(voted.project, disputed), {"choice": "a"})

    assert refused.status_code == 403
    disputed.refresh_from_db()
    assert disputed.adjudicated_choice == ""

    # With the token the page's form carries, the same request goes through.
    client.get(url(voted.project, "disagreements"))
    token = client.cookies["csrftoken"].value
    accepted = client.post(adjudicate_url(voted.project, disputed), {"choice": "a", "csrfmiddlewaretoken": token})

    assert accepted.status_code == 302
    disputed.refresh_from_db()
    assert disputed.adjudicated_choice == "a"


def test_it_pages_the_disagreements(admin_client, voted, monkeypatch):
    monkeypatch.setattr("labeling.views.dashboard.DISAGREEMENTS_PER_PAGE", 1)

    first = admin_client.get(url(voted.project, "disagreements"))
    second = admin_client.get(url(voted.project, "disagreements") + "?page=2")
    beyond = admin_client.get(url(voted.project, "disagreements") + "?page=3")

    assert [i.task.pk for i in first.context["items"]] == [voted.tasks[1].pk]
    assert [i.task.pk for i in second.context["items"]] == [voted.tasks[2].pk]
    assert 'href="?page=2"' in first.content.decode()
    assert beyond.status_code == 404


def test_it_shows_running_generation_jobs_with_a_polled_progress_bar(admin_client, db):
    project = ProjectFactory()
    job = GenerationJob.objects.create(
        project=project, prompt_ids=[], settings={}, purpose="candidates", status="running",
        completions_total=8, completions_created=2, tasks_created=1,
    )
    GenerationJob.objects.create(project=project, prompt_ids=[], settings={}, status="succeeded", completions_total=4)

    html = admin_client.get(url(project, "dashboard")).content.decode()

    assert html.count('data-testid="generation-job"') == 1
    assert f'data-job="{job.pk}"' in html and 'aria-valuenow="25"' in html and 'job-percent">25%</span> · <span data-testid="job-done">2 of 8 answers' in html
    assert f'hx-get="/projects/{project.pk}/dashboard/" hx-trigger="every 3s"' in html

    GenerationJob.objects.filter(pk=job.pk).update(completions_created=6)
    polled = admin_client.get(url(project, "dashboard"), HTTP_HX_REQUEST="true").content.decode()
    assert 'job-percent">75%</span> · <span data-testid="job-done">6 of 8 answers' in polled and "Annotators" not in polled, "the poll answers the jobs block alone"

    GenerationJob.objects.filter(pk=job.pk).update(status="succeeded")
    finished = admin_client.get(url(project, "dashboard"), HTTP_HX_REQUEST="true").content.decode()
    assert 'data-testid="generation-finished"' in finished and "hx-trigger" not in finished


def test_it_says_how_many_train_prompts_wait_for_candidates(admin_client, db):
    project = ProjectFactory()
    PromptFactory(project=project, split="train")
    PromptFactory(project=project, split="train")
    PromptFactory(project=project, split="heldout")
    CompletionFactory(prompt=PromptFactory(project=project, split="train"))

    html = admin_client.get(url(project, "dashboard")).content.decode()

    notice = re.search(r'data-testid="waiting-for-candidates">(.*?)</div>', html, re.S).group(1)
    assert "2 prompts are waiting for candidates" in notice
    assert f'href="/projects/{project.pk}/candidates/">Generate candidates</a>' in notice


def test_it_has_no_candidates_notice_when_every_train_prompt_has_completions(admin_client, voted):
    rate = ProjectFactory(mode="rate")
    PromptFactory(project=rate, split="train")

    for project in (voted.project, rate):
        assert "waiting-for-candidates" not in admin_client.get(url(project, "dashboard")).content.decode()


def test_a_cut_off_answer_is_marked_in_the_disagreements(admin_client, voted):
    disputed = voted.tasks[1]
    disputed.completion_b.finish_reason = "length"
    disputed.completion_b.save()

    html = admin_client.get(url(voted.project, "disagreements")).content.decode()

    row = html[html.index(f'id="task-{disputed.pk}"'):]
    row = row[: row.index("</article>")]
    assert 'data-testid="b-cut-off"' in row and "Cut off at the length limit" in row
    assert 'data-testid="a-cut-off"' not in row
    assert html.count("Cut off at the length limit") == 1


def test_each_project_type_speaks_its_own_words(admin_client, voted):
    rate = ProjectFactory(mode="rate")
    annotator = UserFactory()
    rate.members.add(annotator)
    make_rating(make_rate_task(rate, 1), annotator, "up")

    thumbs = admin_client.get(url(rate, "dashboard")).content.decode()
    compare = admin_client.get(url(voted.project, "dashboard")).content.decode()

    # A thumbs project counts thumbs, not compare votes, ties or left picks (issue 26), and the reverse
    assert '<b data-testid="ratings">1</b> thumbs given' in thumbs and 'data-testid="votes"' not in thumbs
    assert "Left picks" not in thumbs and ">Tie<" not in thumbs and ">Thumbs<" in thumbs
    assert '<b data-testid="votes">12</b> compare votes' in compare and 'data-testid="ratings"' not in compare
    assert "Left picks" in compare and ">Ratings<" not in compare
    runs = admin_client.get(f"/projects/{rate.pk}/runs/").content.decode()
    assert "given thumbs to some answers" in runs and "judged some pairs" not in runs
