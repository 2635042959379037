"""Print blind-battle results: each succeeded run's tuned win rate over its base (paired over prompts first, then
vote by vote and length-controlled), and the leaderboard. Only votes on matched held-out review pairs count.

    manage.py win_rates --project 3
    manage.py win_rates --run 7
"""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from labeling.models import Project
from training.models import TuningRun
from training.review import leaderboard as review_leaderboard
from training.review import results as review_results
from training.review import versions as review_versions


class Command(BaseCommand):
    help = (
        "Paired (by prompt) win rate first, then win / tie / loss, vote-by-vote and length-controlled win rates with 95% intervals and length change per run; "
        "then the Bradley–Terry table. Only matched review pairs count."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--project", type=int)
        parser.add_argument("--run", type=int)
        parser.add_argument("--rounds", type=int, default=review_leaderboard.LEADERBOARD_ROUNDS, help="Bootstrap rounds.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["run"]:
            runs = list(TuningRun.objects.filter(pk=options["run"]).select_related("project", "base_model", "model_version"))
            if not runs:
                raise CommandError(f"No run with id {options['run']}.")
            project = runs[0].project
        elif options["project"]:
            project = Project.objects.filter(pk=options["project"]).first()
            if project is None:
                raise CommandError(f"No project with id {options['project']}.")
            runs = list(
                TuningRun.objects.filter(project=project, model_version__isnull=False)
                .select_related("base_model", "model_version").order_by("id")
            )
        else:
            raise CommandError("Give --project or --run.")
        for run in runs:
            try:
                base, tuned = review_versions.run_review_versions(run=run)
            except review_versions.ReviewError as error:
                self.stdout.write(f"run {run.pk} {run.name}: {error.message}")
                continue
            r = review_results.battle_results(project=project, tuned=tuned, base=base)
            left_out = f" ({r.unmatched} unmatched older pairs left out)" if r.unmatched else ""
            if r.rate is None:
                self.stdout.write(f"run {run.pk} {run.name}: no votes yet ({r.tasks} matched battles created){left_out}")
                continue
            contaminated = f"  [{review_results.CONTAMINATED}]" if r.contaminated else ""
            self.stdout.write(
                f"run {run.pk} {run.name}: paired {r.paired_percent} (95% CI {r.paired_interval}, sign test "
                f"{r.sign_test}) over {r.prompts} prompts and {r.votes} votes; win {r.wins} tie {r.ties} loss {r.losses}  "
                f"length change {r.mean_length_change:+.1f} chars{contaminated}"
            )
            # The vote-level interval treats votes on one prompt as independent: a detail, never the headline.
            self.stdout.write(
                f"    vote by vote {r.rate:.3f} (95% CI {r.low:.3f}–{r.high:.3f}); length-controlled {r.lc_percent} "
                f"(95% CI {r.lc_interval}, length in words){left_out}"
            )
        if options["project"]:
            rows = review_leaderboard.leaderboard(project=project, rounds=options["rounds"])
            self.stdout.write("Leaderboard (Bradley–Terry, 95% bootstrap interval):")
            for rank, row in enumerate(rows, 1):
                flag = f"  [{review_results.CONTAMINATED}]" if row.contaminated else ""
                self.stdout.write(
                    f"{rank:>3}. {row.version.name:<40} {row.rating:7.1f}  [{row.low:7.1f}, {row.high:7.1f}]  "
                    f"{row.battles} battles ({row.wins}/{row.ties}/{row.losses}){flag}"
                )
