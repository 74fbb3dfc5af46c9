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
import json
import re
import sys
from pathlib import Path

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


# ---- cluster -------------------------------------------------------------------------------------------------


def _state_file(args) -> Path:
    from wanray.raycluster.local import default_state_file

    return (args.state_file or default_state_file()).expanduser().resolve()


def _load_cluster(args):
    from wanray.raycluster.local import LocalCluster

    state = _state_file(args)
    if not state.is_file():
        return state, None
    return state, LocalCluster.load(state)


def run_up(args) -> int:
    import os

    from wanray.raycluster.local import session_pids, start_head

    state, existing = _load_cluster(args)
    if existing is not None and session_pids(existing.session_id):
        raise RuntimeError(f"a cluster is already up ({existing.dashboard_url}, recorded in {state}); "
                           "`wanray cluster down` first, or pass another --state-file")
    token_file = args.token_file or state.with_suffix(".token")
    cluster = start_head(
        num_cpus=args.num_cpus or os.cpu_count() or 1, num_gpus=args.num_gpus, memory_bytes=args.memory,
        object_store_bytes=args.object_store_memory, resources=dict(args.resource) or None,
        port=args.port, dashboard_port=args.dashboard_port, auth=args.auth,
        token_file=token_file if args.auth == "token" else None, work_dir=args.work_dir, timeout_s=args.timeout,
    )
    cluster.save(state)
    flag = f" --state-file {state}" if args.state_file else ""
    print(f"Ray cluster up: {cluster.address}")
    print(f"  dashboard : {cluster.dashboard_url}")
    print(f"  auth      : {cluster.auth}" + (f" (token in {cluster.token_file})" if cluster.token_file else ""))
    print(f"  work dir  : {cluster.work_dir} (relative paths in job arguments resolve here)")
    print(f"  state     : {state}")
    print(f"  check     : wanray job submit check --follow{flag}")
    print(f"  clients   : eval \"$(wanray cluster env{flag})\"   (for ray.init, ray status, ray job)")
    print(f"  stop      : wanray cluster down{flag}")
    return 0


def run_down(args) -> int:
    from wanray.raycluster.local import session_pids, stop

    state, cluster = _load_cluster(args)
    if cluster is None:
        print(f"no cluster recorded in {state}; nothing to stop")
        return 0
    running = len(session_pids(cluster.session_id))
    leftovers = stop(cluster)
    if leftovers:
        raise RuntimeError(f"processes of the cluster survived SIGKILL: {leftovers}")
    state.unlink(missing_ok=True)
    print(f"Ray cluster {cluster.address} stopped ({running} processes ended)")
    return 0


def cluster_status(cluster, timeout_s: float = 30) -> dict:
    """What `wanray cluster status` shows, as data (``timeout_s`` per dashboard request: a busy head is slow)."""
    from collections import Counter

    from wanray.raycluster.local import alive_nodes, dashboard_get, process_names, session_pids

    pids = session_pids(cluster.session_id)
    report = {
        "address": cluster.address, "dashboard_url": cluster.dashboard_url, "auth": cluster.auth,
        "token_file": cluster.token_file, "work_dir": cluster.work_dir, "processes": len(pids),
        "process_kinds": dict(Counter(process_names(pids).values()).most_common()),
        "up": bool(pids), "resources": None, "nodes": None, "jobs": None,
    }
    if not pids:
        return report
    try:
        nodes = alive_nodes(cluster, timeout_s=timeout_s)
        report["nodes"] = len(nodes)
        totals: dict[str, float] = {}
        for node in nodes:
            for name, amount in node.get("resources_total", {}).items():
                if not name.startswith("node:"):
                    totals[name] = totals.get(name, 0) + amount
        report["resources"] = totals
        jobs = dashboard_get(cluster, "/api/jobs/", timeout_s=timeout_s)
        report["jobs"] = dict(Counter(j["status"] for j in jobs))
    except Exception as e:  # processes alive but the dashboard does not answer
        report["dashboard_error"] = str(e)
    return report


def _format_resources(resources: dict[str, float]) -> str:
    parts = []
    for name, amount in sorted(resources.items()):
        if name in ("memory", "object_store_memory"):
            parts.append(f"{name}={amount / 1024**3:.1f}GiB")
        else:
            parts.append(f"{name}={amount:g}")
    return ", ".join(parts)


def run_status(args) -> int:
    state, cluster = _load_cluster(args)
    if cluster is None:
        if args.json:
            print(json.dumps({"up": False, "state_file": str(state)}))
        else:
            print(f"no cluster is up (nothing recorded in {state}); start one with `wanray cluster up`")
        return 1
    report = {"state_file": str(state), **cluster_status(cluster)}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0 if report["up"] else 1
    if not report["up"]:
        print(f"cluster {cluster.address} is down (its processes are gone); `wanray cluster down` forgets it")
        return 1
    print(f"Ray cluster {report['address']}: up")
    print(f"  dashboard : {report['dashboard_url']}")
    print(f"  auth      : {report['auth']}" + (f" (token in {report['token_file']})" if report["token_file"] else ""))
    if report["resources"] is not None:
        print(f"  nodes     : {report['nodes']}")
        print(f"  resources : {_format_resources(report['resources'])}")
        jobs = ", ".join(f"{n} {s}" for s, n in report["jobs"].items()) or "none"
        print(f"  jobs      : {jobs}")
    else:
        print(f"  dashboard not answering: {report.get('dashboard_error')}")
    kinds = ", ".join(f"{name} x{n}" if n > 1 else name for name, n in report["process_kinds"].items())
    print(f"  processes : {report['processes']} ({kinds})")
    print(f"  work dir  : {report['work_dir']}")
    print(f"  state     : {state}")
    return 0


def run_env(args) -> int:
    import shlex

    state, cluster = _load_cluster(args)
    if cluster is None:
        raise ValueError(f"no cluster recorded in {state}; start one with `wanray cluster up`")
    for name, value in cluster.client_env().items():
        print(f"export {name}={shlex.quote(value)}")
    return 0


def run_validate(args) -> int:
    from wanray.raycluster.manifests import bundled_manifests, validate_file

    default = [Path("cluster.yaml")] if Path("cluster.yaml").is_file() else []
    files = args.files or [*default, *bundled_manifests()]
    failed = 0
    for path in files:
        errors = validate_file(path)
        if errors:
            failed += 1
            print(f"{path}: INVALID")
            for error in errors:
                print(f"  - {error}")
        else:
            print(f"{path}: ok")
    return 1 if failed else 0


# ---- jobs ----------------------------------------------------------------------------------------------------


def _endpoint(args):
    from wanray.raycluster.jobs import resolve_endpoint

    return resolve_endpoint(address=args.address, state_file=args.state_file, token_file=args.token_file)


def run_submit(args) -> int:
    from wanray.raycluster.jobs import JobRequest, dashboard_job_url, follow_logs, job_client, submit

    request = JobRequest(
        kind=args.kind, args=tuple(args.job_args), env_vars=dict(args.env),
        entrypoint_num_cpus=args.entrypoint_num_cpus, entrypoint_num_gpus=args.entrypoint_num_gpus,
        submission_id=args.submission_id,
    )
    endpoint = _endpoint(args)
    job_id = submit(endpoint, request)
    print(f"submitted {job_id}: {request.entrypoint()}")
    print(f"  dashboard: {dashboard_job_url(endpoint, job_id)}")
    if not args.follow:
        print(f"  logs     : wanray job logs {job_id} --follow")
        return 0
    client = job_client(endpoint)
    follow_logs(client, job_id, sys.stdout)
    return _report_end(client, job_id)


def _report_end(client, job_id: str) -> int:
    from wanray.raycluster.jobs import wait

    status = wait(client, job_id)
    info = client.get_job_info(job_id)
    print(f"job {job_id} {status}" + (f": {info.message}" if info.message and status != "SUCCEEDED" else ""))
    return 0 if status == "SUCCEEDED" else 1


def run_job_status(args) -> int:
    from wanray.raycluster.jobs import dashboard_job_url, job_client

    endpoint = _endpoint(args)
    info = job_client(endpoint).get_job_info(args.job_id)
    data = {
        "job_id": args.job_id, "status": str(info.status.value), "message": info.message,
        "entrypoint": info.entrypoint, "start_time": info.start_time, "end_time": info.end_time,
        "driver_exit_code": getattr(info, "driver_exit_code", None),
        "dashboard": dashboard_job_url(endpoint, args.job_id),
    }
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(f"{args.job_id}: {data['status']}")
    for key in ("message", "entrypoint", "driver_exit_code", "dashboard"):
        if data[key] not in (None, ""):
            print(f"  {key}: {data[key]}")
    return 0


def run_job_logs(args) -> int:
    from wanray.raycluster.jobs import follow_logs, job_client

    client = job_client(_endpoint(args))
    if args.follow:
        follow_logs(client, args.job_id, sys.stdout)
        return _report_end(client, args.job_id)
    sys.stdout.write(client.get_job_logs(args.job_id))
    return 0


def run_job_stop(args) -> int:
    from wanray.raycluster.jobs import job_client, wait

    client = job_client(_endpoint(args))
    if not client.stop_job(args.job_id):
        print(f"{args.job_id} was not running")
        return 0
    print(f"stop requested for {args.job_id}")
    if args.wait:
        print(f"{args.job_id}: {wait(client, args.job_id, timeout_s=120)}")
    return 0


def run_job_list(args) -> int:
    import datetime

    from wanray.raycluster.jobs import job_client

    jobs = job_client(_endpoint(args)).list_jobs()
    jobs.sort(key=lambda j: j.start_time or 0, reverse=True)
    print(f"{'JOB ID':<40} {'STATUS':<10} {'STARTED':<20} ENTRYPOINT")
    for job in jobs:
        started = datetime.datetime.fromtimestamp(job.start_time / 1000).strftime("%Y-%m-%d %H:%M:%S") \
            if job.start_time else "-"
        print(f"{job.submission_id or job.job_id:<40} {job.status.value:<10} {started:<20} {job.entrypoint}")
    return 0
