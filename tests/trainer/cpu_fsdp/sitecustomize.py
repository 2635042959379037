"""Test-only: let accelerate shard a model across CPU processes, so the FSDP path runs where there is no GPU.

accelerate 1.15 turns its FSDP plugin on only for accelerator devices: on CPU processes `AcceleratorState` keeps the
distributed type MULTI_CPU and drops the plugin, and the Trainer then trains a whole copy per process (the trainer
refuses such a run). torch's FSDP2 itself shards over gloo on CPU. This lifts accelerate's one gate, and nothing
else, in the trainer processes of tests/trainer/test_data_parallel.py: Python imports `sitecustomize` at start-up
from PYTHONPATH, and only those tests put this folder there.
"""

from __future__ import annotations

import os

if os.environ.get("RANK") is not None:  # the ranks, not torch's launcher
    import accelerate
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType

    _accelerator_init = accelerate.Accelerator.__init__

    def _init_sharding_on_cpu(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        _accelerator_init(self, *args, **kwargs)
        plugin = kwargs.get("fsdp_plugin")
        if plugin is not None and self.state.distributed_type == DistributedType.MULTI_CPU:
            # Both shared states: a later AcceleratorState() copies PartialState's type back over its own.
            PartialState._shared_state["distributed_type"] = DistributedType.FSDP
            self.state.distributed_type = DistributedType.FSDP
            self.state.fsdp_plugin = plugin

    accelerate.Accelerator.__init__ = _init_sharding_on_cpu
