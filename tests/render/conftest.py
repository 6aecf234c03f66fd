import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from backend.render import available_backends


@pytest.fixture(params=available_backends())
def backend_name(request: pytest.FixtureRequest) -> str:
    """Every rasterizer importable here (cpu and torch_ref always; GPU ones with CUDA)."""
    return request.param
