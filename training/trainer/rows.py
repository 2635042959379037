"""Training rows in TRL's conversational format: validation, hashing, splitting, KTO class weights.

DPO row: {"prompt": [messages...], "chosen": [assistant message], "rejected": [assistant message]}
KTO row: {"prompt": [messages...], "completion": [assistant message], "label": bool}
Prompt row (online RL): {"prompt": [messages...]}: the policy writes the answers itself.
A message is {"role": "system" | "user" | "assistant", "content": str}.

Named `rows` rather than `datasets` so it never shadows the Hugging Face `datasets` package.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

ROLES = ("system", "user", "assistant")
DPO_KEYS = ("prompt", "chosen", "rejected")
KTO_KEYS = ("prompt", "completion", "label")
SFT_KEYS = ("prompt", "completion")
PROMPT_KEYS = ("prompt",)
# Online RL methods (training.trainer.config.RL_METHODS, not imported: rows stays below config).
_PROMPT_METHODS = ("grpo", "rloo")

# TRL's recommended band for (desirable_weight * n_desirable) / (undesirable_weight * n_undesirable),
# Eq. (8) of the KTO paper. We aim inside it rather than at an edge so that TRL's own check, which
# rounds to two decimals, agrees.
KTO_RATIO_LOW, KTO_RATIO_HIGH = 1.0, 4.0 / 3.0
KTO_RATIO_TARGET = 1.15


class RowsError(ValueError):
    """Rows that cannot be trained on; the message names the first offending row."""


def _check_messages(value: Any, *, where: str, last_role: str | None = None) -> None:
    if not isinstance(value, list) or not value:
        raise RowsError(f"{where} must be a non-empty list of messages, got {type(value).__name__}.")
    for i, message in enumerate(value):
        if not isinstance(message, dict):
            raise RowsError(f"{where}[{i}] must be a message object, got {type(message).__name__}.")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise RowsError(f"{where}[{i}] has role {role!r}; expected one of {', '.join(ROLES)}.")
        if not isinstance(content, str):
            raise RowsError(f"{where}[{i}] content must be text, got {type(content).__name__}.")
    if last_role is not None and value[-1]["role"] != last_role:
        raise RowsError(f"{where} must end with a {last_role!r} message, but ends with {value[-1]['role']!r}.")


def _check_completion(value: Any, *, where: str) -> None:
    _check_messages(value, where=where)
    if [m["role"] for m in value] != ["assistant"] * len(value):
        raise RowsError(f"{where} must contain only assistant messages.")
    if not "".join(m["content"] for m in value).strip():
        raise RowsError(f"{where} is empty: an empty completion teaches nothing.")


def _rows_with_keys(rows: Any, keys: tuple[str, ...], kind: str) -> list[tuple[int, dict[str, Any]]]:
    """(index, row) for each row, once every row is an object with `keys` and a user prompt; RowsError if not."""
    if not isinstance(rows, list):
        raise RowsError(f"{kind} rows must be a list, got {type(rows).__name__}.")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise RowsError(f"Row {i} must be an object, got {type(row).__name__}.")
        missing = [k for k in keys if k not in row]
        if missing:
            raise RowsError(f"Row {i} is not {'an' if kind[0] in 'AEIOSU' else 'a'} {kind} row: missing {', '.join(missing)} (has {', '.join(sorted(row))}).")
        _check_messages(row["prompt"], where=f"Row {i} prompt", last_role="user")
    return list(enumerate(rows))


def validate_dpo_rows(rows: list[dict[str, Any]]) -> None:
    """Raise RowsError unless `rows` is a list of at least 2 well-formed DPO rows."""
    for i, row in _rows_with_keys(rows, DPO_KEYS, "DPO"):
        _check_completion(row["chosen"], where=f"Row {i} chosen")
        _check_completion(row["rejected"], where=f"Row {i} rejected")
        if row["chosen"] == row["rejected"]:
            raise RowsError(f"Row {i} has identical chosen and rejected completions: it carries no preference.")
    if len(rows) < 2:
        raise RowsError(f"DPO needs at least 2 preference pairs, got {len(rows)}.")


def validate_kto_rows(rows: list[dict[str, Any]]) -> None:
    """Raise RowsError unless `rows` are well-formed KTO rows with both labels present."""
    for i, row in _rows_with_keys(rows, KTO_KEYS, "KTO"):
        _check_completion(row["completion"], where=f"Row {i} completion")
        if not isinstance(row["label"], bool):
            raise RowsError(f"Row {i} label must be true or false, got {row['label']!r}.")
    desirable, undesirable = count_kto_labels(rows)
    if desirable == 0 or undesirable == 0:
        raise RowsError(
            f"KTO needs both thumbs-up and thumbs-down examples; got {desirable} desirable and "
            f"{undesirable} undesirable."
        )


def validate_sft_rows(rows: list[dict[str, Any]]) -> None:
    """Raise RowsError unless `rows` are prompt-completion rows (an answer to imitate per prompt)."""
    for i, row in _rows_with_keys(rows, SFT_KEYS, "SFT"):
        _check_completion(row["completion"], where=f"Row {i} completion")


def validate_prompt_rows(rows: list[dict[str, Any]]) -> None:
    """Raise RowsError unless `rows` are at least 2 prompts, each a conversation ending with the user's turn."""
    _rows_with_keys(rows, PROMPT_KEYS, "prompt")
    if len(rows) < 2:
        raise RowsError(f"Online RL needs at least 2 prompts to write answers to, got {len(rows)}.")


def sft_rows_from(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Supervised rows from preference data: each pair's chosen answer, each thumbs-up answer (thumbs-down
    answers are left out: SFT imitates, it has no way to learn what not to say)."""
    made = []
    for row in rows:
        if "chosen" in row:
            made.append({"prompt": row["prompt"], "completion": row["chosen"]})
        elif row.get("label") is True:
            made.append({"prompt": row["prompt"], "completion": row["completion"]})
    return made


def rows_format(method: str) -> str:
    """The rows a method trains on: "dpo" (preference pairs: DPO, SimPO, CPO, ORPO and the reward model), "kto"
    (thumbs) or "sft" (an answer to imitate per prompt)."""
    if method == "kto":
        return "kto"
    if method == "sft":
        return "sft"
    if method in _PROMPT_METHODS:
        return "prompt"
    if method in ("dpo", "simpo", "cpo", "orpo", "reward"):
        return "dpo"
    raise RowsError(f"Unknown method {method!r}; expected one of dpo, kto, simpo, cpo, orpo, sft, reward, grpo, rloo.")


def validate_rows(rows: list[dict[str, Any]], method: str) -> None:
    """Validate rows for `method` (pairs for DPO, SimPO, CPO and ORPO; thumbs for KTO); raises RowsError."""
    fmt = rows_format(method)
    if fmt == "dpo":
        validate_dpo_rows(rows)
    elif fmt == "sft":
        validate_sft_rows(rows)
    elif fmt == "prompt":
        validate_prompt_rows(rows)
    else:
        validate_kto_rows(rows)


def rows_hash(rows: list[dict[str, Any]]) -> str:
    """Stable sha256 hex digest of the rows, independent of key order and Python version.

    Row order matters (it changes the split and the batches), so it is part of the hash.
    """
    canonical = json.dumps(rows, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def split_rows(
    rows: list[dict[str, Any]], *, validation_fraction: float, seed: int, method: str | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Deterministically split rows into (train, validation) by `seed`, whole prompts at a time.

    Every row of one prompt lands on the same side: a validation pair whose prompt was also trained on (another
    pair of the same prompt's answers) measures recall of that prompt more than what the model learned, and flatters
    the figure. Prompts are drawn in a seeded order and taken while they fit, so the validation split gets
    round(n * fraction) rows when the prompts' sizes allow (a little fewer otherwise), but never so many that
    training would lose what it needs: at least 2 training rows, and for KTO ("method") both labels kept in
    training. A fraction of 0, too few rows, or a single prompt gives an empty validation split.
    """
    if not 0 <= validation_fraction <= 0.5:
        raise RowsError(f"Validation fraction must be between 0 and 0.5, got {validation_fraction!r}.")
    groups: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        groups.setdefault(prompt_key(row), []).append(index)
    order = list(groups.values())
    random.Random(seed).shuffle(order)
    wanted = min(round(len(rows) * validation_fraction), max(len(rows) - 2, 0))
    val_idx: set[int] = set()
    while wanted > 0 and len(order) > 1:
        val_idx = set()
        for group in order:
            if len(val_idx) + len(group) <= wanted and len(val_idx) + len(group) < len(rows):
                val_idx.update(group)
            if len(val_idx) == wanted:
                break
        train = [rows[i] for i in range(len(rows)) if i not in val_idx]
        if method != "kto" or all(c > 0 for c in count_kto_labels(train)):
            break
        wanted -= 1
        val_idx = set()
    # Keep the original order within each split so a split is easy to read next to its source.
    train = [rows[i] for i in range(len(rows)) if i not in val_idx]
    validation = [rows[i] for i in range(len(rows)) if i in val_idx]
    return train, validation


def prompt_key(row: dict[str, Any]) -> str:
    """The identity of a row's prompt (its messages), for keeping one prompt's rows together."""
    return json.dumps(row.get("prompt"), sort_keys=True, ensure_ascii=False)


def count_kto_labels(rows: list[dict[str, Any]]) -> tuple[int, int]:
    """(desirable, undesirable) counts."""
    desirable = sum(1 for row in rows if row.get("label") is True)
    return desirable, len(rows) - desirable


def kto_weight_ratio(n_desirable: int, n_undesirable: int, desirable_weight: float, undesirable_weight: float) -> float:
    """(desirable_weight * n_desirable) / (undesirable_weight * n_undesirable): TRL wants it in [1, 4/3]."""
    return (desirable_weight * n_desirable) / (undesirable_weight * n_undesirable)


def kto_class_weights(rows: list[dict[str, Any]]) -> tuple[float, float]:
    """(desirable_weight, undesirable_weight) that bring the weighted ratio into TRL's 1:1–4:3 band.

    The majority class keeps weight 1.0 and the minority one is scaled up (or, when desirable
    examples dominate, the undesirable weight is raised), so the loss scale stays close to plain KTO.
    """
    n_des, n_und = count_kto_labels(rows)
    if n_des == 0 or n_und == 0:
        raise RowsError(f"KTO needs both labels; got {n_des} desirable and {n_und} undesirable.")
    if KTO_RATIO_LOW <= n_des / n_und <= KTO_RATIO_HIGH:
        return 1.0, 1.0
    if n_des < n_und:
        # Raise the desirable weight: w * n_des / n_und = target.
        return round(KTO_RATIO_TARGET * n_und / n_des, 2), 1.0
    # Desirable dominates: raise the undesirable weight so n_des / (w * n_und) = target.
    return 1.0, round(n_des / (KTO_RATIO_TARGET * n_und), 2)
