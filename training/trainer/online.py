"""Online RL against the project's reward model: GRPO and RLOO (TRL's GRPOTrainer and RLOOTrainer) with a LoRA
policy, the reference being the same model with its adapter switched off. No Django here; `core.train` hands RL
methods to `train_online`.

Each step the policy writes a group of answers per training prompt, the reward model scores them (the scorer the
scoring jobs use), and the update favours each group's better answers, minus beta times the KL to the reference.
Every few steps the reward-hacking watch (`rl_watch`) has the policy answer the validation prompts greedily and
records the reward beside length, degeneration and repetition; the checkpoint kept is chosen from those
evaluations with the watch's flags in mind, not simply the one with the highest reward.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import AutoTokenizer, TrainerCallback, set_seed
from transformers.trainer_callback import PrinterCallback

from .auto_settings import AUTO_EVALUATIONS
from .checkpoints import ADAPTER_DIRNAME, CHECKPOINTS_DIRNAME, checkpoint_is_final, guard_checkpoints
from .config import SettingsError, TrainSettings
from .core import TrainResult
from .cpu_head import plain_lm_head_on_cpu
from .device import DeviceSettings, choose_device
from .events import ProgressEvent
from .generation import adapter_disabled, generate_outputs
from .model_loading import _load_base_model, _lora_config, _merged, chain_adapters
from .progress import _ProgressCallback, _tokens_seen, final_train_metrics
from .reward import load_reward_model, score_conversations
from .rl_watch import KeptChoice, WatchPoint, choose_kept, watch_point, watch_warnings
from .rows import split_rows, validate_rows

Messages = list[dict[str, str]]

# The watch answers at most this many validation prompts per evaluation: enough to see a trend in length and
# degeneration, few enough that an evaluation costs about one training step.
WATCH_PROMPTS = 16
SNAPSHOTS_DIRNAME = "watch"
# The watch so far (reference, evaluations, where each one's adapter snapshot lies), beside the snapshots: a run
# resumed from a checkpoint takes back the evaluations up to it instead of starting its watch over.
WATCH_STATE_FILENAME = "watch.json"


class RewardModelScorer:
    """TRL's reward function: the reward model's score of each (prompt, answer) conversation, as scoring jobs
    compute it (`reward.score_conversations`)."""

    __name__ = "reward_model"  # TRL names each reward function's logged figures after it

    def __init__(self, adapter_dir: str, base_path: str, *, device: str, max_length: int = 1024) -> None:
        self.model, self.tokenizer = load_reward_model(adapter_dir, base_path, device=device)
        self.adapter_dir = adapter_dir
        self.max_length = max_length

    def score(self, conversations: Sequence[Messages]) -> list[float]:
        return score_conversations(self.model, self.tokenizer, conversations, max_length=self.max_length)

    def __call__(self, prompts: Sequence[Messages], completions: Sequence[Messages], **_: Any) -> list[float]:  # noqa: ANN401
        return self.score([list(p) + list(c) for p, c in zip(prompts, completions, strict=True)])


def _prompt_text(prompt: Messages) -> str:
    return next((m["content"] for m in reversed(prompt) if m["role"] == "user"), "")


class _RewardWatch(TrainerCallback):
    """Evaluates the policy on the validation prompts before training (the reference) and every `every` steps,
    snapshots the adapter at each evaluation, and reports each one as an "eval" ProgressEvent."""

    def __init__(
        self, prompts: list[Messages], model_path: str, scorer: RewardModelScorer, *, max_new_tokens: int,
        every: int, snapshots: Path, progress: Callable[[ProgressEvent], None] | None, stopped: _ProgressCallback,
    ) -> None:
        self.prompts = prompts
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.scorer = scorer
        self.max_new_tokens = max_new_tokens
        self.every = every
        self.snapshots = snapshots
        self.progress = progress
        self.stopped = stopped
        self.base: WatchPoint | None = None
        self.points: list[WatchPoint] = []
        self.snapshot_dirs: dict[int, str] = {}

    def evaluate(self, model: Any, step: int, total_steps: int, *, reference: bool = False) -> WatchPoint:  # noqa: ANN401
        was_training = model.training
        model.eval()
        try:
            if reference:
                with adapter_disabled(model):
                    outputs = self._answers(model)
            else:
                outputs = self._answers(model)
        finally:
            model.train(was_training)
        texts = [o.text for o in outputs]
        rewards = self.scorer(self.prompts, [[{"role": "assistant", "content": t}] for t in texts])
        point = watch_point(step, [_prompt_text(p) for p in self.prompts], texts, [o.is_truncated for o in outputs], rewards)
        if reference:
            self.base = point
        else:
            snapshot = self.snapshots / f"step-{step}"
            model.save_pretrained(str(snapshot))
            self.points = [p for p in self.points if p.step != step] + [point]
            self.snapshot_dirs[step] = str(snapshot)
        self._write_state()
        if self.progress is not None:
            self.progress(ProgressEvent(
                step=step, total_steps=total_steps, kind="eval",
                metrics={f"eval_{k}": v for k, v in point.metrics().items()},
                details={"watch_point": point.to_dict(), "reference": reference},
            ))
        return point

    def _write_state(self) -> None:
        # Each evaluation comes before its step's checkpoint (on_step_end runs before the save), so the state
        # written here holds every evaluation up to any checkpoint a resume can start from. Replaced whole, so a
        # kill mid-write leaves the previous state, not half of one.
        self.snapshots.mkdir(parents=True, exist_ok=True)
        state = {
            "base": self.base.to_dict() if self.base else None,
            "points": [p.to_dict() for p in self.points],
            "snapshots": {str(step): path for step, path in self.snapshot_dirs.items()},
        }
        partial = self.snapshots / f".{WATCH_STATE_FILENAME}.partial"
        partial.write_text(json.dumps(state), encoding="utf-8")
        os.replace(partial, self.snapshots / WATCH_STATE_FILENAME)

    def restore(self, checkpoint: str, total_steps: int) -> bool:
        """Take back the watch of the attempt that wrote `checkpoint` (`<attempt>/checkpoints/checkpoint-N`): its
        reference and its evaluations up to step N, whose snapshots stay in that attempt's folder. False (and the
        watch starts over) when that attempt left no state, as an attempt from before the state was kept."""
        at_step = int(Path(checkpoint).name.rsplit("-", 1)[-1])
        try:
            state = json.loads((Path(checkpoint).parent.parent / SNAPSHOTS_DIRNAME / WATCH_STATE_FILENAME).read_text())
        except (OSError, ValueError):
            return False
        if not state.get("base"):
            return False
        snapshots = {int(step): path for step, path in state.get("snapshots", {}).items()}
        points = [WatchPoint.from_dict(p) for p in state.get("points", []) if p["step"] <= at_step]
        self.base = WatchPoint.from_dict(state["base"])
        self.points = [p for p in points if p.step in snapshots and Path(snapshots[p.step]).is_dir()]
        self.snapshot_dirs = {p.step: snapshots[p.step] for p in self.points}
        self._write_state()
        if self.progress is not None:
            # The run page's live watch becomes this one: an evaluation the earlier attempt made after its last
            # checkpoint is made again, or not at all if this attempt stops first.
            self.progress(ProgressEvent(
                step=at_step, total_steps=total_steps, kind="watch", metrics={},
                details={"watch_restored": {"base": self.base.to_dict(), "points": [p.to_dict() for p in self.points]}},
            ))
        return True

    def _answers(self, model: Any) -> list[Any]:  # noqa: ANN401
        # Greedy, so two evaluations differ only by what training changed.
        return generate_outputs(model, self.tokenizer, self.prompts, max_new_tokens=self.max_new_tokens,
                                temperature=0.0, batch_size=WATCH_PROMPTS)

    def on_train_begin(self, args, state, control, model=None, **kwargs):  # noqa: ANN001
        if self.base is None and model is not None:
            self.evaluate(model, 0, int(state.max_steps), reference=True)

    def on_step_end(self, args, state, control, model=None, **kwargs):  # noqa: ANN001
        step = int(state.global_step)
        if self.stopped.cancelled or model is None:
            return control
        if step % self.every == 0 or step >= state.max_steps:
            self.evaluate(model, step, int(state.max_steps))
        return control


def _rl_config(settings: TrainSettings, device: DeviceSettings, checkpoints_dir: Path) -> Any:  # noqa: ANN401
    from trl import GRPOConfig, RLOOConfig

    config_cls = GRPOConfig if settings.method == "grpo" else RLOOConfig
    extra = {"loss_type": settings.resolved_loss_type} if settings.method == "grpo" else {}
    return config_cls(
        output_dir=str(checkpoints_dir),
        learning_rate=settings.learning_rate,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.per_device_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        num_generations=settings.num_generations,
        max_completion_length=settings.max_completion_length,
        temperature=settings.temperature,
        beta=settings.beta,
        warmup_steps=settings.warmup_ratio,
        seed=settings.seed,
        data_seed=settings.seed,
        logging_strategy="steps",
        logging_steps=1,
        logging_first_step=True,
        eval_strategy="no",
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=settings.save_total_limit,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        **extra,
        **device.training_kwargs(config_cls),
    )


def train_online(
    *,
    model_path: str,
    rows: list[dict[str, Any]],
    settings: TrainSettings,
    output_dir: str,
    progress: Callable[[ProgressEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume_from_checkpoint: str | None = None,
    device: DeviceSettings | None = None,
    should_pause: Callable[[], bool] | None = None,
    before_save: Callable[[], None] | None = None,
) -> TrainResult:
    """Train a LoRA policy with GRPO or RLOO on the prompts in `rows` against the reward model at
    `settings.reward_adapter`, and save the kept checkpoint's adapter to `<output_dir>/adapter`. The arguments and
    the result mean what they mean for `core.train`; the result's outcome carries the watch (`outcome["watch"]`)."""
    settings.validate()
    validate_rows(rows, settings.method)
    if not settings.reward_adapter:
        raise SettingsError("An online RL run needs a reward model to train against: train one on the votes first.",
                            field="reward_model")
    started = time.monotonic()
    out = Path(output_dir)
    train_rows, validation_rows = split_rows(
        rows, validation_fraction=settings.validation_fraction, seed=settings.seed, method=settings.method
    )
    if not validation_rows:
        # The watch needs prompts the policy is not trained on; with very few prompts, watch the training ones.
        validation_rows = train_rows[:WATCH_PROMPTS]
    device = device or choose_device()
    settings, _ = settings.resolve(len(train_rows), device=device.device)
    if should_stop is not None and should_stop():
        return TrainResult(adapter_dir=None, steps=0, total_steps=0, train_metrics={}, eval_metrics={}, tokens_seen=None,
                           duration_s=time.monotonic() - started, cancelled=True, train_rows=len(train_rows),
                           validation_rows=len(validation_rows))
    set_seed(settings.seed)
    callback = _ProgressCallback(progress, should_stop, should_pause=should_pause, method=settings.method)
    trainer, watch = _trainer_and_watch(
        model_path, settings, device, out, train_rows, [row["prompt"] for row in validation_rows[:WATCH_PROMPTS]],
        callback, progress,
    )
    if resume_from_checkpoint is not None:
        watch.restore(resume_from_checkpoint, settings.max_steps)
        if checkpoint_is_final(resume_from_checkpoint):
            trainer._run_epoch = lambda **_: None  # noqa: SLF001 - see core.train
    guard_checkpoints(trainer, before_save)
    output = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    state = trainer.state
    common = dict(
        steps=int(state.global_step), total_steps=int(state.max_steps), train_metrics=final_train_metrics(output, callback),
        tokens_seen=_tokens_seen(callback), train_rows=len(train_rows), validation_rows=len(validation_rows),
        history=callback.history, settings=settings,
    )
    if callback.cancelled:
        return TrainResult(adapter_dir=None, eval_metrics={}, duration_s=time.monotonic() - started, cancelled=True,
                           paused=callback.paused, **common)
    if not watch.points or watch.points[-1].step != state.global_step:
        # Resumed at the last checkpoint after its evaluation was lost (a kill between the two), or stopped
        # between evaluations: the kept adapter is chosen among evaluated ones, so evaluate where it ended.
        watch.evaluate(trainer.model, int(state.global_step), int(state.max_steps))
    kept = _save_kept(trainer, watch, out, model_path, settings, device)
    outcome = _outcome(watch, kept, callback, steps=int(state.global_step), train_rows=len(train_rows),
                       validation_rows=len(validation_rows), reward_adapter=settings.reward_adapter)
    return TrainResult(
        adapter_dir=str(out / ADAPTER_DIRNAME), eval_metrics={f"eval_{k}": v for k, v in outcome["validation"].items()},
        duration_s=time.monotonic() - started, cancelled=False, outcome=outcome, **common,
    )


def _trainer_and_watch(
    model_path: str, settings: TrainSettings, device: DeviceSettings, out: Path, train_rows: list[dict[str, Any]],
    watched_prompts: list[Messages], callback: _ProgressCallback, progress: Callable[[ProgressEvent], None] | None,
) -> tuple[Any, _RewardWatch]:
    """TRL's GRPO or RLOO trainer over the policy (the base, or the version started from, with a new LoRA adapter)
    and the reward model, with the progress callback and the watch on `watched_prompts`."""
    from trl import GRPOTrainer, RLOOTrainer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = _load_base_model(model_path, settings, device)
    if settings.init_adapter:
        model = _merged(model, settings.init_adapter)
    scorer = RewardModelScorer(settings.reward_adapter or "", model_path, device=device.device)
    every = settings.eval_steps or max(1, math.ceil(settings.max_steps / AUTO_EVALUATIONS))
    watch = _RewardWatch(
        watched_prompts, model_path, scorer, max_new_tokens=int(settings.max_completion_length or 128), every=every,
        snapshots=out / SNAPSHOTS_DIRNAME, progress=progress, stopped=callback,
    )
    trainer_cls = GRPOTrainer if settings.method == "grpo" else RLOOTrainer
    with plain_lm_head_on_cpu(device.device == "cpu"):
        trainer = trainer_cls(
            model=model,
            reward_funcs=scorer,
            args=_rl_config(settings, device, out / CHECKPOINTS_DIRNAME),
            train_dataset=Dataset.from_list([{"prompt": row["prompt"]} for row in train_rows]),
            processing_class=tokenizer,
            peft_config=_lora_config(model, settings),
            callbacks=[callback, watch],
        )
    trainer.remove_callback(PrinterCallback)
    return trainer, watch


def _save_kept(
    trainer: Any, watch: _RewardWatch, out: Path, model_path: str, settings: TrainSettings, device: DeviceSettings,  # noqa: ANN401
) -> KeptChoice:
    """Choose the kept evaluation (`rl_watch.choose_kept`) and save its adapter snapshot, with the tokenizer, as the
    run's adapter (chained onto the version it started from, if any)."""
    assert watch.base is not None
    kept = choose_kept(watch.base, watch.points)
    adapter_dir = out / ADAPTER_DIRNAME
    if trainer.is_world_process_zero():
        shutil.copytree(watch.snapshot_dirs[kept.step], adapter_dir, dirs_exist_ok=True)
        if settings.init_adapter:
            chain_adapters(model_path, settings.init_adapter, str(adapter_dir), out=str(adapter_dir), dtype=device.dtype)
        trainer.processing_class.save_pretrained(str(adapter_dir))
    return kept


def _outcome(
    watch: _RewardWatch, kept: KeptChoice, callback: _ProgressCallback, *, steps: int, train_rows: int,
    validation_rows: int, reward_adapter: str | None,
) -> dict[str, Any]:
    """What the run page leads with: the kept evaluation's figures, and the whole watch with its warnings."""
    assert watch.base is not None
    kept_point = next(p for p in watch.points if p.step == kept.step)
    last_train = next((e.metrics for e in reversed(callback.history) if e.kind == "train"), {})
    return {
        "kept_step": kept.step,
        "steps": steps,
        "train_rows": train_rows,
        "validation_rows": validation_rows,
        "final_train": dict(last_train),
        "evaluations": len(watch.points),
        "best_metric": "reward",
        "validation": kept_point.metrics(),
        "watch": {
            "base": watch.base.to_dict(),
            "points": [p.to_dict() for p in watch.points],
            "warnings": [w.to_dict() for w in watch_warnings(watch.base, watch.points)],
            "kept_step": kept.step,
            "kept_reason": kept.reason,
            "reward_adapter": reward_adapter,
        },
    }
