from tests.review.conftest import tiny_adapter_dir  # noqa: F401 - the review tests' tiny LoRA adapter, a fixture
from tests.review.test_reward_scores import reward_output_dir  # noqa: F401 - a tiny trained reward model, a fixture
