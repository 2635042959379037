"""The playground's writes: a question asked of several model versions, answered on a gpu worker token by token
into PlaygroundAnswer rows that the page polls; cancel; keep the question as a project prompt; send the answers
to a blind battle.

The answers are written by the same function as review generation (``generate_outputs``, one prompt, seed
``settings.seed``), so a question asked here with the review page's settings gets the answer the review would write
for it alone in a batch.
"""
from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.utils import timezone

from labeling.models import Completion, Project, Prompt
from training.access import describe_failure
from training.broker import send_by_name
from training.heartbeat import Heartbeat, stale_condition
from training.models import Battle, ModelVersion, PlaygroundAnswer, PlaygroundRequest
from training.review.versions import ReviewError
from training.trainer.generation_settings import GenerationSettings, GenerationSettingsError

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

PLAYGROUND_TASK = "workers.playground"
MAX_PROMPT_CHARS = 20_000
MAX_VERSIONS = 4
MAX_BEST_OF = 8
# How often a streaming answer is written to its row (and the request's status checked for a cancel).
STREAM_SECONDS = 0.25
# C0 controls and DEL, but not tab, newline and carriage return, which a pasted prompt may carry.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
Status = PlaygroundRequest.Status


class PlaygroundError(Exception):
    """Why a question cannot be asked, or its answers kept; the message is for the person who asked."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _checked_text(text: str, what: str, *, required: bool) -> str:
    if required and not text.strip():
        raise PlaygroundError(f"Write a {what} to ask.")
    if len(text) > MAX_PROMPT_CHARS:
        raise PlaygroundError(f"The {what} is {len(text):,} characters; the playground takes up to {MAX_PROMPT_CHARS:,}.")
    control = _CONTROL.search(text)
    if control:
        raise PlaygroundError(
            f"The {what} contains a control character (U+{ord(control.group()):04X}) at position {control.start() + 1}: "
            "remove it (pasted terminal output often carries them)."
        )
    return text


def playground_request_create(
    *, project: Project, user: User, prompt: str, system: str = "", versions: Sequence[ModelVersion],
    settings_data: dict[str, Any], best_of: Sequence[int] | None = None,
) -> PlaygroundRequest:
    """Queue a question for ``versions`` (one column each, in order) once this transaction commits; ``best_of[i]``
    above 1 makes column i the best of that many samples by the project's reward model. A question the same user
    still has running in this project is stopped first: one playground generation at a time per user."""
    messages = []
    if _checked_text(system, "system message", required=False).strip():
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": _checked_text(prompt, "prompt", required=True)})
    best_of = list(best_of or [1] * len(versions))
    columns = list(dict.fromkeys(zip(versions, best_of, strict=True)))
    if not columns:
        raise PlaygroundError("Choose at least one model version to answer.")
    if any(n > 1 for _, n in columns):
        from training.review.rewards import project_reward_model

        if any(not 1 <= n <= MAX_BEST_OF for _, n in columns):
            raise PlaygroundError(f"Best of N takes 2 to {MAX_BEST_OF} samples.")
        if project_reward_model(project=project) is None:
            raise PlaygroundError("Best of N needs a reward model trained in this project to pick the best sample.")
    versions = [version for version, _ in columns]
    if len(columns) > MAX_VERSIONS:
        raise PlaygroundError(f"Compare at most {MAX_VERSIONS} columns at once.")
    if len({v.base_model_id for v in versions}) != 1:
        raise PlaygroundError("The versions must share one base model: the worker loads it once and switches adapters.")
    try:
        settings = GenerationSettings.from_dict({**settings_data, "n": 1})
    except GenerationSettingsError as error:
        raise PlaygroundError(str(error)) from error
    with transaction.atomic():
        PlaygroundRequest.objects.filter(project=project, created_by=user, status__in=PlaygroundRequest.ACTIVE).update(
            status=Status.CANCELLED, finished_at=timezone.now(), error="Stopped: a new question was asked."
        )
        request = PlaygroundRequest.objects.create(
            project=project, created_by=user, messages=messages, settings=settings.to_dict()
        )
        PlaygroundAnswer.objects.bulk_create(
            PlaygroundAnswer(request=request, model_version=version, position=n, best_of=count)
            for n, (version, count) in enumerate(columns)
        )
        transaction.on_commit(lambda: _send(request.pk))
    return request


def _send(request_id: int) -> None:
    error = send_by_name(PLAYGROUND_TASK, args=[request_id], queue="gpu")
    if error is not None:
        logger.error("Playground request %s could not be queued: the broker is unreachable (%s).", request_id, error)
        PlaygroundRequest.objects.filter(pk=request_id, status=Status.QUEUED).update(
            status=Status.FAILED, finished_at=timezone.now(),
            error="The task broker could not be reached, so nothing was asked. Ask again once it is back.",
        )


def playground_request_claim(*, request_id: int, worker: str) -> bool:
    now = timezone.now()
    return PlaygroundRequest.objects.filter(pk=request_id, status=Status.QUEUED).update(
        status=Status.RUNNING, worker=worker, started_at=now, heartbeat_at=now
    ) == 1


def playground_request_cancel(*, request: PlaygroundRequest) -> bool:
    """Stop a queued or writing question; the worker stops at its next token. False when it had already ended."""
    return PlaygroundRequest.objects.filter(pk=request.pk, status__in=PlaygroundRequest.ACTIVE).update(
        status=Status.CANCELLED, finished_at=timezone.now(), error="Stopped."
    ) == 1


class _Stopped(Exception):
    pass


def playground_request_execute(*, request_id: int) -> PlaygroundRequest:
    """Write each column's answer in turn, streaming its text into its row; a cancel stops it at the next write.
    Never raises for a generation failure: the reason is stored on the request."""
    with Heartbeat(PlaygroundRequest, request_id, Status.RUNNING):
        try:
            _answer_all(request_id)
        except _Stopped:
            pass
        except Exception as exc:  # noqa: BLE001 - any failure ends the request with its reason recorded
            logger.exception("Playground request %s failed", request_id)
            PlaygroundRequest.objects.filter(pk=request_id, status=Status.RUNNING).update(
                status=Status.FAILED, finished_at=timezone.now(),
                error=describe_failure(exc, limit=2000),
            )
        else:
            PlaygroundRequest.objects.filter(pk=request_id, status=Status.RUNNING).update(
                status=Status.SUCCEEDED, finished_at=timezone.now()
            )
    return PlaygroundRequest.objects.get(pk=request_id)


def _answer_all(request_id: int) -> None:
    from training.trainer.generation_backends import TRANSFORMERS, TransformersBackend, generation_dtype

    request = PlaygroundRequest.objects.get(pk=request_id)
    answers = list(request.answers.select_related("model_version__base_model"))
    settings = GenerationSettings.from_dict(request.settings)
    base_path = answers[0].model_version.base_model.path
    adapters = {f"v{a.model_version_id}": (a.model_version.adapter_path or None) for a in answers}
    PlaygroundRequest.objects.filter(pk=request_id).update(engine=f"{TRANSFORMERS} {generation_dtype(TRANSFORMERS)}")
    backend = TransformersBackend(base_path, adapters, batch_size=1)
    tokenizer = backend.tokenizer
    try:
        for answer in answers:
            _stop_if_cancelled(request_id)
            name = f"v{answer.model_version_id}"
            samples = []
            for k in range(answer.best_of):
                with _version_on(backend, name, adapters[name]):
                    made, seconds = _write_streaming(backend, answer, request, settings, k)
                samples.append({"text": made.text, "finish_reason": made.finish_reason, "score": None})
                tokens = len(tokenizer(made.text, add_special_tokens=False)["input_ids"]) if made.text else 0
                fields: dict[str, Any] = {"text": made.text, "tokens": tokens, "seconds": seconds}
                if answer.best_of == 1:
                    fields["finish_reason"] = made.finish_reason
                else:
                    fields["samples"] = samples
                PlaygroundAnswer.objects.filter(pk=answer.pk).update(**fields)
                _stop_if_cancelled(request_id)
            if answer.best_of > 1:
                _pick_best(request, answer, samples)
    finally:
        backend.close()


@contextlib.contextmanager
def _version_on(backend: Any, name: str, adapter: str | None) -> Any:  # noqa: ANN401
    """The loaded model answering as version ``name``: its adapter switched on, or every adapter off for the base."""
    from training.trainer import generation

    if adapter:
        backend.model.set_adapter(name)
        yield
    else:
        with generation.adapter_disabled(backend.model):
            yield


def _write_streaming(
    backend: Any, answer: PlaygroundAnswer, request: PlaygroundRequest, settings: GenerationSettings, sample: int,  # noqa: ANN401
) -> tuple[Any, float]:
    """Sample ``sample`` of one column's answer (seed + sample, as review sample k), its text written into the row
    as it grows. Returns the GeneratedText and the seconds it took."""
    from training.trainer import generation

    tokenizer = backend.tokenizer
    started = time.monotonic()
    last_write = [started]

    def stream(rows: list[list[int]]) -> bool:
        now = time.monotonic()
        if now - last_write[0] < STREAM_SECONDS:
            return True
        last_write[0] = now
        PlaygroundAnswer.objects.filter(pk=answer.pk).update(
            text=tokenizer.decode(rows[0], skip_special_tokens=True).strip(), tokens=len(rows[0]), seconds=now - started,
        )
        return not PlaygroundRequest.objects.filter(pk=request.pk, status=Status.CANCELLED).exists()

    [made] = generation.generate_outputs(
        backend.model, tokenizer, [request.messages], max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature_for(sample), top_p=settings.top_p, seed=settings.seed + sample, batch_size=1,
        on_step=stream,
    )
    return made, time.monotonic() - started


def _pick_best(request: PlaygroundRequest, answer: PlaygroundAnswer, samples: list[dict[str, Any]]) -> None:
    """Score a best-of-N column's samples with the project's reward model and show the best of them."""
    from training.review.rewards import project_reward_model, reward_adapter_dir
    from training.trainer.device import choose_device
    from training.trainer.reward import load_reward_model, score_conversations

    reward_run = project_reward_model(project=request.project)
    if reward_run is None:
        raise PlaygroundError("The project's reward model is gone: best of N cannot pick a sample.")
    model, tokenizer = load_reward_model(reward_adapter_dir(reward_run), reward_run.base_model.path,
                                         device=choose_device().device)
    max_length = int((reward_run.settings or {}).get("max_length") or 1024)
    scores = score_conversations(
        model, tokenizer, [[*request.messages, {"role": "assistant", "content": s["text"]}] for s in samples],
        max_length=max_length,
    )
    for sample, score in zip(samples, scores, strict=True):
        sample["score"] = float(score)
    best = max(range(len(samples)), key=lambda k: samples[k]["score"])
    PlaygroundAnswer.objects.filter(pk=answer.pk).update(
        samples=samples, text=samples[best]["text"], finish_reason=samples[best]["finish_reason"],
    )


def _stop_if_cancelled(request_id: int) -> None:
    if PlaygroundRequest.objects.filter(pk=request_id, status=Status.CANCELLED).exists():
        raise _Stopped


def playground_prompt_keep(*, request: PlaygroundRequest, split: str) -> Prompt:
    """The question as a prompt of the project: held out (for the next review) or train (for the next candidates).
    Kept once: asking again returns the prompt it became."""
    if split not in (Prompt.Split.HELDOUT, Prompt.Split.TRAIN):
        raise PlaygroundError("Keep it as a held-out or a train prompt.")
    if request.kept_prompt_id is not None:
        return request.kept_prompt
    prompt, _ = Prompt.objects.get_or_create(
        project=request.project, external_id=f"playground-{request.pk}",
        defaults={"messages": request.messages, "split": split},
    )
    PlaygroundRequest.objects.filter(pk=request.pk).update(kept_prompt=prompt)
    request.kept_prompt = prompt
    return prompt


def playground_battle_create(*, request: PlaygroundRequest, user: User) -> Battle:
    """A blind battle of the two finished answers: the question kept as a held-out prompt (if it was not kept yet),
    each answer stored as that version's output with the request's settings, and one review pair of them."""
    from training.review.battles import battles_create
    from training.review.comparisons import matched_settings_of

    if request.project.mode != Project.Mode.COMPARE:
        raise PlaygroundError("Blind battles are voted on in the compare screen: this is a thumbs (rate) project.")
    answers = list(request.answers.select_related("model_version"))
    if len(answers) != 2 or not all(a.done for a in answers):
        raise PlaygroundError("A battle is between exactly two finished answers.")
    if any(a.best_of > 1 for a in answers):
        raise PlaygroundError("A best-of-N answer was picked from several samples, so it is matched with no one answer of "
                              "the other side: battle two plain answers.")
    with transaction.atomic():
        prompt = playground_prompt_keep(request=request, split=Prompt.Split.HELDOUT)
        settings = GenerationSettings.from_dict(request.settings)
        backend, _, dtype = request.engine.partition(" ")
        recorded = settings.for_sample(0, backend=backend or None, dtype=dtype or None)
        for answer in answers:
            Completion.objects.get_or_create(
                prompt=prompt, model_version=answer.model_version, source=Completion.Source.GENERATED,
                generation_settings=recorded,
                defaults={"text": answer.text, "model_name": answer.model_version.name, "finish_reason": answer.finish_reason},
            )
        try:
            return battles_create(
                project=request.project, version_a=answers[1].model_version, version_b=answers[0].model_version,
                settings=matched_settings_of(recorded), prompt_ids=[prompt.pk], created_by=user,
            )
        except ReviewError as error:
            raise PlaygroundError(error.message) from error


def playground_requests_reap(*, worker_name: str | None = None, older_than: timedelta | None = None) -> list[int]:
    """Fail questions left writing by a worker that is gone (restarted, or silent for ``older_than``)."""
    stale = PlaygroundRequest.objects.filter(
        stale_condition(worker_name=worker_name, older_than=older_than, what="playground questions"), status=Status.RUNNING
    )
    ids = list(stale.values_list("pk", flat=True))
    PlaygroundRequest.objects.filter(pk__in=ids, status=Status.RUNNING).update(
        status=Status.FAILED, finished_at=timezone.now(),
        error="The worker writing these answers stopped (restarted or lost); ask again.",
    )
    return ids


def playground_serve_waiting(*, worker: str, limit: int = 4) -> list[int]:
    """Answer the questions waiting for a gpu worker, here and now: called by a generation job between two batches,
    so that a question waits behind at most one batch rather than the whole job. Each is claimed as usual, so its
    own message, when the worker gets to it, finds it answered and does nothing."""
    served = []
    for request_id in PlaygroundRequest.objects.filter(status=Status.QUEUED).order_by("id").values_list("pk", flat=True)[:limit]:
        if playground_request_claim(request_id=request_id, worker=worker):
            playground_request_execute(request_id=request_id)
            served.append(request_id)
    return served
