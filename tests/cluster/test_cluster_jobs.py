"""dear_ray on a real multi-node Ray cluster (cluster/local.sh: a head and two worker nodes on this
machine, each its own raylet): a sweep submitted with `ray job submit`, then a worker node killed
while a trial trains. One cluster serves both tests; the node-killing test runs last.

Slow: starting the cluster takes ~30 s, each test a minute or two on a loaded 2-core machine.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient
from ray.util.state import list_actors, list_nodes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
LOCAL_SH = REPO / "cluster" / "local.sh"
RAY_BIN = Path(sys.executable).parent / "ray"
# small clips on the tiny synthetic set: every test trial trains for seconds, not minutes
SMALL = ["data.clip_len=8", "data.crop_size=32", "data.scale_short=32", "data.batch_size=6",
         "eval.stochastic_passes=3"]


def _free_port(limit: int = 60000) -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port <= limit:  # local.sh gives the workers port + 1000 + i and port + 2000 + i
            return port


def _session_pids(sid: int) -> list[int]:
    out = subprocess.run(["ps", "-e", "-o", "pid=,sid="], capture_output=True, text=True).stdout
    return [int(p) for p, s in (line.split() for line in out.splitlines()) if int(s) == sid]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class LocalCluster:
    """A running `cluster/local.sh` cluster: its addresses, node PIDs and environment."""

    def __init__(self, state_dir: Path):
        self.port, self.dashboard_port = _free_port(), _free_port()
        self.state_dir = state_dir
        env = {k: v for k, v in os.environ.items()
               if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
        self.env = {**env, "DEAR_RAY_PORT": str(self.port),
                    "DEAR_RAY_DASHBOARD_PORT": str(self.dashboard_port),
                    "DEAR_RAY_STATE_DIR": str(state_dir), "DEAR_RAY_BIN": str(RAY_BIN),
                    "RAY_AUTH_MODE": "disabled"}
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"

    def node_pids(self) -> dict[str, int]:
        lines = (self.state_dir / "cluster.state").read_text().splitlines()
        return {name: int(pid) for name, pid in (line.split() for line in lines)
                if name == "head" or name.startswith("worker_")}

    def run(self, *args: str, timeout: float = 200) -> subprocess.CompletedProcess:
        return subprocess.run([str(LOCAL_SH), *args], env=self.env, timeout=timeout,
                              capture_output=True, text=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(tmp_path_factory.mktemp("cluster") / "state")
    started = c.run("start", "2")
    assert started.returncode == 0, started.stderr
    pids = c.node_pids()
    try:
        assert set(pids) == {"head", "worker_1", "worker_2"}
        nodes = list_nodes(address=c.dashboard, detail=True, limit=100)
        assert sorted((n.state, n.resources_total.get("CPU"),
                       sorted(k for k in n.resources_total if k in pids)) for n in nodes) == [
            ("ALIVE", 1.0, ["head"]), ("ALIVE", 1.0, ["worker_1"]), ("ALIVE", 1.0, ["worker_2"])]
        yield c
    finally:
        stopped = c.run("stop", timeout=180)
        assert stopped.returncode == 0, stopped.stderr
    # stopped exactly what it started, and left no temp dirs behind
    assert not (c.state_dir / "cluster.state").exists()
    assert all(_session_pids(pid) == [] for pid in pids.values())
    assert not list(Path("/tmp").glob(f"dear_ray_{c.port}*"))


@pytest.fixture(scope="module")
def synth(sweep_synth):
    return sweep_synth


def _demo_without_stages(tmp_path: Path) -> Path:
    """The demo sweep's fine-tuning trials as a one-stage sweep from scratch (its pretraining
    stage reads data/synth_pretrain, which the cluster's working directory lacks)."""
    raw = yaml.safe_load((REPO / "jobs" / "sweeps" / "demo.yaml").read_text())
    finetune = next(stage for stage in raw.pop("stages") if stage["name"] == "finetune")
    raw["cases"] = finetune["cases"]
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_ray_job_submit_runs_two_demo_trials_into_mlflow(cluster, synth, tmp_path):
    from ray.job_submission import JobStatus, JobSubmissionClient

    runs = tmp_path / "runs"
    job_id = f"dear-ray-test-{os.getpid()}"
    sets = [f"data.data_root={synth}", f"tracking.run_dir={runs}", "optim.epochs=1", "optim.warmup_epochs=0", *SMALL]
    submit = [str(RAY_BIN), "job", "submit", "--address", cluster.dashboard, "--no-wait",
              "--submission-id", job_id, "--working-dir", str(REPO),
              "--runtime-env", str(REPO / "jobs" / "runtime_env.yaml"),
              "--entrypoint-num-cpus", "0", "--",
              "dear-ray", "sweep", str(_demo_without_stages(tmp_path)), "--trials", "softmax,edl",
              *[arg for s in sets for arg in ("--set", s)]]
    clock = time.monotonic()
    out = subprocess.run(submit, env=cluster.env, cwd=REPO, capture_output=True, text=True,
                         timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr

    client = JobSubmissionClient(cluster.dashboard)
    deadline = time.monotonic() + 600
    while not (status := client.get_job_status(job_id)).is_terminal():
        assert time.monotonic() < deadline, client.get_job_logs(job_id)[-3000:]
        time.sleep(2)
    wall = time.monotonic() - clock
    logs = client.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, logs[-5000:]
    print(f"\nray job submit -> SUCCEEDED in {wall:.1f} s (2 demo trials, 1 epoch)")

    mlflow = MlflowClient(f"sqlite:///{runs}/mlflow.db")
    exp = mlflow.get_experiment_by_name("demo")
    parents = mlflow.search_runs([exp.experiment_id], "tags.`dear_ray.role` = 'sweep'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = mlflow.search_runs(
        [exp.experiment_id], f"tags.mlflow.parentRunId = '{parents[0].info.run_id}'")
    trials = [r for r in children if r.data.tags.get("dear_ray.role") == "trial"]
    assert sorted(r.info.run_name for r in trials) == ["edl", "softmax"]
    # the post-hoc and detector rows are the sweep's children too, beside the trials, each with
    # a `trial` tag naming its trial.  OpenMax is fitted on correctly classified training videos:
    # after one epoch at chance level it may find none for a class and leave its row out (a
    # warning in the job log)
    posthoc = [r for r in children if r.data.tags.get("dear_ray.role") == "posthoc"
               and r.data.tags.get("trial") == "softmax"]
    names = sorted(r.info.run_name for r in posthoc)
    assert "softmax/mc_dropout" in names and all(n.startswith("softmax/") for n in names), names
    evidential = [r for r in children if r.data.tags.get("dear_ray.role") == "posthoc"
                  and r.data.tags.get("trial") == "edl"]  # its Dirichlet-score rows
    assert sorted(r.info.run_name for r in evidential) == ["edl/edl+diff_entropy", "edl/edl+mpu",
                                                             "edl/edl+mutual_info"]
    assert len(children) == len(trials) + len(posthoc) + len(evidential)
    posthoc = [*posthoc, *evidential]
    everything = mlflow.search_runs([exp.experiment_id])
    assert len(everything) == 3 + len(posthoc)  # sweep, trials, post hoc: nothing duplicated
    for run in trials + posthoc:
        assert run.info.status == "FINISHED", run.info.run_name
        assert 0.0 <= run.data.metrics["unknown/auroc"] <= 1.0
    # the job ran on the cluster: the trials' driver functions held its CPUs, not a local Ray
    assert "sweep demo: 2 trial(s) run now, 0 failed" in logs


def _registered_epochs(trial_dir: Path) -> list[int]:
    """Epochs of the checkpoints Ray Train has registered for a run (its manager's snapshot)."""
    try:
        snapshot = json.loads((trial_dir / "checkpoint_manager_snapshot.json").read_text())
    except (OSError, ValueError):  # not written yet, or caught mid-write
        return []
    return [int(r["metrics"]["epoch"]) for r in snapshot.get("checkpoint_results", [])]


def _train_workers(cluster: LocalCluster) -> list:
    return list_actors(address=cluster.dashboard,
                       filters=[("class_name", "=", "RayTrainWorker")], limit=1000)


def _node_name(cluster: LocalCluster, node_id: str) -> str:
    """head / worker_1 / ...: the custom resource local.sh gives each node."""
    for node in list_nodes(address=cluster.dashboard, detail=True, limit=100):
        if node.node_id == node_id:
            return next(k for k in node.resources_total if k == "head" or k.startswith("worker_"))
    raise AssertionError(f"node {node_id} unknown to the cluster")


def test_killing_a_worker_node_resumes_the_trial_on_the_survivor(cluster, synth, tmp_path):
    """Kill (SIGKILL, like a lost machine) the worker node that hosts the trial's Ray Train worker
    once Ray has registered a checkpoint; Ray Train restarts the worker on the other node from the last
    checkpoint and the trial finishes into the same MLflow run."""
    runs, epochs = tmp_path / "runs", 30  # ~0.2-1 s an epoch here: the kill lands mid-training
    sweep = tmp_path / "kill.yaml"
    sweep.write_text(yaml.safe_dump({
        "name": "kill",
        "base": {
            "data": {"data_root": str(synth), "clip_len": 8, "crop_size": 32, "scale_short": 32,
                     "batch_size": 6},
            "model": {"backbone": "i3d_tiny", "head": "edl"},
            "optim": {"epochs": epochs, "lr": 0.01},
            "eval": {"stochastic_passes": 3, "every_n_epochs": 0},
            # one whole CPU: the Train worker fits only on a worker node, never on the head
            "resources": {"num_workers": 1, "cpus_per_worker": 1.0, "max_failures": 3},
            "checkpoint": {"every_n_epochs": 1, "num_to_keep": 2},
            "tracking": {"run_dir": str(runs)},
        },
        "grid": {"seed": [0]},
        # the trial's driver (and so Ray Train's controller) stays on the head node
        "trial_resources": {"CPU": 0.25, "head": 0.01},
        "ray": {"address": cluster.address},
    }))
    trial_dir = runs / "kill" / "ray" / "seed-0"
    before = {a.actor_id for a in _train_workers(cluster)}  # the other tests' workers
    proc = subprocess.Popen([sys.executable, "-m", "dear_ray.cli", "sweep", str(sweep)],
                            env=cluster.env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 400
        # a checkpoint counts once Ray Train's controller has registered it (it collects reports
        # at its health checks, every 2 s): a worker killed before that restarts from scratch
        while not (registered := _registered_epochs(trial_dir)):
            assert proc.poll() is None, proc.stdout.read()[-5000:]
            assert time.monotonic() < deadline, "no checkpoint registered within 400 s"
            time.sleep(0.2)
        nodes = cluster.node_pids()
        hosting = [name for name, pid in nodes.items() if name != "head" and any(
            "RayTrainWorker" in _cmdline(p) for p in _session_pids(pid))]
        assert len(hosting) == 1, hosting
        killed = hosting[0]
        for pid in _session_pids(nodes[killed]):
            os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        output, _ = proc.communicate(timeout=600)
        recovered_s = time.monotonic() - killed_at
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, output[-5000:]
    survivor = next(name for name in nodes if name not in ("head", killed))
    # Ray's own record: one Train worker died with the killed node, its successor ran on the other
    placed = sorted((_node_name(cluster, a.node_id), a.state) for a in _train_workers(cluster)
                    if a.actor_id not in before)
    assert placed == sorted([(killed, "DEAD"), (survivor, "DEAD")]), placed

    client = MlflowClient(f"sqlite:///{runs}/mlflow.db")
    exp = client.get_experiment_by_name("kill")
    trials = client.search_runs([exp.experiment_id], "tags.`dear_ray.role` = 'trial'")
    assert [r.info.run_name for r in trials] == ["seed-0"]  # one run: not duplicated, not lost
    run = trials[0]
    assert run.info.status == "FINISHED"
    for key in ("epoch", "train_loss"):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
        assert sorted(steps) == list(range(epochs)), (key, steps)
    # it resumed from the last checkpoint registered before the kill (or a later one), not from
    # scratch
    resumed = [m.value for m in client.get_metric_history(run.info.run_id, "resumed_at_epoch")]
    assert len(resumed) == 1 and max(registered) + 1 <= resumed[0] < epochs, (resumed, registered)
    assert 0.0 <= run.data.metrics["unknown/auroc"] <= 1.0
    print(f"\nkilled {killed} after checkpoint epoch {max(registered)} was registered; resumed at "
          f"epoch {int(resumed[0])} on {survivor}; sweep done {recovered_s:.1f} s after the kill")
