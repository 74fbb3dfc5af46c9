import ray


def test_shared_cluster_runs_tasks(ray_cluster):
    @ray.remote
    def square(x):
        return x * x

    assert ray.get([square.remote(i) for i in range(4)]) == [0, 1, 4, 9]
    assert ray.cluster_resources()["CPU"] == 8
    assert ray_cluster.dashboard_url.startswith("http://127.0.0.1:")
