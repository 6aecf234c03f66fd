"""Job contracts (protocol/kinds.py): parsing, errors naming the field, the spec copy in
docs/protocol.md, and no param name spelled as a string literal in the add-on."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from protocol import kinds
from protocol.kinds import KINDS, ParamError, parse

REPO = Path(__file__).resolve().parents[2]


def _error(kind: str, params: dict) -> ParamError:
    with pytest.raises(ParamError) as err:
        parse(kind, params)
    return err.value


def test_defaults_fill_a_typed_params_object() -> None:
    p = parse("body.preview", {"size": "64x32", "motion": "walk"})
    assert type(p).__name__ == "BodyPreviewParams"
    assert p.size == (64, 32) and p.motion == "walk" and p.cameras == "orbit:8" and p.mp4 is True
    assert p.passes == ["rgb", "mask", "depth", "normal", "pose"] and p.betas is None
    p.passes.append("x")  # a job's copy: the contract's default stays as declared
    assert parse("body.preview", {}).passes == ["rgb", "mask", "depth", "normal", "pose"]
    a = parse("avatar.from_views", {"synthetic": {}})
    assert a.synthetic == {"shape": "average", "resolution": 512, "skirt": True, "hair": True}
    assert (a.grid, a.init_iters, a.refine_iters, a.views) == (64, 100, 160, None)


@pytest.mark.parametrize(
    "kind, params, message",
    [
        ("body.preview", {"size": [0, 5]}, "params.size[0]: must be an int in [1, 4096], got 0"),
        ("body.preview", {"size": "64x5000"}, "params.size[1]: must be an int in [1, 4096], got 5000"),
        ("system.sleep", {"seconds": float("inf")}, "params.seconds: must be a number in [0, 3600], got inf"),
        ("system.sleep", {"seconds": True}, "params.seconds: must be a number in [0, 3600], got True"),
        ("system.sleep", {"model_path": "/x"}, "params.model_path: unknown field; known: "),
        ("body.mesh", {"model_path": "/x/SMPLX_NEUTRAL.pkl"}, "params.model_path: unknown field"),
        ("avatar.from_views", {"synthetic": {}, "body_model_path": "/x"}, "params.body_model_path: unknown"),
        ("body.mesh", {"gender": "robot"}, "params.gender: must be one of neutral, male, female"),
        ("body.mesh", {"motion": "/srv/SMPLX_NEUTRAL.pkl"}, "params.motion: must be"),
        ("body.mesh", {"motion": "walk", "pose": {"global_orient": [[0, 0, 0]]}}, "params.pose: give either"),
        ("body.mesh", {"motion": {"poses": np.zeros((2, 165))}}, "params.motion.trans: required"),
        ("body.mesh", {"pose": {"global_orient": np.zeros((2, 3)), "body_pose": np.zeros((3, 63))}},
         "params.pose.body_pose: F = 3 here but 2 in another field"),
        ("body.mesh", {"pose": {"global_orient": [[0, 0, float("nan")]]}}, "params.pose.global_orient: must"),
        ("body.mesh", {"betas": np.zeros(301)}, "params.betas: axis 0 (B) must be in [1, 300], got 301"),
        ("body.mesh", {"betas": np.array(["a"])}, "params.betas: must be array (B,) float32"),
        ("body.preview", {"cameras": {"K": np.zeros((1, 3, 3))}}, "params.cameras.R: required"),
        ("body.preview", {"cameras": "orbit:0"}, "params.cameras: must be"),
        ("body.preview", {"passes": ["rgb", "x"]}, "params.passes[1]: must be one of rgb, mask"),
        ("avatar.from_views", {}, "params.views: give exactly one of views, synthetic"),
        ("avatar.from_views", {"synthetic": {"shape": "round"}}, "params.synthetic.shape: must be one of"),
        ("avatar.from_views", {"synthetic": {}, "grid": 4}, "params.grid: must be an int in [8, 512], got 4"),
    ],
)
def test_errors_name_the_field(kind: str, params: dict, message: str) -> None:
    assert str(_error(kind, params)).startswith(message)


def test_path_hook_sees_every_path_param() -> None:
    seen = []

    def hook(value: str, where: str, param: kinds.PathParam) -> str:
        seen.append((value, where, param.kind))
        return f"resolved:{value}"

    assert parse("body.mesh", {"motion": "/a/clip.BVH"}, hook).motion == "resolved:/a/clip.BVH"
    assert parse("avatar.from_views", {"views": "/v"}, hook).views == "resolved:/v"
    assert seen == [("/a/clip.BVH", "params.motion", "file"), ("/v", "params.views", "dir")]


def test_names_catch_typos() -> None:
    assert kinds.names("body.mesh").betas == "betas"
    assert kinds.names(kinds.SMPLX_POSE).global_orient == "global_orient"
    with pytest.raises(AttributeError):
        _ = kinds.names("body.mesh").model_path


def test_result_names_are_the_declared_arrays_only() -> None:
    body = kinds.result_names("body.mesh")
    assert body.rest_vertices == "rest_vertices" and body.joint_transforms == "joint_transforms"
    for kind, c in KINDS.items():
        for array in c.result.arrays:
            assert getattr(kinds.result_names(kind), array.name) == array.name
    with pytest.raises(AttributeError, match="result array"):
        _ = body.rest_joints  # an alias the add-on once guessed; not in the contract
    with pytest.raises(AttributeError):
        _ = kinds.result_names("body.mesh").betas  # a param, not a result array


def test_describe_every_kind() -> None:
    for kind in KINDS:
        text = kinds.describe(kind)
        assert text.startswith(f"{kind}: ") and "params:" in text and "result:" in text
    mesh = kinds.describe("body.mesh")
    assert "array faces              (F, 3) int32" in mesh and "array parents            (55,) int32" in mesh
    assert "gender         \"neutral\" | \"male\" | \"female\"; default \"neutral\"" in mesh


def test_protocol_md_holds_the_generated_kinds_section() -> None:
    text = (REPO / "docs" / "protocol.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- kinds:begin -->\n(.*?)<!-- kinds:end -->", text, re.S)
    assert match is not None, "docs/protocol.md lacks the <!-- kinds:begin/end --> section"
    assert match.group(1) == kinds.spec_markdown(), "regenerate: python -m protocol.kinds"


def test_protocol_version_is_stated_once() -> None:
    """The package docstring, the README and the spec state the code's protocol version."""
    from protocol import PROTOCOL_VERSION

    init = (REPO / "protocol" / "__init__.py").read_text(encoding="utf-8")
    assert set(re.findall(r"protocol v(\d+\.\d+)", init)) == {PROTOCOL_VERSION}
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    row = next(line for line in readme.splitlines() if line.startswith("| `protocol/`"))
    assert set(re.findall(r"\bv(\d+\.\d+)", row)) == {PROTOCOL_VERSION}
    spec = (REPO / "docs" / "protocol.md").read_text(encoding="utf-8").splitlines()[0]
    assert spec.endswith(f"version {PROTOCOL_VERSION}")


# --- the add-on builds params from the contracts ---------------------------------------------------


def _param_names() -> set[str]:
    names = {p.name for c in KINDS.values() for p in c.params}
    return names | {p.name for p in kinds.SYNTHETIC.fields}


def _keyed_literals(tree: ast.AST) -> list[ast.Constant]:
    """String constants used as a key: in a dict display, a subscript, ``x.get/pop/setdefault(K)``,
    or ``K in x``. Such a literal equal to a param name spells a param the contract owns."""
    found: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            found += [k for k in node.keys if k is not None]
        elif isinstance(node, ast.Subscript):
            found.append(node.slice)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("get", "pop", "setdefault")
            and node.args
        ):
            found.append(node.args[0])
        elif isinstance(node, ast.Compare) and any(isinstance(op, ast.In | ast.NotIn) for op in node.ops):
            found.append(node.left)
    return [n for n in found if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def test_no_param_name_literal_in_the_addon() -> None:
    names = _param_names()
    offenders = []
    for path in sorted((REPO / "blender_addon").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        offenders += [
            f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}"
            for node in _keyed_literals(tree)
            if node.value in names
        ]
    assert not offenders, "use protocol.kinds.names(KIND).<param>:\n" + "\n".join(offenders)


def test_the_scan_finds_a_planted_literal() -> None:
    tree = ast.parse('params = {"betas": [0.0]}\nx = params["motion"]\ny = p.get("views")\nz = "grid" in p\n')
    assert [n.value for n in _keyed_literals(tree)] == ["betas", "motion", "views", "grid"]


def test_check_result_reports_what_breaks_the_contract() -> None:
    good = {"ticks": np.arange(3, dtype=np.float32)}
    assert kinds.check_result("system.sleep", {}, good) == []
    bad = kinds.check_result("system.sleep", {}, {"ticks": np.arange(3), "extra": np.zeros(1)})
    assert any("'extra' is not in the contract" in p for p in bad)
    assert any("'ticks' is int64, the contract says float32" in p for p in bad)
    mesh = kinds.check_result("body.mesh", {}, {"faces": np.zeros((4, 3), np.int32)})
    assert "array 'rest_vertices' is missing" in mesh
