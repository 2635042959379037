"""What a run's settings can be set to: the training methods and their families, each method's loss types,
the quantisation and sharding choices, and the limits the settings are checked against.

Plain constants that import nothing of the project, so the settings, their automatic choices and the pages can all
read them.
"""

from __future__ import annotations

from typing import Literal

Method = Literal["dpo", "kto", "simpo", "cpo", "orpo", "sft", "reward", "grpo", "rloo"]

METHODS: tuple[str, ...] = ("dpo", "kto", "simpo", "cpo", "orpo", "sft", "reward", "grpo", "rloo")
# Online RL against the project's reward model (TRL's GRPOTrainer and RLOOTrainer): the policy writes answers to
# the training prompts, the reward model scores them, and the update favours the better answers of each group,
# held near the reference by a KL penalty. They train on prompts, not on votes.
RL_METHODS: tuple[str, ...] = ("grpo", "rloo")
# Methods that train on preference pairs (prompt, chosen, rejected); KTO trains on thumbs.
PAIR_METHODS: tuple[str, ...] = ("dpo", "simpo", "cpo", "orpo")
# Methods without a reference model (TRL's CPO and ORPO trainers): half the forward passes of DPO.
REFERENCE_FREE_METHODS: tuple[str, ...] = ("simpo", "cpo", "orpo")
# Methods whose kept checkpoint is the one with the lowest validation loss (no implicit reward to rank by).
LOSS_SELECTED_METHODS: tuple[str, ...] = (*REFERENCE_FREE_METHODS, "sft")
# A reward model (TRL's RewardTrainer): the base with a scalar head, trained on the same pairs to score answers.
# It writes nothing; it ranks candidates, scores review outputs and says which pairs are worth labeling next.
REWARD_METHOD = "reward"
# Methods with nothing to choose about the loss's temperature.
BETA_FREE_METHODS: tuple[str, ...] = ("sft", REWARD_METHOD)
QUANTIZATIONS: tuple[str, ...] = ("none", "4bit")
# How several processes share the model. "none": data parallel (DDP), a whole copy of the weights on every GPU.
# "fsdp": PyTorch FSDP2 full sharding (ZeRO-3's equivalent) through accelerate: each GPU keeps 1/N of the weights,
# gradients and optimizer state and gathers one decoder layer at a time, so a model too big for one GPU trains.
SHARDINGS: tuple[str, ...] = ("none", "fsdp")
MAX_PROCESSES = 64

# DPO loss types accepted by TRL 1.16's DPOConfig (read from trl/trainer/dpo_config.py). "exo_pair"
# needs label_smoothing > 0 and is left out; "robust" (Chowdhury et al. 2024, unbiased under a known
# label-flip rate) needs label_smoothing > 0, which validate() checks.
DPO_LOSS_TYPES: tuple[str, ...] = (
    "sigmoid",
    "ipo",
    "robust",
    "hinge",
    "nca_pair",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sigmoid_norm",
)
# KTOConfig.loss_type choices in TRL 1.16.
KTO_LOSS_TYPES: tuple[str, ...] = ("kto", "apo_zero_unpaired")
# CPOConfig.loss_type choices for the CPO method (SimPO is its own method: loss "simpo", no NLL term).
CPO_LOSS_TYPES: tuple[str, ...] = ("sigmoid", "hinge", "ipo")
LOSS_TYPES: dict[str, tuple[str, ...]] = {
    "dpo": DPO_LOSS_TYPES, "kto": KTO_LOSS_TYPES, "cpo": CPO_LOSS_TYPES, "simpo": ("simpo",), "orpo": ("orpo",),
    "sft": ("nll",), "reward": ("bradley_terry",), "grpo": ("dapo", "grpo", "dr_grpo", "bnpo"), "rloo": ("rloo",),
}
DEFAULT_LOSS_TYPES: dict[str, str] = {
    "dpo": "sigmoid", "kto": "kto", "cpo": "sigmoid", "simpo": "simpo", "orpo": "orpo", "sft": "nll",
    "reward": "bradley_terry", "grpo": "dapo", "rloo": "rloo",
}

# Names PEFT would wrap with LoRA that must never be adapted: TRL computes log-probabilities from
# lm_head.weight directly, so an adapter there is silently untrained (TRL raises on it).
FORBIDDEN_LORA_TARGETS: frozenset[str] = frozenset({"lm_head", "embed_tokens"})
