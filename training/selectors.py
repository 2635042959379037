"""Reads for tuning runs: lists, metric series, the dataset block, base models and workers, the home page's loop,
a version's exports. How a run went is worded by ``training.presenters`` (headline, verdict, charts) from the
outcome and series read here."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.db.models.fields.json import KeyTransform

from labeling.models import Completion, PairTask, Project, RateTask, TaskStatus
from training.data_needs import ROWS_TO_TELL
from training.exports import version_export_zip_path
from training.models import BaseModel, GenerationJob, ModelVersion, RunMetric, TuningRun, VersionExport, Worker
from training.presenters.headline import Series, run_headline
from training.presenters.verdict import verdict_for_run
from training.rl_selectors import rl_verdict
from training.templatetags.numbers import format_number, format_setting, format_share, setting_rows

_TABLE_KEYS = ("rewards/accuracies", "rewards/margins", "ranking_accuracy", "loss", "kl", "logps/chosen")

# ---------------------------------------------------------------- lists and series


def runs_for_project(*, project: Project) -> QuerySet[TuningRun]:
    return TuningRun.objects.filter(project=project).select_related("base_model", "model_version")


def runs_table(*, project: Project, now) -> list[TuningRun]:  # noqa: ANN001
    """The project's runs with ``duration``, ``headline`` (validation first) and ``verdict`` set on each."""
    runs = list(runs_for_project(project=project))
    series = _series_by_run(runs, keys=_TABLE_KEYS)
    for run in runs:
        run.duration = run.duration_seconds(now)
        run.headline = run_headline(run=run, series=series[run.pk])
        run.verdict = rl_verdict(run=run) or verdict_for_run(run=run, series=series[run.pk])
    return runs


@dataclass(frozen=True)
class TimeEstimate:
    """How long a run of ``steps`` steps would take, at the pace of finished runs of the same model and method."""

    seconds: float
    runs: int
    method: str

    @property
    def basis(self) -> str:
        return (f"at the pace of the last {self.runs} finished {self.method.upper()} run{'s' if self.runs != 1 else ''} "
                "of this base model, loading and evaluation included; another batch size or sequence length changes it")


def run_time_estimate(*, base_model_id: int | None, method: str, steps: int, recent: int = 5) -> TimeEstimate | None:
    """Median seconds per step of the ``recent`` last succeeded runs of this base model and method, times
    ``steps``; None before any such run has finished (a guess from nothing would be a number nobody can act on)."""
    if base_model_id is None or steps <= 0:
        return None
    finished = (
        TuningRun.objects.filter(base_model_id=base_model_id, method=method, status=TuningRun.Status.SUCCEEDED,
                                 step__gt=0, started_at__isnull=False, finished_at__isnull=False)
        .order_by("-finished_at")
        .values_list("started_at", "finished_at", "step")[:recent]
    )
    paces = sorted((finished_at - started_at).total_seconds() / step for started_at, finished_at, step in finished)
    if not paces:
        return None
    middle = len(paces) // 2
    pace = paces[middle] if len(paces) % 2 else (paces[middle - 1] + paces[middle]) / 2
    return TimeEstimate(seconds=pace * steps, runs=len(paces), method=method)


def run_metric_series(*, run: TuningRun) -> Series:
    """Per split, per metric key: [[step, value], ...], in step order, for the charts.

    Validation keys lose TRL's ``eval_`` prefix, so ``series["eval"]["loss"]`` sits beside ``series["train"]["loss"]``.
    """
    return _series_by_run([run])[run.pk]


def _series_by_run(runs: list[TuningRun], *, keys: tuple[str, ...] | None = None) -> dict[int, Series]:
    series: dict[int, Series] = {run.pk: {"train": {}, "eval": {}} for run in runs}
    metrics = RunMetric.objects.filter(run__in=runs).order_by("run_id", "step", "id")
    if keys is None:
        rows: Iterable[tuple[int, str, int, dict[str, Any]]] = metrics.values_list("run_id", "split", "step", "values")
    else:
        wanted = keys + tuple(f"eval_{key}" for key in keys)
        fields = {f"metric_{n}": KeyTransform(key, "values") for n, key in enumerate(wanted)}
        rows = (
            (run_id, split, step, {key: value for key, value in zip(wanted, values, strict=True) if value is not None})
            for run_id, split, step, *values in metrics.annotate(**fields).values_list("run_id", "split", "step", *fields)
        )
    for run_id, split, step, values in rows:
        for key, value in values.items():
            name = key.removeprefix("eval_") if split == "eval" else key
            series[run_id].setdefault(split, {}).setdefault(name, []).append([step, value])
    return series


def run_latest_metrics(*, run: TuningRun) -> dict[str, float]:
    """The last logged value of each training metric (train split only)."""
    latest: dict[str, float] = {}
    for values in RunMetric.objects.filter(run=run, split="train").order_by("step").values_list("values", flat=True):
        latest.update(values)
    return latest

# ---------------------------------------------------------------- settings and the dataset block


def run_settings_rows(*, run: TuningRun) -> list[tuple[str, str]]:
    """The run's settings as (label, text) rows, in the order TrainSettings declares them."""
    from training.trainer.config import TrainSettings  # the Django-free core; imported here to keep module import light

    order = [field.name for field in dataclasses.fields(TrainSettings)]
    settings = dict(run.settings) if isinstance(run.settings, dict) else {}
    # A method's own knobs only on its runs: a DPO run has no SimPO margin to read.
    for key, methods in _METHOD_ONLY_SETTINGS.items():
        if run.method not in methods:
            settings.pop(key, None)
    if settings.get("ld_alpha") is None:
        settings.pop("ld_alpha", None)
    return setting_rows(settings, order)


_METHOD_ONLY_SETTINGS = {
    "simpo_gamma": ("simpo",),
    "cpo_alpha": ("cpo",),
    "ld_alpha": ("dpo",),
    "precompute_ref_log_probs": ("dpo", "kto"),
    "desirable_weight": ("kto",),
    "undesirable_weight": ("kto",),
}




@dataclass(frozen=True)
class DatasetUse:
    used: str
    left_out: tuple[str, ...]
    reached: str = ""  # pairs: how many decided judgements became rows


# ExportSummary counts that mean "left out", in the order people read them: (key, singular, plural).
_LEFT_OUT = (
    ("ties", "tie", "ties"),
    ("both_bad", "both-bad", "both-bad"),
    ("disagreements", "disagreement", "disagreements"),
    ("conflicting", "answer with both labels", "answers with both labels"),
    ("identical", "pair of identical answers", "pairs of identical answers"),
    ("heldout", "task on held-out prompts (not opted in)", "tasks on held-out prompts (not opted in)"),
    ("low_agreement", "pair whose annotators disagreed (dropped)", "pairs whose annotators disagreed (dropped)"),
    ("cut_off_chosen", "pair whose chosen answer was cut off at the token limit",
     "pairs whose chosen answer was cut off at the token limit"),
    ("incomplete", "unfinished task", "unfinished tasks"),
)
_USED_KEYS = frozenset({"rows", "considered", "edited"})


def dataset_use(*, summary: Mapping[str, Any], method: str, row_count: int) -> DatasetUse:
    """The export summary split into what was used and what was left out (non-zero counts only).

    For KTO a both-bad pair does give rows (two thumbs-down), so it is counted with what was used.
    Keys this code does not know yet are listed under "left out" with their name made readable.
    """
    rows = summary.get("rows", row_count)
    used = f"{format_number(rows)} {'row' if rows == 1 else 'rows'}"
    considered = summary.get("considered")
    if considered:
        used += f" from {format_number(considered)} complete {'task' if considered == 1 else 'tasks'}"
    extras = []
    if edited := summary.get("edited"):
        extras.append(f"{format_number(edited)} {'answer' if edited == 1 else 'answers'} edited by annotators")
    both_bad = summary.get("both_bad")
    if method == "kto" and both_bad:
        extras.append(f"{format_number(both_bad)} both-bad {'pair' if both_bad == 1 else 'pairs'} as two thumbs-down")
    if extras:
        used += f" ({'; '.join(extras)})"
    left_out = []
    skip = _USED_KEYS | ({"both_bad"} if method == "kto" else set())
    for key, singular, plural in _LEFT_OUT:
        count = summary.get(key)
        if key not in skip and count:
            left_out.append(f"{format_number(count)} {singular if count == 1 else plural}")
    known = skip | {key for key, _, _ in _LEFT_OUT}
    for key, count in sorted(summary.items()):
        if key not in known and count:
            left_out.append(f"{format_setting(count)} {str(key).replace('_', ' ')}")
    return DatasetUse(used=used, left_out=tuple(left_out), reached=_decided_reached(summary) if method not in ("kto", "sft") else "")


def _decided_reached(summary: Mapping[str, Any]) -> str:
    """'96 of 101 decided judgements (95%) reached training': a pair won by a side, or given a written answer on a
    tie or both-bad, is decided; it gives no row when its answers are identical, its annotators split below the
    run's minimum agreement, or its chosen answer was cut off."""
    considered = summary.get("considered") or 0
    decided = considered - sum(summary.get(key) or 0 for key in ("ties", "both_bad", "disagreements"))
    if decided <= 0:
        return ""
    reached = decided - sum(summary.get(key) or 0 for key in ("identical", "low_agreement", "cut_off_chosen"))
    return (f"{format_number(reached)} of {format_number(decided)} decided "
            f"{'judgement' if decided == 1 else 'judgements'} ({format_share(reached / decided)}) reached training")


@dataclass(frozen=True)
class LineageRow:
    label: str
    text: str
    warn: bool = False


def alpha_reading(alpha: float | None) -> str:
    """Krippendorff's own reading of α: ≥ 0.8 reliable, ≥ 0.667 tentative, below that unreliable."""
    if alpha is None:
        return "not measured (too few tasks with two or more votes)"
    if alpha >= 0.8:
        return f"{format_number(alpha, 2)}: annotators agree well"
    if alpha >= 0.667:
        return f"{format_number(alpha, 2)}: moderate agreement, good enough for tentative conclusions"
    if alpha > 0:
        return f"{format_number(alpha, 2)}: low agreement, annotators often disagree"
    return f"{format_number(alpha, 2)}: no better than chance"


_LINEAGE_LABELS = {
    "project": "project",
    "started_from": "started from",
    "guideline_version": "guideline version now",
    "annotators": "annotators (votes)",
    "guideline_versions_voted": "guideline versions voted under",
    "agreement_alpha_pairs": "agreement α, pairs",
    "agreement_alpha_ratings": "agreement α, thumbs",
    "includes_review_votes": "includes votes on review pairs",
    "review_tasks_used": "review tasks used",
    "keeps_cut_off_chosen": "keeps pairs whose chosen answer was cut off",
    "includes_heldout": "includes votes on held-out prompts",
}


def lineage_rows(*, lineage: Mapping[str, Any], includes_heldout: bool) -> list[LineageRow]:
    """The snapshot's lineage as readable rows; votes on held-out prompts are flagged as a warning."""
    rank = {key: n for n, key in enumerate(_LINEAGE_LABELS)}
    alphas = [key for key in ("agreement_alpha_pairs", "agreement_alpha_ratings") if lineage.get(key) is not None]
    rows = []
    for key, value in sorted(lineage.items(), key=lambda item: (rank.get(item[0], len(rank)), str(item[0]))):
        label = _LINEAGE_LABELS.get(key, str(key).replace("_", " "))
        if key == "includes_heldout" or (key.startswith("agreement_alpha") and value is None and alphas):
            # A compare project has no thumbs agreement to report, and a rate project no pairs agreement.
            continue
        if key == "annotators" and isinstance(value, Mapping):
            ordered = sorted(value.items(), key=lambda item: (-item[1], item[0]))
            text = ", ".join(f"{name} {format_number(count)}" for name, count in ordered) or "none"
        elif key.startswith("agreement_alpha"):
            text = alpha_reading(value if isinstance(value, int | float) else None)
        else:
            text = format_setting(value, key)
        rows.append(LineageRow(label, text))
    heldout = includes_heldout or bool(lineage.get("includes_heldout"))
    rows.append(LineageRow(_LINEAGE_LABELS["includes_heldout"], "yes" if heldout else "no", warn=heldout))
    return rows


@dataclass(frozen=True)
class BaseModelRow:
    model: BaseModel
    memory: list[dict[str, Any]]  # per GPU count: GiB of base weights per GPU (see memory_estimates)


def base_models_table() -> list[BaseModelRow]:
    """Every registered base model with its facts and, where its size is known, weight memory per GPU."""
    from training.model_inspection import ModelShape, memory_estimates

    rows = []
    for model in BaseModel.objects.order_by("name"):
        memory: list[dict[str, Any]] = []
        if model.parameters:
            shape = ModelShape(
                linear_names=frozenset(model.linear_layers), max_positions=model.context_length,
                parameters=model.parameters, quantizable_parameters=model.quantizable_parameters or 0,
            )
            memory = memory_estimates(shape)
        rows.append(BaseModelRow(model=model, memory=memory))
    return rows


def workers_taking(gpus: int) -> list[Worker]:
    """Workers that have announced a queue for runs on ``gpus`` GPUs (``gpu`` for one, ``gpuN`` for N)."""
    from training.models import run_queue

    queue = run_queue(gpus)
    return [worker for worker in Worker.objects.all() if queue in worker.queues]


def training_device(gpus: int = 1) -> str:
    """Where a run on ``gpus`` GPUs will train, for the automatic settings: "cpu" when every worker that takes such
    runs announced no GPU, otherwise "cuda" (also before any worker has announced itself: the run waits for one,
    and a GPU is what a worker for it is expected to have)."""
    workers = workers_taking(gpus)
    return "cpu" if workers and not any(worker.gpus for worker in workers) else "cuda"


def workers_summary() -> str:
    """The workers that announced themselves, in words, for the launch form; empty when none has."""
    parts = []
    for worker in Worker.objects.all():
        largest = worker.max_run_gpus
        if not largest:
            continue
        sees = f"sees {worker.gpus} GPU{'s' if worker.gpus != 1 else ''}" if worker.gpus else "a CPU worker"
        parts.append(f"{worker.hostname} takes runs on up to {largest} GPU{'s' if largest != 1 else ''} ({sees})")
    return "; ".join(parts)


# ---------------------------------------------------------------- the loop, step by step (home page)


@dataclass(frozen=True)
class LoopStep:
    """One of the four steps of the loop for one project: what is done, and the page that does the next bit."""

    number: int
    title: str
    state: str  # "done", "next" (the step to do now) or "later"
    text: str
    action: str  # the button's words
    url_name: str
    url_arg: int  # the project's or the run's id, as url_name wants


@dataclass(frozen=True)
class LoopWalkthrough:
    project: Project
    steps: list[LoopStep]
    others: list[Project]


def _loop_focus(projects: list[Project]) -> Project | None:
    """The project a newcomer most likely means: the one with the newest run, else the one with most votes."""
    if not projects:
        return None
    newest = TuningRun.objects.filter(project__in=projects).order_by("-created_at").values_list("project_id", flat=True).first()
    if newest is not None:
        return next(p for p in projects if p.pk == newest)
    votes = dict(
        Project.objects.filter(pk__in=[p.pk for p in projects])
        .annotate(votes=Count("pair_tasks__votes", distinct=True) + Count("rate_tasks__ratings", distinct=True))
        .values_list("pk", "votes")
    )
    return max(projects, key=lambda p: (votes.get(p.pk, 0), -p.pk))


def loop_walkthrough(*, projects: Iterable[Project], chosen_id: int | None = None) -> LoopWalkthrough | None:
    """Label, tune, compare, label again, for one of ``projects`` (``chosen_id``, else ``_loop_focus``): each step
    with what is done so far and a link to the page that does the next part."""
    projects = list(projects)
    project = next((p for p in projects if p.pk == chosen_id), None) or _loop_focus(projects)
    if project is None:
        return None
    label_tasks = PairTask.objects.filter(project=project, purpose=PairTask.Purpose.LABEL)
    if project.mode == Project.Mode.RATE:
        label_tasks = RateTask.objects.filter(project=project, purpose=RateTask.Purpose.LABEL)
    complete = label_tasks.filter(status=TaskStatus.COMPLETE).count()
    total = label_tasks.count()
    runs = TuningRun.objects.filter(project=project).exclude(method="reward").order_by("-created_at")
    latest = runs.first()
    succeeded = runs.filter(status=TuningRun.Status.SUCCEEDED).first()
    review = (
        GenerationJob.objects.filter(run=succeeded, purpose=GenerationJob.Purpose.REVIEW).order_by("-id").first()
        if succeeded else None
    )
    battles_voted = PairTask.objects.filter(
        Q(completion_a__model_version=succeeded.model_version) | Q(completion_b__model_version=succeeded.model_version),
        project=project, purpose=PairTask.Purpose.REVIEW, status=TaskStatus.COMPLETE,
    ).count() if review and succeeded.model_version_id else 0
    tuned_candidates = Completion.objects.filter(
        prompt__project=project, prompt__split="train", model_version__isnull=False,
    ).exclude(model_version__adapter_path="").count()

    items = "pairs" if project.mode == Project.Mode.COMPARE else "answers"
    labelled = complete >= ROWS_TO_TELL
    label = LoopStep(
        1, "Label", "done" if labelled else "next",
        f"{complete} of {total} {items} judged." + ("" if labelled else f" A run needs about {ROWS_TO_TELL} to show whether it learned."),
        "Annotate", "labeling:annotate", project.pk,
    )
    if succeeded is not None:
        tune = LoopStep(2, "Tune", "done", f"{succeeded.name} succeeded.", "Open the run", "training:run_detail", succeeded.pk)
    elif latest is not None and latest.status in TuningRun.ACTIVE:
        tune = LoopStep(2, "Tune", "next", f"{latest.name} is {latest.get_status_display().lower()}.", "Watch it train",
                        "training:run_detail", latest.pk)
    else:
        tune = LoopStep(2, "Tune", "next" if labelled else "later",
                        "Launch a run with the form's defaults: it trains a LoRA adapter on the decided judgements.",
                        "Launch a run", "training:run_new", project.pk)
    if review is not None and review.status == GenerationJob.Status.SUCCEEDED:
        compare = LoopStep(3, "Compare", "done",
                           f"Base and tuned answers on held-out prompts, side by side; {battles_voted} blind battle(s) voted.",
                           "Open the review", "training:run_review", succeeded.pk)
    else:
        compare = LoopStep(3, "Compare", "next" if succeeded else "later",
                           "Generate base and tuned answers on held-out prompts, read them side by side, vote blind battles.",
                           "Review the run", "training:run_review", succeeded.pk if succeeded else 0)
    again = LoopStep(4, "Label again", "done" if tuned_candidates else "next" if compare.state == "done" else "later",
                     f"{tuned_candidates} candidate answers written by tuned versions." if tuned_candidates else
                     "Generate candidates with the tuned version on the train prompts: the next round of votes starts from it.",
                     "Generate candidates", "training:project_candidates", project.pk)
    steps = [label, tune, compare, again]
    # Only the first unfinished step is "next"; the rest wait for it.
    first_open = next((step.number for step in steps if step.state != "done"), None)
    steps = [dataclasses.replace(step, state="next" if step.number == first_open else step.state if step.state == "done" else "later")
             for step in steps]
    return LoopWalkthrough(project=project, steps=steps, others=[p for p in projects if p.pk != project.pk])


@dataclass(frozen=True)
class ExportState:
    """One kind of export of a version: whether its zip is ready (and its size), and its latest export job."""

    kind: str
    label: str
    zip_bytes: int | None
    latest: VersionExport | None

    @property
    def ready(self) -> bool:
        return self.zip_bytes is not None

    @property
    def active(self) -> bool:
        return not self.ready and self.latest is not None and self.latest.is_active


@dataclass(frozen=True)
class VersionExports:
    version: ModelVersion
    kinds: list[ExportState]

    @property
    def active(self) -> bool:
        """Whether an export is queued or running (the page keeps polling)."""
        return any(state.active for state in self.kinds)


def version_exports(*, version: ModelVersion) -> VersionExports:
    """Each export kind of ``version``, adapter first: a stat of its zip, and its latest export (one query)."""
    latest: dict[str, VersionExport] = {}
    for export in VersionExport.objects.filter(version=version).order_by("-id"):
        latest.setdefault(export.kind, export)
    kinds = []
    for kind, label in VersionExport.Kind.choices:
        zip_path = version_export_zip_path(version_id=version.pk, kind=kind)
        size = zip_path.stat().st_size if zip_path.is_file() else None
        kinds.append(ExportState(kind=kind, label=str(label), zip_bytes=size, latest=latest.get(kind)))
    return VersionExports(version=version, kinds=kinds)
