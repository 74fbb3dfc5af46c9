"""Job requests, entrypoints and where jobs are sent (address, token), without a cluster."""

import importlib.util
import secrets
import shlex

import pytest

from wanray.cli import main
from wanray.raycluster.jobs import JOB_KINDS, JobRequest, resolve_endpoint, token_from_environment
from wanray.raycluster.local import LocalCluster


@pytest.fixture(autouse=True)
def no_cluster_env(monkeypatch, tmp_path):
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("WANRAY_CLUSTER_STATE", str(tmp_path / "no-cluster.json"))


@pytest.mark.parametrize("kind", list(JOB_KINDS))
def test_every_job_kind_runs_a_wanray_module_that_exists(kind):
    module = JOB_KINDS[kind][0]
    assert module.startswith("wanray.")
    assert importlib.util.find_spec(module) is not None, f"{kind}: {module} is missing"


def test_entrypoint_quotes_arguments_so_they_arrive_unchanged():
    args = ("--preset", "embedded_lora_smoke", "--set", f"name=run {secrets.token_hex(3)}'s \"best\"", "--x=$HOME")
    request = JobRequest(kind="train", args=args)
    assert shlex.split(request.entrypoint()) == ["python", "-m", "wanray.training.train", *args]
    assert request.submission_id.startswith("wanray-train-")
    assert JobRequest(kind="train").submission_id != request.submission_id


def test_bad_requests_say_what_to_fix():
    with pytest.raises(ValueError, match="unknown job kind 'serve'; choose one of train, eval, synth, cache"):
        JobRequest(kind="serve")
    with pytest.raises(ValueError, match=r"invalid environment variable name\(s\) \['1BAD'\]"):
        JobRequest(kind="synth", env_vars={"1BAD": "x"})
    with pytest.raises(ValueError, match="entrypoint_num_gpus must be >= 0, got -1"):
        JobRequest(kind="train", entrypoint_num_gpus=-1)


def _recorded_cluster(tmp_path, auth="token"):
    token_file = tmp_path / "cluster.token"
    token = secrets.token_hex(16)
    token_file.write_text(token + "\n")
    cluster = LocalCluster(address="127.0.0.1:6390", dashboard_url="http://127.0.0.1:8299", session_id=1,
                           temp_dir=str(tmp_path / "ray"), auth=auth,
                           token_file=str(token_file) if auth == "token" else None)
    state = tmp_path / "cluster.json"
    cluster.save(state)
    return state, token


def test_recorded_cluster_is_used_with_its_token(tmp_path):
    state, token = _recorded_cluster(tmp_path)
    endpoint = resolve_endpoint(state_file=state)
    assert endpoint.dashboard_url == "http://127.0.0.1:8299"
    assert endpoint.headers == {"Authorization": f"Bearer {token}"} and endpoint.auth == "token"


def test_address_beats_state_file_beats_environment_beats_default_cluster(tmp_path, monkeypatch):
    state, _ = _recorded_cluster(tmp_path)
    monkeypatch.setenv("WANRAY_CLUSTER_STATE", str(state))  # the default recorded cluster
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")  # a GCS address (ray.init's) is not for jobs
    assert resolve_endpoint().dashboard_url == "http://127.0.0.1:8299"
    monkeypatch.setenv("RAY_ADDRESS", "http://10.0.0.2:8265")
    assert resolve_endpoint().dashboard_url == "http://10.0.0.2:8265"
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://10.0.0.3:8265/")
    assert resolve_endpoint().dashboard_url == "http://10.0.0.3:8265"
    # a state file named on the command line is as explicit as --address: the environment does not win
    assert resolve_endpoint(state_file=state).dashboard_url == "http://127.0.0.1:8299"
    endpoint = resolve_endpoint(address="https://ray.example.com", state_file=state)
    assert endpoint.dashboard_url == "https://ray.example.com"
    assert endpoint.headers == {}  # the recorded cluster's token is not sent to another address


def test_explicit_address_takes_the_token_from_a_file_or_ray_environment(tmp_path, monkeypatch):
    token_file = tmp_path / "t"
    token_file.write_text("abc123\n")
    endpoint = resolve_endpoint(address="http://h:8265", token_file=token_file)
    assert endpoint.headers == {"Authorization": "Bearer abc123"}
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token_file))
    assert token_from_environment() is None  # RAY_AUTH_MODE is not token: Ray's clients would not send it either
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert resolve_endpoint(address="http://h:8265").headers == {"Authorization": "Bearer abc123"}
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    assert token_from_environment() == "from-env"
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="RAY_AUTH_MODE=token but no token"):
        resolve_endpoint(address="http://h:8265")


def test_no_cluster_and_wrong_address_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="no cluster to talk to: pass --address"):
        resolve_endpoint(state_file=tmp_path / "none.json")
    with pytest.raises(ValueError, match="must be the dashboard's URL, e.g. http://127.0.0.1:8265, got '127.0.0.1:6"):
        resolve_endpoint(address="127.0.0.1:6379")
    with pytest.raises(FileNotFoundError, match="token file"):
        resolve_endpoint(address="http://h:8265", token_file=tmp_path / "none")


def test_submit_without_a_cluster_fails_in_one_line(capsys):
    assert main(["job", "submit", "synth", "--", "--n", "2"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("wanray job: error: no cluster to talk to") and "Traceback" not in err


def test_unreachable_dashboard_is_a_clear_error(capsys):
    from wanray.raycluster.local import free_port

    assert main(["job", "status", "some-job", "--address", f"http://127.0.0.1:{free_port()}"]) == 1
    err = capsys.readouterr().err
    assert "cannot use the Ray dashboard at http://127.0.0.1:" in err and "wanray cluster status" in err


def test_submit_help_lists_the_kinds_and_their_modules(capsys):
    with pytest.raises(SystemExit):
        main(["job", "submit", "--help"])
    out = capsys.readouterr().out
    for kind, (module, _) in JOB_KINDS.items():
        assert kind in out and module in out
