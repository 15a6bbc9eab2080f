"""cluster/ and jobs/: every YAML parses, and what the manifests name (images, sweep files, volumes,
services, Ray version) exists in the repository and agrees across files. cluster/local.sh itself is
exercised by tests/cluster/test_cluster_jobs.py."""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from dear_ray.tune import expand_trials, load_sweep

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
KUBERAY = CLUSTER / "kuberay"
SHARED = "/mnt/shared"
IMAGE_ROOT = "/home/ray/dear_ray"  # cluster/Dockerfile's WORKDIR for the package and jobs/


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def ray_pin() -> str:
    dep = next(d for d in pyproject()["project"]["dependencies"] if d.startswith("ray["))
    return re.search(r">=\s*([\d.]+)", dep).group(1)


def image_name() -> str:
    return f"dear-ray:{pyproject()['project']['version']}"


def kuberay_docs() -> list[dict]:
    docs = []
    for path in sorted(KUBERAY.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def by_kind(kind: str) -> list[dict]:
    return [d for d in kuberay_docs() if d["kind"] == kind]


def pod_specs() -> list[dict]:
    """Every pod template of the KubeRay manifests (Ray head, Ray workers, MLflow)."""
    specs = []
    for rc in by_kind("RayCluster"):
        specs.append(rc["spec"]["headGroupSpec"]["template"]["spec"])
        specs += [g["template"]["spec"] for g in rc["spec"]["workerGroupSpecs"]]
    specs += [d["spec"]["template"]["spec"] for d in by_kind("Deployment")]
    return specs


def test_every_yaml_parses():
    paths = sorted([*CLUSTER.rglob("*.yaml"), *(REPO / "jobs").rglob("*.yaml")])
    assert {p.relative_to(REPO).as_posix() for p in paths} >= {
        "cluster/aws-gpu.yaml", "cluster/kuberay/raycluster.yaml", "cluster/kuberay/rayjob.yaml",
        "cluster/kuberay/mlflow.yaml", "cluster/kuberay/storage.yaml", "jobs/runtime_env.yaml",
        "jobs/sweeps/dear_ucf101.yaml", "jobs/sweeps/sdn_minikinetics.yaml",
        "jobs/sweeps/sdn_finetune_diving48.yaml"}
    for path in paths:
        assert list(yaml.safe_load_all(path.read_text())), f"{path} is empty"


def test_images_are_the_dockerfile_image_of_this_version():
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    base = re.search(r"^FROM\s+(\S+)", dockerfile, re.M).group(1)
    assert base.startswith(f"rayproject/ray:{ray_pin()}-py311")
    images = [c["image"] for spec in pod_specs() for c in spec["containers"]]
    images.append(yaml.safe_load((CLUSTER / "aws-gpu.yaml").read_text())["docker"]["image"])
    assert len(images) == 4 and set(images) == {image_name()}
    assert f"-t {image_name()}" in dockerfile
    for rc in by_kind("RayCluster"):
        assert rc["spec"]["rayVersion"] == ray_pin()


def test_dockerfile_copies_existing_paths_and_pins_torch_as_the_makefile():
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    copies = re.findall(r"^COPY\s+(?:--\S+\s+)*(.+)\s+(\S+)$", dockerfile, re.M)
    sources = [s for srcs, _ in copies for s in srcs.split()]
    assert sources == ["pyproject.toml", "README.md", "dear_ray", "jobs"]
    assert all((REPO / s).exists() for s in sources)
    assert re.search(rf"^WORKDIR {IMAGE_ROOT}$", dockerfile, re.M)
    pins = re.findall(r"torch==\S+ torchvision==\S+", (REPO / "Makefile").read_text())
    assert pins and pins[0] in dockerfile


def test_rayjob_runs_an_existing_sweep_on_the_raycluster():
    (job,) = by_kind("RayJob")
    (cluster,) = by_kind("RayCluster")
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}
    argv = job["spec"]["entrypoint"].split()
    assert argv[:2] == ["dear-ray", "sweep"]
    assert "dear-ray" in pyproject()["project"]["scripts"]
    sweep = Path(argv[2])
    assert sweep.is_relative_to(IMAGE_ROOT)
    in_repo = REPO / sweep.relative_to(IMAGE_ROOT)
    assert in_repo.is_file()
    assert len(expand_trials(load_sweep(in_repo))) == 16
    assert yaml.safe_load(job["spec"]["runtimeEnvYAML"])["env_vars"]["OMP_NUM_THREADS"] == "1"


def test_every_pod_mounts_the_shared_claim():
    (pvc,) = by_kind("PersistentVolumeClaim")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    specs = pod_specs()
    assert len(specs) == 3
    for spec in specs:
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"]
                  if "persistentVolumeClaim" in v}
        mounts = {m["mountPath"]: m["name"] for c in spec["containers"]
                  for m in c.get("volumeMounts", [])}
        assert claims[mounts[SHARED]] == pvc["metadata"]["name"]


def test_ray_pods_reach_the_mlflow_service():
    (deployment,) = by_kind("Deployment")
    (service,) = by_kind("Service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    port = service["spec"]["ports"][0]
    uri = f"http://{service['metadata']['name']}:{port['port']}"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert f"--port {port['targetPort']}" in " ".join(container["args"])
    assert "--workers 1" in " ".join(container["args"])  # one process on one SQLite file
    (cluster,) = by_kind("RayCluster")
    ray_specs = [cluster["spec"]["headGroupSpec"]["template"]["spec"]] + [
        g["template"]["spec"] for g in cluster["spec"]["workerGroupSpecs"]]
    for spec in ray_specs:
        env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
        assert env["MLFLOW_TRACKING_URI"] == uri


def test_aws_launcher_mounts_shared_storage_and_starts_mlflow():
    cfg = yaml.safe_load((CLUSTER / "aws-gpu.yaml").read_text())
    assert f"-v {SHARED}:{SHARED}" in cfg["docker"]["run_options"]
    assert cfg["head_node_type"] in cfg["available_node_types"]
    assert any(f"{SHARED}" in c and "mount -t nfs4" in c for c in cfg["initialization_commands"])
    head = " ".join(cfg["head_start_ray_commands"])
    assert "mlflow server" in head and "--port 5000" in head
    for cmds in (cfg["head_start_ray_commands"], cfg["worker_start_ray_commands"]):
        start = next(c for c in cmds if "ray start" in c)
        assert "MLFLOW_TRACKING_URI=http://" in start and ":5000" in start


def test_runtime_env_excludes_data_and_outputs():
    env = yaml.safe_load((REPO / "jobs" / "runtime_env.yaml").read_text())
    assert set(env) <= {"excludes", "env_vars", "pip", "py_modules", "working_dir", "config"}
    assert {"/data/", "/runs/", "/.venv/", "/mlruns/", "mlflow.db", "/.git/"} <= set(env["excludes"])
    assert all(isinstance(v, str) for v in env["env_vars"].values())  # Ray rejects non-strings
    assert "MLFLOW_TRACKING_URI" not in env["env_vars"]  # each cluster sets its own


@pytest.mark.parametrize("name, trials", [("dear_ucf101", 16), ("sdn_minikinetics", 3),
                                          ("sdn_finetune_diving48", 3)])
def test_sweeps_validate_without_data_and_use_shared_storage(name, trials):
    plans = expand_trials(load_sweep(REPO / "jobs" / "sweeps" / f"{name}.yaml"))
    assert len(plans) == trials
    for plan in plans:
        cfg = plan.config
        assert cfg.data.data_root.startswith(f"{SHARED}/")
        assert cfg.tracking.run_dir.startswith(f"{SHARED}/")
        assert cfg.model.pretrained is None or cfg.model.pretrained.startswith(f"{SHARED}/")
        assert not Path(cfg.data.data_root).exists()  # validated with no data present
        assert cfg.resources.use_gpu and cfg.resources.num_workers >= 1


def test_sdn_sweeps_start_pretrained_with_the_scene_mlp_warm_up():
    plans = {p.name: p.config for p in expand_trials(
        load_sweep(REPO / "jobs" / "sweeps" / "sdn_minikinetics.yaml"))}
    assert {c.model.pretrained for c in plans.values()} == {
        f"{SHARED}/data/checkpoints/r3d18_a_kinetics400.pth"}
    warm = {n: (c.optim.new_layers_warmup_epochs, c.optim.new_layer_lr, c.optim.lr)
            for n, c in plans.items()}
    assert warm == {"baseline": (0, None, 1e-4), "scene_adv": (4, 1e-2, 1e-4),
                    "full": (0, None, 1e-4)}


def test_dear_sweep_follows_spec_section_3():
    plans = {p.name: p.config for p in expand_trials(
        load_sweep(REPO / "jobs" / "sweeps" / "dear_ucf101.yaml"))}
    assert sorted(plans) == sorted(f"{b}_{h}" for b in ("i3d", "tsm", "slowfast", "tpn")
                                   for h in ("softmax", "bnn", "rpl", "dear"))
    row = lambda c: (c.model.backbone, c.data.sampler, c.data.clip_len, c.data.frame_interval,  # noqa: E731
                     c.data.test_views.num_clips, c.data.test_views.num_crops, c.optim.lr,
                     c.optim.nesterov, c.optim.schedule, c.optim.grad_clip,
                     c.optim.classifier_lr_mult)
    assert row(plans["i3d_rpl"]) == ("i3d_r50", "dense", 32, 2, 1, 3, 1e-3, True, "step", 40, 1.0)
    assert row(plans["tsm_bnn"])[:2] == ("tsm_r50", "segments")
    # DEAR's TSM BNN config: plain SGD, no fc_lr5 (issue 10 item 12)
    assert row(plans["tsm_bnn"])[6:] == (1e-3, False, "step", 20, 1.0)
    assert plans["tsm_bnn"].optim.param_groups == "default"
    assert plans["tsm_softmax"].optim.param_groups == "tsm_fc_lr5"
    assert row(plans["slowfast_softmax"]) == ("slowfast_r50_8x8", "sample_frames", 32, 2, 10, 3,
                                              1e-3, True, "cosine", 40, 1.0)
    assert plans["slowfast_softmax"].optim.warmup_epochs == 5
    assert row(plans["tpn_softmax"]) == ("tpn_slowonly_r50", "sample_frames", 8, 8, 10, 3, 2e-3,
                                         True, "step", 40, 1.0)  # nesterov in every DEAR TPN config
    assert plans["tpn_dear"].optim.lr == 1e-3
    # test views: three 256 crops at short side 256; TSM 10 dense windows, centre crop 224
    tests = {n: (c.data.test_scale_short, c.data.test_crop_size, c.data.test_views.num_clips,
                 c.data.test_views.num_crops) for n, c in plans.items()}
    assert tests["i3d_bnn"] == (256, 256, 1, 3) and tests["slowfast_dear"] == (256, 256, 10, 3)
    assert tests["tsm_rpl"] == (256, 224, 10, 1) and plans["tsm_rpl"].data.sample_range == 64
    for name, cfg in plans.items():
        assert (cfg.optim.epochs, cfg.optim.momentum, cfg.optim.weight_decay) == (50, 0.9, 1e-4)
        assert (cfg.data.batch_size, cfg.data.crop_size) == (8, 224)
        assert set(cfg.data.unknown) == {"hmdb51", "mit_v2"}
        assert cfg.model.head_options == ({"temporal_kernel": 1} if name.endswith("dear") else {})
        if cfg.optim.schedule == "step":
            assert cfg.optim.milestones == [20, 40]


def test_readme_names_existing_files():
    text = (CLUSTER / "README.md").read_text()
    named = set(re.findall(r"(?:jobs|cluster)/[\w./-]+\.(?:yaml|sh)|cluster/Dockerfile", text))
    assert "jobs/runtime_env.yaml" in named and "jobs/sweeps/dear_ucf101.yaml" in named
    assert all((REPO / p).exists() for p in named), named
    assert ("ray job submit --address http://HEAD:8265 --working-dir . \\\n    --runtime-env "
            "jobs/runtime_env.yaml") in text


def test_local_sh_is_valid_bash():
    script = CLUSTER / "local.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["bash", "-n", str(script)], check=True)
    out = subprocess.run([str(script), "bogus"], capture_output=True, text=True)
    assert out.returncode == 1 and "usage: local.sh start N | stop | status" in out.stderr


# --------------------------------------------------------------------------------------------
