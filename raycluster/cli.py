"""``wanray cluster ...`` and ``wanray job ...``: a local Ray cluster, and jobs on any Ray cluster.

    wanray cluster up [--num-cpus 8] [--num-gpus 0] [--memory 16GiB] [--auth token|disabled]
    wanray cluster status [--json]          # address, dashboard, resources, processes, jobs
    wanray cluster env                      # export lines for ray.init / ray status / ray job
    wanray cluster down                     # ends exactly that cluster's processes
    wanray cluster validate [cluster.yaml]  # against Ray's autoscaler schema (and the KubeRay manifests)

    wanray job submit synth -- --n 8 --out /tmp/synth
    wanray job submit train [--address http://HEAD:8265] [--follow] -- --preset embedded_lora_smoke
    wanray job status|logs [--follow]|stop JOB_ID
    wanray job list

Jobs go to ``--address`` (the dashboard URL), else ``$RAY_API_SERVER_ADDRESS``, else the cluster
``wanray cluster up`` started. See raycluster/README.md for clusters on AWS and Kubernetes.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from wanray.raycluster.cluster_commands import run_down, run_env, run_status, run_up, run_validate
from wanray.raycluster.job_commands import run_job_list, run_job_logs, run_job_status, run_job_stop, run_submit

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
          "KI": 1024, "MI": 1024**2, "GI": 1024**3, "TI": 1024**4}


def parse_bytes(text: str) -> int:
    """``16GiB``, ``512MiB``, ``2G``, ``1073741824`` -> bytes."""
    m = _SIZE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; write e.g. 16GiB, 512MiB or a number of bytes")
    unit = (m.group(2) or "").upper().removesuffix("B")
    return int(float(m.group(1)) * _UNITS[unit])


def parse_resource(text: str) -> tuple[str, float]:
    name, sep, amount = text.partition("=")
    try:
        value = float(amount)
    except ValueError:
        value = -1
    if not sep or not name or value < 0:
        raise argparse.ArgumentTypeError(
            f"{text!r}: write a custom resource as NAME=AMOUNT, e.g. accelerator_type:H100=1")
    return name, value


def parse_env(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: write an environment variable as NAME=VALUE")
    return name, value


def _state_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-file", type=Path, default=None,
                   help="where the cluster is recorded (default $WANRAY_CLUSTER_STATE or ~/.wanray/cluster.json)")


def register(sub) -> None:
    cluster = sub.add_parser("cluster", help="start, inspect and stop a local Ray cluster; validate cluster.yaml",
                             description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    csub = cluster.add_subparsers(dest="cluster_command", metavar="COMMAND", required=True)

    up = csub.add_parser("up", help="start a single-node Ray cluster (head with dashboard) in the background")
    up.add_argument("--num-cpus", type=int, default=None, help="logical CPUs to declare (default: this machine's)")
    up.add_argument("--num-gpus", type=int, default=None, help="GPUs to declare (default: Ray detects them)")
    up.add_argument("--memory", type=parse_bytes, default=None, help="memory for tasks and actors, e.g. 16GiB "
                    "(default: the machine's available memory)")
    up.add_argument("--object-store-memory", type=parse_bytes, default=None,
                    help="shared-memory object store, e.g. 4GiB (default: Ray's, 30%% of memory)")
    up.add_argument("--resource", type=parse_resource, action="append", default=[], metavar="NAME=AMOUNT",
                    help="a custom resource, e.g. accelerator_type:H100=1; repeat for several")
    up.add_argument("--port", type=int, default=6379, help="GCS port (default 6379)")
    up.add_argument("--dashboard-port", type=int, default=8265, help="dashboard port on 127.0.0.1 (default 8265)")
    up.add_argument("--auth", choices=("token", "disabled"), default="token",
                    help="token (default, as Ray 2.60 does for new clusters): clients need the cluster's token; "
                         "disabled: anyone who can reach the ports can run code")
    up.add_argument("--token-file", type=Path, default=None,
                    help="the cluster's token (default: next to the state file, created if missing)")
    up.add_argument("--work-dir", type=Path, default=None,
                    help="working directory of the cluster's processes and jobs: relative paths in job arguments "
                         "resolve here (default: your home directory)")
    up.add_argument("--timeout", type=float, default=120, help="seconds to wait for the cluster (default 120)")
    _state_arg(up)
    up.set_defaults(func=run_up)

    down = csub.add_parser("down", help="stop the cluster started by `wanray cluster up` (only its processes)")
    _state_arg(down)
    down.set_defaults(func=run_down)

    status = csub.add_parser("status", help="address, dashboard URL, resources, processes and jobs of the cluster")
    status.add_argument("--json", action="store_true", help="print JSON")
    _state_arg(status)
    status.set_defaults(func=run_status)

    env = csub.add_parser("env", help="print `export` lines so ray.init, `ray status` and `ray job` reach the cluster")
    _state_arg(env)
    env.set_defaults(func=run_env)

    validate = csub.add_parser("validate", help="check a cluster-launcher YAML against Ray's schema, and KubeRay "
                                                "manifests (kind RayCluster/RayJob/RayService) structurally")
    validate.add_argument("files", nargs="*", type=Path,
                          help="cluster.yaml and/or KubeRay manifests "
                               "(default: ./cluster.yaml if present, and the bundled manifests)")
    validate.set_defaults(func=run_validate)

    job = sub.add_parser("job", help="submit wanray jobs to a Ray cluster; status, logs, stop",
                         description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    jsub = job.add_subparsers(dest="job_command", metavar="COMMAND", required=True)
    from wanray.raycluster.jobs import JOB_KINDS

    submit = jsub.add_parser("submit", help="submit a job (train, eval, synth, cache, check)",
                             description="Submit a wanray job: KIND [options] -- ARGS (ARGS go to the job's module).")
    kinds = submit.add_subparsers(dest="kind", metavar="KIND", required=True)
    for kind, (module, what) in JOB_KINDS.items():
        # one parser per kind, so `-- ARGS` may follow the options (a second positional would not)
        p = kinds.add_parser(kind, help=f"python -m {module}: {what}",
                             description=f"python -m {module} ARGS on the cluster: {what}")
        p.add_argument("job_args", nargs="*", metavar="ARGS", help=f"arguments for {module}, after --")
        p.add_argument("--env", type=parse_env, action="append", default=[], metavar="NAME=VALUE",
                       help="environment variable for the job; repeat for several")
        p.add_argument("--entrypoint-num-cpus", type=float, default=None, help="CPUs reserved for the driver")
        p.add_argument("--entrypoint-num-gpus", type=float, default=None, help="GPUs reserved for the driver")
        p.add_argument("--submission-id", default=None, help="job id (default wanray-KIND-TIME-RANDOM)")
        p.add_argument("--follow", action="store_true",
                       help="stream the logs until the job ends; exit 0 only if it SUCCEEDED")
        _client_args(p)
        p.set_defaults(func=run_submit)

    for name, func, text in (("status", run_job_status, "the job's status and message"),
                             ("logs", run_job_logs, "the job's logs (--follow: until it ends)"),
                             ("stop", run_job_stop, "stop the job")):
        p = jsub.add_parser(name, help=text)
        p.add_argument("job_id", help="the job id printed by `wanray job submit`")
        if name == "logs":
            p.add_argument("--follow", action="store_true", help="keep streaming until the job ends")
        if name == "status":
            p.add_argument("--json", action="store_true", help="print JSON")
        if name == "stop":
            p.add_argument("--wait", action="store_true", help="wait until the job has stopped")
        _client_args(p)
        p.set_defaults(func=func)

    lst = jsub.add_parser("list", help="jobs of the cluster, newest first")
    _client_args(lst)
    lst.set_defaults(func=run_job_list)


def _client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", default=None,
                   help="the cluster's dashboard URL, e.g. http://HEAD:8265 (default: $RAY_API_SERVER_ADDRESS, "
                        "else the cluster `wanray cluster up` started)")
    p.add_argument("--token-file", type=Path, default=None,
                   help="the cluster's auth token (default: the recorded cluster's, or Ray's when RAY_AUTH_MODE=token)")
    _state_arg(p)
