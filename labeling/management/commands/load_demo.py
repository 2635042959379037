"""Load the demo: four users; a project with a labelling history to tune on at once; a compare project and a
thumbs project to label by hand. All from labeling/demo/."""
from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from labeling.extensions import EXTENSIONS
from labeling.importing import ImportFailed, project_import
from labeling.models import Completion, PairTask, PairVote, Project, Prompt
from labeling.services import pair_vote_record, project_create

DEMO_DIR = Path(__file__).resolve().parents[2] / "demo"
DEFAULT_PASSWORD = "preftune-demo"  # noqa: S105 - a public demo login, printed on purpose
ANNOTATORS = ("annotator1", "annotator2", "annotator3")
URL = "http://127.0.0.1:8000/"

COMPARE_GUIDELINES = """\
# What makes an answer better

You see one prompt and two answers. Pick the answer you would rather receive. Judge, in this order:

1. **Correct.** Facts, numbers and code are right. A confident wrong answer is worse than a short
   or incomplete right one. Check code and arithmetic in your head; don't trust the tone.
2. **Safe and honest.** The answer doesn't push the reader towards harm (medical, chemical,
   electrical, legal or financial), says so when it is unsure, and doesn't invent sources,
   books, laws or quotes. An answer that gives dangerous advice loses, however well written.
3. **Helpful.** It answers the question that was asked, follows the instructions (length,
   format, "in two sentences", "three ideas"), and gives the reader something they can use.
   A refusal of a harmless request is unhelpful.
4. **Concise.** Given two correct, helpful answers, prefer the shorter and clearer one.
   Padding, flattery ("Great question!") and off-topic history do not make an answer better.

Ignore which side an answer is shown on; sides are shuffled for each annotator.

## Tie or both bad?

- **Tie**: both answers are acceptable and you honestly can't prefer one, e.g. both correct and
  about equally clear. Don't use it to skip a hard decision: if one is even slightly better,
  pick it and set the strength to *slight*.
- **Both bad**: neither answer is one you would want a user to receive (both wrong, both
  unsafe, or both ignore the question). Say why in the rationale.

## Strength and rationale

*Slight*, *clear* or *decisive*: how sure you are. A short rationale ("B gets the capital wrong")
helps reviewers and settles disagreements; write one whenever the choice wasn't obvious.
"""

RATE_GUIDELINES = """\
# Thumbs up or down

You see one prompt and one answer.

- **Thumbs up** when the answer is correct, safe and actually answers the question. It doesn't
  have to be perfect or long.
- **Thumbs down** when it contains a factual or coding error, gives unsafe advice, invents facts,
  ignores the instructions, or is so vague that it doesn't help.

When in doubt about a fact, judge it as you would a stranger's answer: if you'd have to look it up
to trust it and it sounds wrong, thumbs down and say why in the rationale.
"""

HISTORY_NAME = "Demo: concise answers (ready to tune)"
HISTORY_GUIDELINES = """\
# Concise answers

You see one prompt and two answers the base model wrote. Pick the one you would rather receive.

1. **An answer first.** An answer that repeats itself, breaks off mid-sentence or is not an answer at all
   loses to any real answer.
2. **Then the shorter one.** Of two real answers, prefer the one that says it in fewer words, when it is
   noticeably shorter (about a tenth or more). Padding, repeated points and long introductions do not make
   an answer better.
3. **Tie** when they are about the same length; **both bad** when neither is an answer.

The votes already here were cast by three simulated annotators who follow this guideline (each gets a few
wrong at random); see labeling/demo/history.json and scripts/make_demo_history.py for how they were made.
"""

PROJECTS = (
    {
        "name": "Demo: helpful answers",
        "mode": Project.Mode.COMPARE,
        "overlap": 2,
        "description": "Pairs of answers to everyday questions: one good, one flawed. Pick the better one.",
        "guidelines": COMPARE_GUIDELINES,
        "file": "compare.jsonl",
    },
    {
        "name": "Demo: thumbs",
        "mode": Project.Mode.RATE,
        "overlap": 1,
        "description": "Single answers to rate thumbs up or down.",
        "guidelines": RATE_GUIDELINES,
        "file": "rate.jsonl",
    },
)


class Command(BaseCommand):
    help = (
        "Create demo users (admin, annotator1-3) and two demo projects filled from labeling/demo/. "
        "Idempotent: existing users keep their passwords and a project that has prompts is not imported again. "
        "Passwords come from PREFTUNE_DEMO_PASSWORD (default 'preftune-demo')."
    )

    def handle(self, *args: object, **options: object) -> None:
        password = os.environ.get("PREFTUNE_DEMO_PASSWORD") or DEFAULT_PASSWORD
        existing: list[str] = []
        users = {
            name: self._user(name, password, admin=name == "admin", existing=existing)
            for name in ("admin", *ANNOTATORS)
        }
        annotators = [users[name] for name in ANNOTATORS]

        self._history(annotators)
        for spec in PROJECTS:
            self._project(spec, annotators)

        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"Demo ready at {URL}"))
        for label, names in (("admin (staff)", ["admin"]), ("annotators", list(ANNOTATORS))):
            new = [name for name in names if name not in existing]
            old = [name for name in names if name in existing]
            if new:
                self.stdout.write(f"  {label + ':':<16}{', '.join(new)} / {password}")
            if old:
                self.stdout.write(f"  {label + ':':<16}{', '.join(old)} (existed already: password unchanged, by default {DEFAULT_PASSWORD})")

    def _user(self, username: str, password: str, *, admin: bool, existing: list[str]) -> AbstractUser:
        user, created = get_user_model().objects.get_or_create(
            username=username, defaults={"is_staff": admin, "is_superuser": admin}
        )
        if created:
            user.set_password(password)
            user.save(update_fields=["password"])
            self.stdout.write(f"Created user {username}{' (staff, superuser)' if admin else ''}.")
        else:
            existing.append(username)
        return user

    def _project(self, spec: dict, annotators: list[AbstractUser]) -> None:
        name = spec["name"]
        with transaction.atomic():
            project = Project.objects.filter(name=name).first()
            if project is None:
                project = project_create(
                    name=name,
                    mode=spec["mode"],
                    overlap=spec["overlap"],
                    guidelines=spec["guidelines"],
                    description=spec["description"],
                    members=annotators,
                )
                self.stdout.write(f"Created project {name!r} (id {project.pk}).")
            else:
                project.members.add(*annotators)

            if project.prompts.exists():
                self.stdout.write(f"Project {name!r} already has prompts: not importing again.")
                return
            path = DEMO_DIR / spec["file"]
            try:
                report = project_import(project=project, filename=path.name, data=path.read_bytes())
            except ImportFailed as exc:
                lines = "\n".join(f"  {error}" for error in exc.errors)
                raise CommandError(f"Importing {path} into {name!r} failed:\n{lines}") from exc
        self.stdout.write(f"Imported {path.name} into {name!r}: {report}.")

    def _history(self, annotators: list[AbstractUser]) -> None:
        """The project with a history: prompts, the base model's answers, pairs and every vote, from history.json.
        Votes go through the same service as a click on Vote, so counts, statuses and sides are the app's own."""
        path = DEMO_DIR / "history.json"
        history = json.loads(path.read_text())
        if Project.objects.filter(name=HISTORY_NAME).exists():
            self.stdout.write(f"Project {HISTORY_NAME!r} exists: not loading its history again.")
            return
        by_name = {user.username: user for user in annotators}
        with transaction.atomic():
            project = project_create(
                name=HISTORY_NAME, mode=Project.Mode.COMPARE, overlap=history["overlap"], guidelines=HISTORY_GUIDELINES,
                description=(
                    f"{sum(len(pair['votes']) for pair in history['pairs'])} votes already cast on "
                    f"{len(history['pairs'])} pairs of the base model's answers: launch a run and see it learn."
                ),
                members=annotators,
            )
            version = _base_version()
            settings = {key: value for key, value in history["candidate_settings"].items() if key not in ("skip_truncated", "cut_off")}
            answers: dict[tuple[str, int], Completion] = {}
            for entry in history["prompts"]:
                prompt = Prompt.objects.create(project=project, external_id=entry["id"], messages=entry["messages"],
                                               split=entry["split"])
                for index, answer in enumerate(entry["answers"]):
                    answers[entry["id"], index] = Completion.objects.create(
                        prompt=prompt, text=answer["text"], source=Completion.Source.GENERATED,
                        model_name=history["model"].split(",")[0], model_version=version,
                        generation_settings={**settings, "sample": index}, finish_reason=answer["finish_reason"],
                    )
            prompts = {prompt.external_id: prompt for prompt in Prompt.objects.filter(project=project, split="heldout")}
            # The base half of the first review, already written: the review reuses outputs with these settings.
            base_outputs = [
                Completion(prompt=prompts[output["prompt"]], text=output["text"], source=Completion.Source.GENERATED,
                           model_name=history["model"].split(",")[0], model_version=version,
                           generation_settings=output["generation_settings"], finish_reason=output["finish_reason"])
                for output in history.get("heldout_base_outputs", []) if version is not None
            ]
            Completion.objects.bulk_create(base_outputs)
            votes = 0
            for number, pair in enumerate(history["pairs"]):
                first = answers[pair["prompt"], pair["a"]]
                task = PairTask.objects.create(
                    project=project, prompt=first.prompt, completion_a=first,
                    completion_b=answers[pair["prompt"], pair["b"]], overlap=project.overlap,
                )
                for vote in pair["votes"]:
                    annotator = by_name[vote["annotator"]]
                    a_side = task.a_side_for(annotator.pk)
                    b_side = "right" if a_side == "left" else "left"
                    pick = {"a": a_side, "b": b_side}.get(vote["choice"], vote["choice"])
                    pair_vote_record(
                        task_id=task.pk, annotator=annotator, pick=pick, client_key=f"demo-history-{number}-{annotator.username}",
                        strength=vote["strength"], rationale=vote["rationale"], time_spent_ms=vote["time_spent_ms"],
                        project=project,
                    )
                    votes += 1
            _spread_over_past_days(project)
        self.stdout.write(
            f"Created project {HISTORY_NAME!r} (id {project.pk}): {len(history['prompts'])} prompts, "
            f"{len(answers)} answers, {len(history['pairs'])} pairs, {votes} votes, {len(base_outputs)} held-out "
            "answers of the base model for its first review."
        )


def _base_version():  # noqa: ANN202
    """The bundled base model's version, when `prepare_base_model` has registered it (`make run` does first); None
    without the training app."""
    return EXTENSIONS.demo_base_version() if EXTENSIONS.demo_base_version is not None else None


def _spread_over_past_days(project: Project) -> None:
    """Votes stamped as if cast over the last three days, each annotator working through their votes in order
    at the pace of their recorded reading times, so the dashboard's activity reads like a real project's."""
    now = timezone.now()
    votes = list(PairVote.objects.filter(task__project=project).order_by("id"))
    moments: dict[int, datetime] = {}
    for vote in votes:
        moment = moments.get(vote.annotator_id) or now - timedelta(days=3) + timedelta(minutes=37 * (len(moments) + 1))
        moments[vote.annotator_id] = vote.created_at = moment + timedelta(milliseconds=vote.time_spent_ms + 3000)
    PairVote.objects.bulk_update(votes, ["created_at"], batch_size=500)
