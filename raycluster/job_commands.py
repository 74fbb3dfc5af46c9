"""`wanray job submit|status|logs|stop|list`: what each does (the arguments are in cli.py)."""

from __future__ import annotations

import json
import sys

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
