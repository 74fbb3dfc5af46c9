"""``wanray serve``: the video API on a local single-node cluster.

    wanray serve up [--port 8000] [--model embedded] [--redis-url URL] [--auth-token-env WANRAY_API_TOKEN]
    wanray serve status
    wanray serve down
    wanray serve hash-token [--env WANRAY_API_TOKEN]      # the auth_token_sha256 of a Serve config
    wanray serve config                                    # print the packaged Serve config YAML

``up`` starts a local Ray cluster (``wanray.raycluster.local``), a redis-server from the OS package (unless
``--redis-url`` names a running one), deploys ``serve_config.yaml`` with the given overrides through the
dashboard (what ``serve deploy`` does), waits until a generator replica is ready and prints the URL.
``down`` stops all three. What ``up`` started is recorded in ``--state-file``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

SERVE_CONFIG = Path(__file__).parent / "serve_config.yaml"
DEFAULT_STATE = Path(os.environ.get("WANRAY_STATE_DIR", Path.home() / ".wanray")) / "serve.json"
APP_NAME = "wanray"


def register(sub) -> None:
    serve = sub.add_parser("serve", help="the video API (Ray Serve): up, status, down",
                           description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cmds = serve.add_subparsers(dest="serve_command", metavar="SUBCOMMAND", required=True)

    up = cmds.add_parser("up", help="start a local cluster + Redis + the app; print the URL")
    up.add_argument("--config", default=str(SERVE_CONFIG), help="Serve config YAML (default: the packaged one)")
    up.add_argument("--port", type=int, default=8000, help="HTTP port on 127.0.0.1 (default 8000)")
    up.add_argument("--model", default=None, help="model to serve (default: the YAML's, the embedded model)")
    up.add_argument("--redis-url", default=None, help="a running Redis; default: start redis-server locally")
    up.add_argument("--store", default=None, help="video folder or fsspec URI (default: outputs/serving)")
    up.add_argument("--lora-dir", default=None, help="folder of NAME.safetensors LoRAs")
    up.add_argument("--few-step-lora", default=None, metavar="NAME",
                    help="a 4-step distillation LoRA in --lora-dir: every job runs with it at 4 steps, cfg 1")
    up.add_argument("--auth-token-env", default=None, metavar="NAME",
                    help="require 'Authorization: Bearer $NAME' on /v1 (only its hash goes into the config)")
    up.add_argument("--num-cpus", type=int, default=4, help="logical CPUs of the local cluster (default 4)")
    up.add_argument("--max-replicas", type=int, default=None, help="generator replicas at most")
    up.add_argument("--timeout", type=float, default=600, help="seconds to wait for the app (default 600)")
    up.add_argument("--state-file", default=str(DEFAULT_STATE), help=f"where to record it (default {DEFAULT_STATE})")
    up.set_defaults(func=run_up)

    for name, func, text in (("status", run_status, "is it up; queue depth and replicas"),
                             ("down", run_down, "stop the app, Redis and the local cluster")):
        p = cmds.add_parser(name, help=text)
        p.add_argument("--state-file", default=str(DEFAULT_STATE))
        p.set_defaults(func=func)

    token = cmds.add_parser("hash-token", help="print the auth_token_sha256 for a token")
    token.add_argument("--env", default="WANRAY_API_TOKEN", help="environment variable holding the token")
    token.set_defaults(func=run_hash_token)

    config = cmds.add_parser("config", help="print the packaged Serve config YAML")
    config.set_defaults(func=lambda args: print(SERVE_CONFIG.read_text(), end="") or 0)


def deploy_config(args: argparse.Namespace, redis_url: str) -> dict:
    """The YAML with this command's overrides, validated as Serve and as wanray would."""
    import yaml

    from wanray.serving.config import ServeConfig, hash_token

    config = yaml.safe_load(Path(args.config).read_text())
    config["http_options"] = {**config.get("http_options", {}), "host": "127.0.0.1", "port": args.port}
    app = next(a for a in config["applications"] if a.get("import_path") == "wanray.serving.app:build_app")
    app["name"] = APP_NAME
    overrides = {"redis_url": redis_url, "store_uri": str(Path(args.store or "outputs/serving").resolve())
                 if "://" not in (args.store or "") else args.store}
    if args.model:
        from wanray.specs import model_for_other_processes

        overrides["model"] = {**app["args"].get("model", {}), "model": model_for_other_processes(args.model)}
    if args.lora_dir:
        overrides["lora_dir"] = str(Path(args.lora_dir).resolve())
    if args.few_step_lora:
        overrides["few_step_lora"] = args.few_step_lora
    if args.max_replicas:
        overrides["max_replicas"] = args.max_replicas
    if args.auth_token_env:
        token = os.environ.get(args.auth_token_env)
        if not token:
            raise ValueError(f"--auth-token-env {args.auth_token_env}: that variable is not set")
        overrides["auth_token_sha256"] = hash_token(token)
    app["args"] = {**app.get("args", {}), **overrides}
    ServeConfig.from_args(app["args"])  # fail here, not in a replica
    return config


def run_up(args: argparse.Namespace) -> int:
    from wanray.raycluster.local import LocalCluster, start_head, stop
    from wanray.serving.redis_server import start_redis, stop_redis

    state_file = Path(args.state_file)
    if state_file.exists():
        raise RuntimeError(f"already up ({state_file}); run 'wanray serve down' first")
    redis = None if args.redis_url else start_redis()
    cluster: LocalCluster | None = None
    try:
        config = deploy_config(args, args.redis_url or redis.url)
        print(f"starting a local Ray cluster ({args.num_cpus} CPUs)...", flush=True)
        cluster = start_head(num_cpus=args.num_cpus)
        state = {"cluster": cluster.__dict__, "redis": redis.__dict__ if redis else None,
                 "url": f"http://127.0.0.1:{args.port}/"}
        state_file.parent.mkdir(parents=True, exist_ok=True)
        state_file.write_text(json.dumps(state, indent=2) + "\n")
        client = _serve_client(cluster.dashboard_url)
        client.deploy_applications(config)
        print("deploying the app (loading the model in each replica)...", flush=True)
        _wait_ready(client, state["url"], args.timeout)
    except BaseException:
        if cluster is not None:
            stop(cluster)
        if redis is not None:
            stop_redis(redis)
        state_file.unlink(missing_ok=True)
        raise
    print(f"wanray video API ready: {state['url']}  (web page; API docs at {state['url']}docs)")
    print(f"dashboard: {cluster.dashboard_url}   stop with: wanray serve down")
    return 0


def _serve_client(dashboard_url: str):
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    return ServeSubmissionClient(dashboard_url)


def _wait_ready(client, url: str, timeout: float) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app = client.get_serve_details().get("applications", {}).get(APP_NAME, {})
        if app.get("status") in ("DEPLOY_FAILED", "UNHEALTHY"):
            messages = [app.get("message", "")] + [d.get("message", "") for d in app.get("deployments", {}).values()]
            raise RuntimeError(f"the app failed to deploy: {' '.join(m for m in messages if m)[-3000:]}")
        try:
            with urllib.request.urlopen(url + "readyz", timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1)
    raise RuntimeError(f"the app did not become ready within {timeout:.0f} s; see the dashboard's Serve page")


def _state(args: argparse.Namespace) -> dict:
    path = Path(args.state_file)
    if not path.exists():
        raise RuntimeError(f"not up (no {path}); start it with 'wanray serve up'")
    return json.loads(path.read_text())


def run_status(args: argparse.Namespace) -> int:
    import urllib.request

    state = _state(args)
    try:
        with urllib.request.urlopen(state["url"] + "readyz", timeout=5) as r:
            ready = json.load(r)
    except Exception as e:  # 503 (no replica yet) or unreachable
        ready = {"error": str(e)}
    details = _serve_client(state["cluster"]["dashboard_url"]).get_serve_details()
    app = details.get("applications", {}).get(APP_NAME, {})
    print(f"url: {state['url']}")
    print(f"app: {app.get('status', 'missing')}")
    for name, deployment in app.get("deployments", {}).items():
        replicas = {}
        for replica in deployment.get("replicas", []):
            replicas[replica["state"]] = replicas.get(replica["state"], 0) + 1
        print(f"  {name}: {deployment.get('status')} replicas {replicas}")
    print(f"ready: {json.dumps(ready)}")
    return 0 if "error" not in ready else 1


def run_down(args: argparse.Namespace) -> int:
    from wanray.raycluster.local import LocalCluster, stop
    from wanray.serving.redis_server import RedisServer, stop_redis

    state = _state(args)
    leftovers = stop(LocalCluster(**state["cluster"]))
    if state.get("redis"):
        stop_redis(RedisServer(**state["redis"]))
    Path(args.state_file).unlink(missing_ok=True)
    if leftovers:
        print(f"processes left behind: {leftovers}", file=sys.stderr)
        return 1
    print("stopped: the app, Redis and the local cluster")
    return 0


def run_hash_token(args: argparse.Namespace) -> int:
    from wanray.serving.config import hash_token

    token = os.environ.get(args.env)
    if not token:
        raise ValueError(f"set {args.env} to the token first (it is read from the environment, never an argument)")
    print(hash_token(token))
    return 0
