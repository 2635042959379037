"""Generation backends (issue 11, fast generation): which engine runs, vLLM's requests and outputs in the app's
format, and the transformers fallback. All on CPU, with no vllm installed: vLLM's engine is a stand-in with the
same generate() and result attributes, so these test our side of the conversion, not vLLM. The real engine is
tested on a GPU in tests/trainer/test_vllm_cuda.py."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field

import pytest
import torch
from transformers import AutoTokenizer, GenerationConfig

from training.base_models import random_lora_adapter
from training.trainer import generation_backends as backends
from training.trainer.generation import FINISH_LENGTH, FINISH_STOP, load_for_generation, prompt_token_ids
from training.trainer.generation_backends import GenerationBackendError, SampleRequest, resolve_backend
from training.trainer.generation_settings import GenerationSettings, without_provenance
from training.trainer.version_generation import generate_for_versions
from training.trainer.vllm_backend import (
    VllmBackend,
    adapter_rank,
    max_lora_rank,
    outputs_from_vllm,
    read_adapter_rank,
    sampling_kwargs,
)

PROMPTS = [
    [{"role": "user", "content": "Say hello."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Count to three."}],
]


@pytest.fixture(scope="module")
def adapter(tiny_model_dir, tmp_path_factory):
    return str(random_lora_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapters") / "one", seed=1, scale=20.0))


# ---------------------------------------------------------------- which backend runs


def test_auto_generates_with_transformers_where_vllm_cannot_run(monkeypatch):
    monkeypatch.setattr(backends, "vllm_unavailable_reason", lambda **_: "no CUDA GPU is visible to this process")

    assert resolve_backend("auto") == "transformers"
    assert resolve_backend("transformers") == "transformers"


def test_auto_is_vllm_where_vllm_can_run_and_transformers_can_still_be_asked_for(monkeypatch):
    monkeypatch.setattr(backends, "vllm_unavailable_reason", lambda **_: None)

    assert resolve_backend("auto") == "vllm"
    assert resolve_backend("vllm") == "vllm"
    assert resolve_backend("transformers") == "transformers"


def test_vllm_asked_for_where_it_cannot_run_is_refused_with_the_reason(monkeypatch):
    monkeypatch.setattr(backends, "vllm_unavailable_reason", lambda **_: "the vllm package is not installed")

    with pytest.raises(GenerationBackendError) as refused:
        resolve_backend("vllm")

    message = str(refused.value)
    assert "vLLM generation backend was asked for" in message and "the vllm package is not installed" in message
    assert "'auto'" in message and "'transformers'" in message, "it says what to ask for instead"


def test_on_the_cpu_the_real_check_never_picks_vllm_and_refuses_it_by_name():
    assert resolve_backend("auto", device="cpu") == "transformers"
    with pytest.raises(GenerationBackendError, match="CUDA GPUs only"):
        resolve_backend("vllm", device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_auto_falls_back_and_vllm_is_refused():
    assert "no CUDA GPU" in backends.vllm_unavailable_reason()
    assert resolve_backend("auto") == "transformers"
    with pytest.raises(GenerationBackendError, match="no CUDA GPU is visible"):
        resolve_backend("vllm")


def test_vllm_not_installed_is_the_reason_given_on_a_cuda_machine(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real_find_spec(name, *a))

    assert "vllm package is not installed" in backends.vllm_unavailable_reason()
    assert resolve_backend("auto") == "transformers"


def test_vllm_is_kept_in_the_worker_process_unless_the_environment_says_otherwise(monkeypatch):
    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING", raising=False)
    monkeypatch.setenv("VLLM_NO_USAGE_STATS", "0")

    backends.prepare_vllm_environment()

    # Celery's prefork workers are daemonic and may not start the engine-core child vLLM starts by default.
    assert os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0"
    assert os.environ["VLLM_NO_USAGE_STATS"] == "0", "a value already set is left as it is"


def test_an_unknown_backend_is_refused():
    with pytest.raises(GenerationBackendError, match="Unknown generation backend 'fast'"):
        resolve_backend("fast")


def test_a_refused_backend_stops_generation_before_any_model_is_loaded(tiny_model_dir, monkeypatch):
    from training.trainer import generation

    def must_not_load(*args, **kwargs):
        raise AssertionError("a model was loaded for a backend that cannot run")

    monkeypatch.setattr(generation, "load_for_generation", must_not_load)

    with pytest.raises(GenerationBackendError, match="CUDA GPUs only"):
        generate_for_versions(str(tiny_model_dir), {"base": None}, PROMPTS, GenerationSettings(), device="cpu", backend="vllm")


# ---------------------------------------------------------------- the transformers fallback


def test_auto_on_the_cpu_gives_what_the_transformers_path_gives_in_the_same_format(tiny_model_dir, adapter):
    settings = GenerationSettings(temperature=1.0, top_p=1.0, max_new_tokens=4, seed=2, n=2)
    versions = {"base": None, "one": adapter}
    auto_batches, plain_batches = [], []

    auto = generate_for_versions(
        str(tiny_model_dir), versions, PROMPTS, settings, batch_size=2, device="cpu", backend="auto",
        on_batch_done=lambda *a: auto_batches.append(a),
    )
    plain = generate_for_versions(
        str(tiny_model_dir), versions, PROMPTS, settings, batch_size=2, on_batch_done=lambda *a: plain_batches.append(a),
    )

    assert auto == plain and auto_batches == plain_batches
    assert set(auto) == {"base", "one"}
    assert all(len(samples) == 2 and all(isinstance(t, str) and t for t in samples) for samples in auto["base"])
    assert [(name, indices, k) for name, indices, k, _, _ in auto_batches] == [
        ("base", [0, 1], 0), ("base", [0, 1], 1), ("one", [0, 1], 0), ("one", [0, 1], 1),
    ]
    assert all(reasons == ["length", "length"] for *_, reasons in auto_batches), "a random model never ends in 4 tokens"
    assert auto["one"] != auto["base"], "the adapter is switched on for its version"


# ---------------------------------------------------------------- what is recorded


def test_the_recorded_settings_name_the_backend_and_the_keys_ignore_it():
    settings = GenerationSettings(temperature=0.7, top_p=0.9, max_new_tokens=16, seed=4, n=2)

    recorded = settings.for_sample(1, backend="vllm")

    assert recorded == {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 16, "seed": 4, "sample": 1, "backend": "vllm"}
    assert settings.for_sample(1, backend="transformers")["backend"] == "transformers"
    assert without_provenance(recorded) == settings.for_sample(1) == without_provenance(settings.for_sample(1))


# ---------------------------------------------------------------- vLLM's engine settings


def test_max_lora_rank_is_the_smallest_rank_vllm_serves_that_holds_every_adapter():
    assert max_lora_rank([4]) == 8
    assert max_lora_rank([8]) == 8
    assert max_lora_rank([16, 9]) == 16
    assert max_lora_rank([33]) == 64
    assert max_lora_rank([300]) == 320
    with pytest.raises(GenerationBackendError, match="up to rank 512"):
        max_lora_rank([513])


def test_the_adapter_rank_is_read_from_its_config_rank_pattern_included(tiny_model_dir, tmp_path):
    assert adapter_rank({"r": 8, "rank_pattern": {"q_proj": 32}}) == 32
    assert adapter_rank({"r": 16}) == 16
    with pytest.raises(GenerationBackendError, match="positive whole number"):
        adapter_rank({"r": 0})

    saved = random_lora_adapter(tiny_model_dir, tmp_path / "r4", r=4)

    assert read_adapter_rank(str(saved)) == 4
    with pytest.raises(GenerationBackendError, match="not a saved LoRA adapter"):
        read_adapter_rank(str(tmp_path))


def test_vllm_samples_with_the_knobs_transformers_applies_without_being_asked(tiny_model_dir):
    model, tokenizer = load_for_generation(str(tiny_model_dir))
    request = SampleRequest(version="base", prompts=PROMPTS, max_new_tokens=12, temperature=0.7, top_p=0.9, seed=5)

    kwargs = sampling_kwargs(request, model.generation_config, {2, 7})

    # What transformers' generate() resolves for the same call (its private step, on the pinned version).
    resolved, _ = model._prepare_generation_config(None, do_sample=True, temperature=0.7, top_p=0.9, max_new_tokens=12)
    assert kwargs == {
        "n": 1, "temperature": 0.7, "top_p": 0.9, "max_tokens": 12, "seed": 5, "stop_token_ids": [2, 7],
        "skip_special_tokens": True, "repetition_penalty": resolved.repetition_penalty, "top_k": resolved.top_k,
    }
    assert resolved.top_k == 50


def test_a_model_generation_config_carries_over_and_greedy_ignores_the_sampling_knobs():
    config = GenerationConfig(top_k=20, repetition_penalty=1.1, min_p=0.05)
    sampled = SampleRequest(version="base", prompts=PROMPTS, max_new_tokens=8, temperature=1.0, top_p=0.8, seed=0)
    greedy = SampleRequest(version="base", prompts=PROMPTS, max_new_tokens=8, temperature=0.0, top_p=0.8, seed=0)

    assert sampling_kwargs(sampled, config, [])["top_k"] == 20
    assert sampling_kwargs(sampled, config, [])["min_p"] == 0.05
    assert sampling_kwargs(sampled, config, [])["repetition_penalty"] == 1.1
    plain = sampling_kwargs(greedy, config, [])
    assert plain["temperature"] == 0.0 and plain["top_p"] == 1.0 and "top_k" not in plain and "min_p" not in plain
    assert plain["repetition_penalty"] == 1.1, "transformers applies it to greedy decoding too"


# ---------------------------------------------------------------- vLLM's results in the app's format


@dataclass
class FakeCompletionOutput:
    """The attributes of vllm.outputs.CompletionOutput."""

    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None = None
    logprobs: None = None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class FakeRequestOutput:
    """The attributes of vllm.outputs.RequestOutput that a generate() call returns."""

    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    outputs: list[FakeCompletionOutput] = field(default_factory=list)
    finished: bool = True


def _completion(tokenizer, text: str, *, ended: bool) -> FakeCompletionOutput:
    ids = tokenizer.encode(text, add_special_tokens=False)
    return FakeCompletionOutput(
        index=0, text="(vLLM's own detokenized text, not used)", token_ids=ids + ([tokenizer.eos_token_id] if ended else []),
        finish_reason="stop" if ended else "length",
    )


def test_vllm_results_become_the_apps_outputs_decoded_as_transformers_decodes(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    results = [
        FakeRequestOutput("0", None, [1, 2], [_completion(tokenizer, " Hello there.", ended=True)]),
        FakeRequestOutput("1", None, [1, 2], [_completion(tokenizer, "One, two, thr", ended=False)]),
    ]

    outputs = outputs_from_vllm(results, lambda ids: tokenizer.decode(ids, skip_special_tokens=True))

    assert [(o.text, o.finish_reason, o.is_truncated) for o in outputs] == [
        ("Hello there.", FINISH_STOP, False),
        ("One, two, thr", FINISH_LENGTH, True),
    ]


@pytest.mark.parametrize("reason", [None, "abort"])
def test_a_vllm_result_neither_ended_nor_cut_off_is_an_error(reason):
    result = FakeRequestOutput("0", None, [1], [FakeCompletionOutput(index=0, text="x", token_ids=[5], finish_reason=reason)])

    with pytest.raises(GenerationBackendError, match="only 'stop' and 'length'"):
        outputs_from_vllm([result], lambda ids: "x")


def test_a_vllm_result_with_more_than_one_completion_is_an_error():
    two = [FakeCompletionOutput(index=i, text="x", token_ids=[5], finish_reason="stop") for i in range(2)]

    with pytest.raises(GenerationBackendError, match="one completion per vLLM request"):
        outputs_from_vllm([FakeRequestOutput("0", None, [1], two)], lambda ids: "x")


class StandInLLM:
    """vllm.LLM's generate(), answering request i with "answer i", ended on odd i and cut off on even i."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.calls: list[dict] = []

    def generate(self, prompts, sampling_params, *, lora_request=None, use_tqdm=True):
        self.calls.append({"prompts": prompts, "params": sampling_params, "lora": lora_request, "use_tqdm": use_tqdm})
        return [
            FakeRequestOutput(str(i), None, p["prompt_token_ids"], [_completion(self.tokenizer, f"answer {i}", ended=i % 2 == 1)])
            for i, p in enumerate(prompts)
        ]


def test_one_vllm_call_carries_every_version_and_sample_each_with_its_adapter_and_seed(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    llm = StandInLLM(tokenizer)
    backend = VllmBackend(llm, tokenizer, GenerationConfig(), {"tuned": "LoRARequest(tuned)"}, make_sampling_params=dict)
    requests = [
        SampleRequest(version="base", prompts=PROMPTS, max_new_tokens=5, temperature=0.7, top_p=0.9, seed=3),
        SampleRequest(version="tuned", prompts=PROMPTS, max_new_tokens=5, temperature=0.7, top_p=0.9, seed=3),
        SampleRequest(version="tuned", prompts=PROMPTS, max_new_tokens=5, temperature=1.1, top_p=0.9, seed=4),
    ]

    per_request = list(backend.run(requests))

    [call] = llm.calls
    assert call["lora"] == [None, None, "LoRARequest(tuned)", "LoRARequest(tuned)", "LoRARequest(tuned)", "LoRARequest(tuned)"]
    assert [p["seed"] for p in call["params"]] == [3, 3, 3, 3, 4, 4]
    assert [p["temperature"] for p in call["params"]] == [0.7, 0.7, 0.7, 0.7, 1.1, 1.1]
    assert {p["max_tokens"] for p in call["params"]} == {5} and {p["n"] for p in call["params"]} == {1}
    assert call["prompts"] == [{"prompt_token_ids": prompt_token_ids(tokenizer, m)} for m in PROMPTS * 3]
    assert call["use_tqdm"] is False
    assert [[(o.text, o.finish_reason) for o in outputs] for outputs in per_request] == [
        [("answer 0", "length"), ("answer 1", "stop")],
        [("answer 2", "length"), ("answer 3", "stop")],
        [("answer 4", "length"), ("answer 5", "stop")],
    ]
    backend.close()
    assert backend.llm is None


def test_vllm_is_given_the_prompt_ids_the_transformers_path_feeds_its_model(tiny_model_dir):
    from training.trainer.generation import generate_outputs

    model, tokenizer = load_for_generation(str(tiny_model_dir))
    fed = []
    real_forward = model.forward

    def spy(*args, **kwargs):
        fed.append(kwargs["input_ids"][0].tolist())  # one token is 1 new token, a whole prompt is the first step
        return real_forward(*args, **kwargs)

    model.forward = spy
    for messages in PROMPTS:
        generate_outputs(model, tokenizer, [messages], max_new_tokens=1, temperature=0)

    assert fed == [prompt_token_ids(tokenizer, m) for m in PROMPTS]
