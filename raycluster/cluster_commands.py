"""`wanray cluster up|down|status|env|validate`: what each does (the arguments are in cli.py)."""

from __future__ import annotations

import json
from pathlib import Path

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

    from wanray.raycluster.local import ray_session_pids, start_head

    state, existing = _load_cluster(args)
    if existing is not None and ray_session_pids(existing):
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
    from wanray.raycluster.local import ray_session_pids, stop

    state, cluster = _load_cluster(args)
    if cluster is None:
        print(f"no cluster recorded in {state}; nothing to stop")
        return 0
    running = len(ray_session_pids(cluster))
    if not running:  # the recorded session ended (or is someone else's now): signal nothing
        state.unlink(missing_ok=True)
        print(f"the cluster recorded in {state} is no longer running; removed the stale record")
        return 0
    leftovers = stop(cluster)
    if leftovers:
        raise RuntimeError(f"processes of the cluster survived SIGKILL: {leftovers}")
    state.unlink(missing_ok=True)
    print(f"Ray cluster {cluster.address} stopped ({running} processes ended)")
    return 0


def cluster_status(cluster, timeout_s: float = 30) -> dict:
    """What `wanray cluster status` shows, as data (``timeout_s`` per dashboard request: a busy head is slow)."""
    from collections import Counter

    from wanray.raycluster.local import alive_nodes, dashboard_get, process_names, ray_session_pids

    pids = ray_session_pids(cluster)
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
