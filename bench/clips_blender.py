"""Clips against Blender: the same clip frames and passes rendered the BlenderProc way, through bpy.

    .venv/bin/python bench/clips_blender.py [--size 512] [--frames 48] [--cycles-frames 4]

One run measures both sides on the same clip (``bench/clips.py``'s: one person walking, one
camera, 512x512): (a) ours, full ground truth written (``render_one``: RGB PNG, depth, normals,
instance/amodal masks, parts, keypoints, boxes, SMPL-X, COCO), best of 2; (b) Blender, in the
Blender environment (``.venv-blender``) in a subprocess, per frame: the posed body's vertices set
on the mesh (its BVH is rebuilt, as for any deforming character), the camera moved, one
``bpy.ops.render.render()`` with the Z, normal and object-index passes on (Cycles; Workbench has
Z only), the RGB written as PNG and every pass as one multilayer EXR, as BlenderProc writes them.
Both scenes have a ground plane and a shadow-casting key light (ours also its SH environment,
contact darkening and a background; Blender's world colour).
Cycles on the CPU (this machine has no GPU) at 64 samples (BlenderProc-style) and at 1 sample,
no denoising, no adaptive sampling; Workbench with vertex colours and studio light. The body's
vertex colours and the camera (K, R, t converted by ``protocol.cameras.blender_camera_from_opencv``)
are the same on both sides. Blender's timing excludes building the scene
and one warm-up frame; ours includes sampling, posing and every file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backend.body.loading import load_body_model  # noqa: E402
from backend.clips.dataset import render_one  # noqa: E402
from backend.clips.render import BACKGROUND  # noqa: E402
from backend.clips.sample import plan_clip  # noqa: E402
from backend.clips.spec import DEFAULT_PASSES, ClipSpec  # noqa: E402
from backend.render.bands import default_threads  # noqa: E402
from protocol.cameras import PROTOCOL_TO_BLENDER, blender_camera_from_opencv  # noqa: E402

BLENDER_SCRIPT = r"""
import json, sys, time
from pathlib import Path
import numpy as np
import bpy
from mathutils import Matrix

data = np.load(sys.argv[1])
setup = json.loads(Path(sys.argv[2]).read_text())
engine, samples, frames, out = sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), Path(sys.argv[6])
bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
verts, faces, colors = data["verts"], data["faces"], data["colors"]
mesh = bpy.data.meshes.new("body")
mesh.from_pydata(verts[0].tolist(), [], faces.tolist())
attr = mesh.color_attributes.new("Col", "FLOAT_COLOR", "POINT")
rgba = np.concatenate([colors, np.ones((len(colors), 1))], 1).astype(np.float32)
attr.data.foreach_set("color", rgba.ravel())
mat = bpy.data.materials.new("skin")  # Blender 5 materials and worlds come with node trees
node = mat.node_tree.nodes.new("ShaderNodeAttribute")
node.attribute_name = "Col"
bsdf = mat.node_tree.nodes["Principled BSDF"]
bsdf.inputs["Roughness"].default_value = 1.0
mat.node_tree.links.new(node.outputs["Color"], bsdf.inputs["Base Color"])
mesh.materials.append(mat)
body = bpy.data.objects.new("body", mesh)
body.pass_index = 1
scene.collection.objects.link(body)
cam_data = bpy.data.cameras.new("cam")
for key, value in setup["camera"].items():
    setattr(cam_data, key, value)
cam = bpy.data.objects.new("cam", cam_data)
scene.collection.objects.link(cam)
scene.camera = cam
# The scene around the body, as ours: a ground plane and a key light that casts shadows; the world
# colour lights the rest (our SH environment's counterpart).
ground = bpy.data.meshes.new("ground")
ground.from_pydata([(-20, -20, 0), (20, -20, 0), (20, 20, 0), (-20, 20, 0)], [], [(0, 1, 2, 3)])
scene.collection.objects.link(bpy.data.objects.new("ground", ground))
sun = bpy.data.objects.new("key", bpy.data.lights.new("key", "SUN"))
sun.data.energy = 3.0
sun.data.angle = 0.1  # soft shadow edges
sun.rotation_euler = (0.8, 0.2, 0.6)
scene.collection.objects.link(sun)
world = bpy.data.worlds.new("world")
world.color = setup["background"]
world.node_tree.nodes["Background"].inputs["Color"].default_value = (*setup["background"], 1.0)
scene.world = world
r = scene.render
r.resolution_x, r.resolution_y = setup["render"]["resolution_x"], setup["render"]["resolution_y"]
r.resolution_percentage = 100
r.pixel_aspect_x, r.pixel_aspect_y = setup["render"]["pixel_aspect_x"], setup["render"]["pixel_aspect_y"]
layer = scene.view_layers[0]
layer.use_pass_z = True
if engine == "workbench":
    r.engine = "BLENDER_WORKBENCH"
    scene.display.shading.color_type = "VERTEX"
    scene.display.shading.light = "STUDIO"
    scene.display.shading.show_shadows = True
else:
    r.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    scene.cycles.use_adaptive_sampling = False
    r.use_persistent_data = True
    layer.use_pass_normal = True
    layer.use_pass_object_index = True
matrices = np.asarray(setup["matrix_world"])
settings = r.image_settings


def render(frame):
    mesh.vertices.foreach_set("co", verts[frame].astype(np.float32).ravel())
    mesh.update()
    cam.matrix_world = Matrix(matrices[frame].tolist())
    bpy.ops.render.render()
    result = bpy.data.images["Render Result"]
    settings.media_type = "IMAGE"
    settings.file_format = "PNG"
    settings.color_mode = "RGB"
    result.save_render(str(out / f"{frame:06d}.png"))
    settings.media_type = "MULTI_LAYER_IMAGE"  # every pass in one EXR, as BlenderProc's writers use
    settings.color_depth = "32"
    result.save_render(str(out / f"{frame:06d}.exr"))


render(0)  # warm-up: kernels, shaders, first BVH
times = []
for i in range(frames):
    t0 = time.perf_counter()
    render(1 + i % (len(verts) - 1))
    times.append(time.perf_counter() - t0)
print("BENCH_JSON " + json.dumps({"engine": engine, "samples": samples, "times": times}))
"""


def clip_spec(size: int, frames: int, seed: int = 1) -> ClipSpec:
    return ClipSpec.parse({"clips": 1, "frames": frames, "width": size, "height": size, "seed": seed,
                           "people": {"count": 1}, "motion": {"sources": ["walk"]}, "cameras": ["ring:1"],
                           "passes": list(DEFAULT_PASSES)})


def ours_seconds_per_frame(spec: ClipSpec, threads: int, repeats: int = 2) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        render_one(clip_spec(spec.width, 4, seed=0), 0, Path(tmp), threads=threads)  # warm-up (JIT, model)
        best = float("inf")
        for i in range(repeats):
            folder = Path(tmp) / f"run{i}"
            folder.mkdir()
            start = time.perf_counter()
            render_one(spec, 0, folder, threads=threads)
            best = min(best, time.perf_counter() - start)
            shutil.rmtree(folder)
    return best / spec.frames


def blender_scene(spec: ClipSpec) -> tuple[dict[str, np.ndarray], dict]:
    """The clip's posed body (Blender's Z-up world) and camera per frame, as the Blender script reads them."""
    plan = plan_clip(spec, 0)
    model = load_body_model("neutral")
    verts = plan.posed[0][0] @ PROTOCOL_TO_BLENDER.T
    cam = plan.cameras[0]
    cams = [blender_camera_from_opencv(cam.K[f], cam.R[f], cam.t[f], spec.width, spec.height, spec.near,
                                       spec.far) for f in range(spec.frames)]
    first = cams[0]
    setup = {
        "camera": {k: getattr(first, k) for k in ("lens", "sensor_width", "sensor_height", "sensor_fit",
                                                  "shift_x", "shift_y", "clip_start", "clip_end")},
        "render": {k: getattr(first, k) for k in ("resolution_x", "resolution_y", "pixel_aspect_x",
                                                  "pixel_aspect_y")},
        "matrix_world": [c.matrix_world.tolist() for c in cams],
        "background": [float(c) for c in BACKGROUND],
    }
    arrays = {"verts": verts.astype(np.float32), "faces": np.asarray(model.faces, dtype=np.int32),
              "colors": plan.people[0].colors.astype(np.float32)}
    return arrays, setup


def blender_seconds_per_frame(arrays: dict[str, np.ndarray], setup: dict, engine: str, samples: int,
                              frames: int) -> dict | None:
    python = REPO / ".venv-blender" / "bin" / "python"
    if not python.exists():
        print("no .venv-blender: run scripts/bootstrap.sh", file=sys.stderr)
        return None
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        np.savez(root / "scene.npz", **arrays)
        (root / "setup.json").write_text(json.dumps(setup))
        (root / "script.py").write_text(BLENDER_SCRIPT)
        (root / "out").mkdir()
        command = [str(python), str(root / "script.py"), str(root / "scene.npz"), str(root / "setup.json"),
                   engine, str(samples), str(frames), str(root / "out")]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=3600, cwd=tmp)
        written = sorted(p.name for p in (root / "out").iterdir())
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            times = json.loads(line[len("BENCH_JSON "):])["times"]
            return {"median_s": float(np.median(times)), "best_s": float(np.min(times)), "frames": len(times),
                    "files_per_frame": len(written) // (len(times) + 1)}
    print(f"blender {engine} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}", file=sys.stderr)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--frames", type=int, default=48, help="frames of our clip")
    parser.add_argument("--cycles-frames", type=int, default=4, help="timed frames of Cycles at 64 samples")
    parser.add_argument("--fast-frames", type=int, default=16,
                        help="timed frames of Cycles at 1 sample and of Workbench")
    args = parser.parse_args()
    threads = default_threads()
    spec = clip_spec(args.size, args.frames)
    ours = ours_seconds_per_frame(spec, threads)
    arrays, setup = blender_scene(spec)
    rows = {"ours full ground truth": {"median_s": ours, "best_s": ours}}
    for name, engine, samples, frames in (("Blender Workbench", "workbench", 0, args.fast_frames),
                                          ("Blender Cycles 1 spp", "cycles", 1, args.fast_frames),
                                          ("Blender Cycles 64 spp", "cycles", 64, args.cycles_frames)):
        row = blender_seconds_per_frame(arrays, setup, engine, samples, frames)
        if row:
            rows[name] = row
    ours_after = ours_seconds_per_frame(spec, threads, repeats=1)  # the load may have changed meanwhile
    rows["ours full ground truth"]["after_s"] = ours_after
    report = {"size": args.size, "cpus": os.cpu_count(), "render_threads": threads,
              "load_after": round(os.getloadavg()[0], 1), "rows": rows}
    ours_worst = max(ours, ours_after)
    for name, row in rows.items():
        if name != "ours full ground truth":
            row["ours_speedup_median"] = round(row["median_s"] / ours_worst, 1)
    print(json.dumps(report, indent=1))
    print("\n| renderer | s/frame (median) | frames/s | ours full GT speed-up |\n|---|---|---|---|")
    print(f"| ours, full ground truth written | {ours:.4f} (after: {ours_after:.4f}) | {1 / ours:.1f} | 1 |")
    for name, row in rows.items():
        if name != "ours full ground truth":
            print(f"| {name} (bpy, passes + PNG + EXR) | {row['median_s']:.4f} | {1 / row['median_s']:.1f} | "
                  f"**{row['ours_speedup_median']}x** |")


if __name__ == "__main__":
    main()
