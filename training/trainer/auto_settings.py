"""The automatic choices for settings left empty (learning rate, epochs, beta, lengths, online RL's sizes), the
constants they are made from, and the sentences that say why, for the run page and the launch form's help text.

`AutomaticChoices` holds `TrainSettings.resolve`: `config.TrainSettings` inherits it, so this module reads the
settings through `self` and needs no import of config, which imports it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Self

from .settings_choices import REWARD_METHOD, RL_METHODS

# beta when left empty. SimPO's reward is beta times the length-normalised log-probability, and its paper works
# at beta 2 to 2.5 (Meng et al. 2024); for the others beta scales a log-ratio (DPO, KTO, CPO) or, in ORPO, the
# odds-ratio term against the NLL (lambda in Hong et al. 2024), and 0.1 is each paper's and TRL's default.
AUTO_BETA: dict[str, float] = {"dpo": 0.1, "kto": 0.1, "cpo": 0.1, "simpo": 2.0, "orpo": 0.1, "sft": 0.1}
# Online RL's beta is the KL coefficient to the reference. TRL 1.16's GRPO default is 0, which removes the leash: a
# reward model is a proxy fitted on a few hundred votes, and a policy free to drift finds the answers it scores
# highly without people preferring them (reward hacking). 0.05 is RLOO's TRL default and the order of GRPO's
# original 0.04: strong enough that drift shows up as a cost the reward gain has to pay for, weak enough to move.
AUTO_BETA.update({"grpo": 0.05, "rloo": 0.05})
# Online RL's automatic sizes. A step writes group-size answers per prompt and scores them; on 2 CPU cores a group
# of 4 answers of 128 tokens of SmolLM2-135M takes about 9 s, so 60 steps fit the minutes a CPU DPO run takes. At
# 128 tokens a short answer ends and a long one is cut off, so the reward model sees both kinds.
AUTO_RL_STEPS = {"cuda": 200, "cpu": 60}
AUTO_RL_COMPLETION_TOKENS = {"cuda": 256, "cpu": 128}
AUTO_RL_GROUP_SIZE = 4
# A policy-gradient step is noisier than a DPO step on fixed pairs, and every step's answers come from the policy
# itself: a LoRA rate below DPO's keeps one bad batch from throwing the policy off its own distribution.
AUTO_RL_LEARNING_RATE = 2e-4

# Automatic choices (learning rate, epochs, evaluation cadence) when a setting is left empty. See
# `AutomaticChoices.resolve` for the reasoning; the launch form's help text repeats it.
AUTO_LORA_LEARNING_RATE = 5e-4
AUTO_FULL_RANK_REFERENCE = 16
AUTO_TARGET_STEPS = 90
AUTO_MAX_EPOCHS = 4
# On a CPU worker a step costs seconds, not milliseconds, and the cost grows faster than the tokens it holds (one
# DPO step of 4 pairs of SmolLM2-135M on 2 cores: 36 s at 400 tokens a row, 13 s at 256, 7 s at 160). There the
# automatic choices size a run to finish in minutes: rows cut at 160 tokens (the prompt and the answer's
# beginning; an answer that ends before it keeps its end, which is what a length or format preference is
# learnt from) and fewer steps, but always two passes, since a DPO run never keeps a checkpoint from its first.
# The demo's run (122 training rows, 62 steps) took 19 minutes at 192 tokens, with its page open.
AUTO_MAX_LENGTH = {"cuda": 512, "cpu": 160}
AUTO_TARGET_STEPS_CPU = 60
AUTO_MIN_EPOCHS_CPU_DPO = 2
DEVICES = tuple(AUTO_MAX_LENGTH)
AUTO_EVALUATIONS = 8
# Twice the preference loss: on the alignment bench (length rule, 200 votes) weight 1 left 10 to 12 of 90 tuned
# answers looping as lists ("1. All sleep is the same. 2. ...") against the base's 1, even at a KL of 0.04 per
# token; weight 2 left 2, won 84.4% of held-out comparisons and kept validation accuracy at 0.944.
AUTO_SFT_WEIGHT = 2.0
# TRL's recommended centring for a reward model's scores (Eisenstein et al. 2023): a small penalty on the mean
# squared reward keeps scores near zero, so two reward models, or two runs, can be read on one scale.
AUTO_CENTER_REWARDS = 0.01


def lora_learning_rate(at_rank_16: float, rank: int, *, ceiling: float) -> float:
    """The automatic rate for a LoRA adapter of `rank`: `at_rank_16`, scaled by the square root of 16 / rank (a
    higher rank has more directions to move in), at most `ceiling`, to two significant figures."""
    rate = at_rank_16 * math.sqrt(AUTO_FULL_RANK_REFERENCE / rank)
    return float(f"{min(rate, ceiling):.2g}")


class AutomaticChoices:
    """The automatic choices of `TrainSettings` (which inherits this class): what `resolve` fills in, and why."""

    def resolve(self, train_rows: int, *, device: str = "cuda") -> tuple[Self, list[str]]:
        """A copy with every automatic (None) setting chosen for `train_rows` training rows on `device`
        ("cuda" or "cpu"), and one sentence per choice saying why, for the run page.

        - Learning rate: a LoRA adapter starts at zero and its update is scaled by alpha / r, so it needs
          a far larger rate than full fine-tuning; 5e-4 at r=16 (alpha 2r) moved SmolLM2-135M clearly on
          the alignment bench without breaking its answers, where 5e-5 barely moved it. Higher ranks
          get a smaller rate (x sqrt(16 / r)), since their update has more directions to move in.
        - Epochs: the whole number of passes nearest to AUTO_TARGET_STEPS optimizer steps (a small
          preference set needs several passes to move an adapter), at most AUTO_MAX_EPOCHS; the best
          checkpoint by validation score is kept. Nearest, not at least: on the alignment bench (175
          rows, 44 steps an epoch) validation accuracy peaked by step 51 of 132, and the third pass
          only cost 8 of the bench's 30 minutes.
        - Evaluation: about AUTO_EVALUATIONS times per run on the validation split.
        - On a CPU: rows cut at AUTO_MAX_LENGTH["cpu"] tokens and epochs nearest AUTO_TARGET_STEPS_CPU steps (at
          least two for DPO), so the run takes minutes; see AUTO_MAX_LENGTH.
        """
        if device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
        on_cpu = device == "cpu"
        resolved = dataclasses.replace(self, lora=dataclasses.replace(self.lora))
        notes: list[str] = []
        if resolved.method == REWARD_METHOD:
            notes.extend(resolved._resolve_reward())
        elif resolved.method in RL_METHODS:
            notes.extend(resolved._resolve_online_rl(device))
        elif resolved.beta is None:
            resolved.beta = AUTO_BETA[resolved.method]
            if resolved.method == "simpo":
                notes.append(
                    f"beta {resolved.beta:g}: SimPO scales the length-normalised log-probability, and its paper trains "
                    "at beta 2 to 2.5."
                )
        if resolved.learning_rate is None:
            resolved.learning_rate = lora_learning_rate(AUTO_LORA_LEARNING_RATE, resolved.lora.r, ceiling=2e-3)
            notes.append(
                f"Learning rate {resolved.learning_rate:g}: a LoRA adapter of rank {resolved.lora.r} needs a far larger "
                "rate than full fine-tuning (5e-4 at rank 16, scaled by the square root of 16 / rank)."
            )
        if resolved.max_length is None:
            resolved.max_length = AUTO_MAX_LENGTH[device]
            if on_cpu:
                notes.append(
                    f"Rows cut at {resolved.max_length} tokens, prompt and answer together, on a CPU worker: a step's "
                    "cost grows faster than its tokens, and an answer's beginning, or its end where it ends sooner, "
                    "carries the preference."
                )
        notes.extend(resolved._resolve_epochs(train_rows, on_cpu))
        if resolved.sft_weight is None:
            resolved.sft_weight = AUTO_SFT_WEIGHT if resolved.method == "dpo" else 0.0
            if resolved.sft_weight:
                notes.append(
                    f"SFT weight {resolved.sft_weight:g}: the chosen answers' own likelihood is trained alongside the "
                    "preference, so the model learns what was preferred without drifting into loops and fragments."
                )
        if resolved.num_processes > 1 and resolved.precompute_ref_log_probs:
            # TRL caches precomputed reference log-probs in a per-process temporary folder that the other ranks
            # cannot read; computing them alongside each step gives the same numbers.
            resolved.precompute_ref_log_probs = False
            notes.append(
                f"Reference log-probabilities are computed with each step rather than beforehand: {resolved.num_processes} "
                "processes cannot share TRL's precomputed cache."
            )
        if resolved.eval_steps is None:
            resolved.eval_steps = max(1, math.ceil(resolved.total_steps(train_rows) / AUTO_EVALUATIONS))
        return resolved.validate(), notes

    def _resolve_epochs(self, train_rows: int, on_cpu: bool) -> list[str]:
        """A preference run's automatic number of epochs (in place), with its reason."""
        per_epoch = self.steps_per_epoch(train_rows)
        if self.num_train_epochs is not None:
            return []
        if self.max_steps > 0:
            self.num_train_epochs = 1
            return []
        target = AUTO_TARGET_STEPS_CPU if on_cpu else AUTO_TARGET_STEPS
        fewest = AUTO_MIN_EPOCHS_CPU_DPO if on_cpu and self.method == "dpo" else 1
        epochs = min(AUTO_MAX_EPOCHS, max(fewest, round(target / per_epoch)))
        self.num_train_epochs = epochs
        where = f"on a CPU worker, at least {fewest}, " if on_cpu else ""
        return [
            f"{epochs} epoch{'s' if epochs != 1 else ''} ({per_epoch} steps each, {epochs * per_epoch} in all): "
            f"the number of passes over {train_rows} training rows nearest to {target} optimizer steps "
            f"({where}at most {AUTO_MAX_EPOCHS}); the checkpoint with the best validation score is kept."
        ]

    def _resolve_online_rl(self, device: str) -> list[str]:
        """An online RL run's automatic choices (in place), with their reasons."""
        notes = []
        if self.beta is None:
            self.beta = AUTO_BETA[self.method]
            notes.append(
                f"KL coefficient {self.beta:g}: each step pays for drifting from the reference model, so the policy "
                "moves only as far as the reward model's gain is worth. The reward model is fitted on a few hundred "
                "votes; without the leash (TRL's GRPO default is 0) a policy finds what it scores highly without people "
                "preferring it."
            )
        if self.learning_rate is None:
            self.learning_rate = lora_learning_rate(AUTO_RL_LEARNING_RATE, self.lora.r, ceiling=1e-3)
            notes.append(
                f"Learning rate {self.learning_rate:g}: below DPO's, since each step learns from the policy's own "
                "few answers, a noisier signal than fixed pairs."
            )
        if self.num_generations is None:
            self.num_generations = AUTO_RL_GROUP_SIZE
            while self.global_batch_size % self.num_generations:
                self.num_generations -= 1
        if self.max_completion_length is None:
            self.max_completion_length = AUTO_RL_COMPLETION_TOKENS[device]
        if self.max_steps <= 0:
            self.max_steps = AUTO_RL_STEPS[device]
            prompts = self.global_batch_size // self.num_generations
            notes.append(
                f"{self.max_steps} steps of {prompts} prompt{'s' if prompts != 1 else ''} x {self.num_generations} "
                f"answers of up to {self.max_completion_length} tokens"
                + (" on a CPU worker, sized to take about as long as a CPU DPO run." if device == "cpu" else ".")
            )
        if self.sft_weight is None:
            self.sft_weight = 0.0
        return notes

    def _resolve_reward(self) -> list[str]:
        """A reward model's automatic choices (in place), with their reasons."""
        notes = []
        if self.center_rewards is None:
            self.center_rewards = AUTO_CENTER_REWARDS
        if self.keep_best:
            # Picking a checkpoint by validation accuracy would make that accuracy optimistic; the reward model's
            # held-out accuracy is the number its users act on, so it must come from pairs nothing was chosen by.
            self.keep_best = False
            notes.append(
                "The last step is kept, not the best on validation: the validation pairs then stay an unbiased test of "
                "the reward model's pairwise accuracy."
            )
        return notes
