"""An online RL run handed back part-way (a worker shutting down) and resumed from its checkpoint carries its
reward-hacking watch on: the reference and the evaluations before the checkpoint are the earlier attempt's, not
made again, and the kept adapter can be one the earlier attempt evaluated. Tiny model, trainer core, no Django."""
from __future__ import annotations

from types import SimpleNamespace

from tests.online_rl.conftest import _train_reward_adapter
from training.trainer.checkpoints import latest_checkpoint
from training.trainer.config import TrainSettings
from training.trainer.online import train_online

ROWS = [{"prompt": [{"role": "user", "content": f"Tell me about topic {n}."}]} for n in range(8)]


def _settings(reward_adapter: str) -> TrainSettings:
    return TrainSettings.from_dict({
        "method": "grpo", "max_steps": 4, "eval_steps": 1, "save_steps": 100, "num_generations": 2,
        "per_device_batch_size": 4, "max_completion_length": 8, "learning_rate": 1e-3, "beta": 0.2,
        "validation_fraction": 0.25, "reward_adapter": reward_adapter,
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
    })


def _trained(events: list, steps: int) -> bool:
    return any(e.kind == "train" and e.step >= steps for e in events)


def _watch_events(events: list) -> list[dict]:
    return [e.details for e in events if e.details and ("watch_point" in e.details or "watch_restored" in e.details)]


def test_a_resumed_rl_run_keeps_the_watch_of_the_attempt_before_it(tiny_model_dir, tmp_path):
    reward = _train_reward_adapter(SimpleNamespace(path=str(tiny_model_dir)), tmp_path / "reward")
    settings = _settings(str(reward))
    first_events, second_events = [], []

    # Given an attempt handed back after its second step (the checkpoint there exists only because of the pause)
    first = train_online(
        model_path=str(tiny_model_dir), rows=ROWS, settings=settings, output_dir=str(tmp_path / "attempt-1"),
        progress=first_events.append, should_pause=lambda: _trained(first_events, 2),
    )
    paused_at = first.steps
    assert first.paused and paused_at in (2, 3)
    earlier = _watch_events(first_events)
    assert earlier[0]["reference"] and not any(d["reference"] for d in earlier[1:])
    evaluated = [d["watch_point"] for d in earlier[1:]]
    assert [p["step"] for p in evaluated] == [1, 2]
    checkpoint = latest_checkpoint(tmp_path / "attempt-1")
    assert checkpoint.endswith(f"checkpoint-{paused_at}")

    # When the next attempt resumes from it
    second = train_online(
        model_path=str(tiny_model_dir), rows=ROWS, settings=settings, output_dir=str(tmp_path / "attempt-2"),
        progress=second_events.append, resume_from_checkpoint=checkpoint,
    )

    # Then it starts from the earlier attempt's watch, tells the run page so, and evaluates only the steps it trains
    later = _watch_events(second_events)
    assert later[0]["watch_restored"] == {"base": earlier[0]["watch_point"], "points": evaluated}
    resumed_steps = list(range(paused_at + 1, 5))
    assert [d["watch_point"]["step"] for d in later[1:]] == resumed_steps and not any(d["reference"] for d in later[1:])
    # And its outcome holds the whole watch, the earlier evaluations unchanged
    watch = second.outcome["watch"]
    assert watch["base"] == earlier[0]["watch_point"]
    assert watch["points"][:2] == evaluated and [p["step"] for p in watch["points"][2:]] == resumed_steps
    assert second.outcome["evaluations"] == 2 + len(resumed_steps)
    assert (tmp_path / "attempt-2" / "adapter" / "adapter_model.safetensors").is_file()


def test_a_resume_from_an_attempt_that_kept_no_watch_starts_the_watch_over(tiny_model_dir, tmp_path):
    reward = _train_reward_adapter(SimpleNamespace(path=str(tiny_model_dir)), tmp_path / "reward")
    settings = _settings(str(reward))
    first_events, second_events = [], []
    train_online(
        model_path=str(tiny_model_dir), rows=ROWS, settings=settings, output_dir=str(tmp_path / "attempt-1"),
        progress=first_events.append, should_pause=lambda: _trained(first_events, 2),
    )
    (tmp_path / "attempt-1" / "watch" / "watch.json").unlink()  # as an attempt from before the watch was kept

    second = train_online(
        model_path=str(tiny_model_dir), rows=ROWS, settings=settings, output_dir=str(tmp_path / "attempt-2"),
        progress=second_events.append, resume_from_checkpoint=latest_checkpoint(tmp_path / "attempt-1"),
    )

    later = _watch_events(second_events)
    resumed_from = int(latest_checkpoint(tmp_path / "attempt-1").rsplit("-", 1)[1])
    resumed_steps = list(range(resumed_from + 1, 5))
    assert [(d["watch_point"]["step"], d["reference"]) for d in later] == [(0, True)] + [(s, False) for s in resumed_steps]
    assert [p["step"] for p in second.outcome["watch"]["points"]] == resumed_steps
