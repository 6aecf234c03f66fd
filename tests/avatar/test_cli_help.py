"""``avatar-studio avatar --help`` states the defaults the pipeline really runs."""

from __future__ import annotations

import argparse
import re

from backend.avatar.geometry.sculpt import SculptConfig
from backend.avatar.texture.optimise import TextureConfig
from backend.avatar.texture.uv_unwrap import UnwrapConfig
from backend.commands.avatar import register


def help_defaults() -> dict[str, str]:
    parser = argparse.ArgumentParser()
    avatar = register(parser.add_subparsers())
    found = {}
    for action in avatar._actions:
        match = re.search(r"\(default ([^)]+)\)", action.help or "")
        if match and action.option_strings:
            found[action.option_strings[0]] = match.group(1)
    return found


def test_help_defaults_are_the_configs_defaults() -> None:
    sculpt, texture = SculptConfig(), TextureConfig()
    assert help_defaults() == {
        "--grid": str(sculpt.grid_resolution),
        "--iters": str(sculpt.refine_iters),
        "--init-iters": str(sculpt.init_iters),
        "--texture-size": str(texture.texture_size),
        "--texture-iters": str(texture.iterations),
        "--unwrap": UnwrapConfig().method,
    }
