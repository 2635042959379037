from tests.review.conftest import tiny_adapter_dir  # noqa: F401 - the review tests' tiny LoRA adapter, a fixture
