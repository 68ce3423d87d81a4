"""rnnfast.sklearn on Dask, a real distributed engine: a LocalCluster of two
worker processes, each capped at one BLAS thread so that the workers do not
oversubscribe the cores.

* GridSearchCV under joblib.parallel_backend("dask");
* dask-ml's Incremental, which feeds a dask array block by block to
  partial_fit.
"""
import re
import warnings

import dask.array as da
import dask_ml.wrappers as dask_ml_wrappers
import distributed
import joblib
import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from threadpoolctl import threadpool_info, threadpool_limits

from rnnfast.sklearn import RNNClassifier

# dask, distributed and dask-ml are in the test extra: missing, these tests
# fail at import instead of skipping.

ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                     "MKL_NUM_THREADS", "BLIS_NUM_THREADS")}


class OneBlasThread(distributed.WorkerPlugin):
    """Caps BLAS at one thread in each worker process with threadpoolctl
    (on top of the environment variables, which only count when BLAS is
    loaded after them)."""

    def setup(self, worker):
        self._limits = threadpool_limits(1)


def _blas_threads():
    return sorted({pool["num_threads"] for pool in threadpool_info()
                   if pool["user_api"] == "blas"})


@pytest.fixture(scope="module")
def client():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)      # e.g. "port in use"
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                           processes=True, dashboard_address=None,
                                           env=ONE_THREAD)
    client = distributed.Client(cluster)
    client.register_plugin(OneBlasThread())
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def last_steps(n, T, seed):
    """Univariate sequences (n, T): class 1 when the last two steps sum > 0."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, T)).astype(np.float32)
    return X, (X[:, -1] + X[:, -2] > 0).astype(np.int64)


def test_workers_run_one_blas_thread(client):
    threads = client.run(_blas_threads)
    assert len(threads) == 2
    assert all(t == [1] for t in threads.values()), threads


def test_grid_search_on_dask_backend(client):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((240, 6, 2)).astype(np.float32)
    y = (X[:, -1, 0] > 0).astype(int)
    grid = {"hidden_size": [8, 16], "cell": ["lstm", "gru"]}
    est = RNNClassifier(random_state=0, max_iter=15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        with distributed.get_task_stream(client) as stream, \
                joblib.parallel_backend("dask"):
            gs = GridSearchCV(est, grid, cv=2).fit(X, y)
        # the same search in this process gives the same scores: the
        # workers ran the very same deterministic fits
        with threadpool_limits(1):
            local = GridSearchCV(est, grid, cv=2).fit(X, y)
    # the 8 fits (4 candidates x 2 folds) ran as tasks on the cluster's
    # workers; joblib packs them into batches named after their size
    pattern = re.compile(r"(?:mixed_)?batch_of__fit_and_score_(\d+)_calls")
    batches = [(int(m.group(1)), task["worker"]) for task in stream.data
               for m in [pattern.match(task["key"])] if m]
    assert sum(n for n, _ in batches) == 8
    assert {w for _, w in batches} <= set(client.scheduler_info()["workers"])
    assert gs.best_score_ > 0.85
    np.testing.assert_allclose(gs.cv_results_["mean_test_score"],
                               local.cv_results_["mean_test_score"])
    assert_array_equal(gs.predict(X), local.predict(X))


def test_incremental_partial_fit_on_dask_array(client):
    # dask-ml's Incremental addresses blocks as (i, 0): 2-D arrays only, so
    # the sequences here are (n_samples, n_steps), one feature a step.
    X, y = last_steps(800, 6, seed=1)
    Xd = da.from_array(X, chunks=(100, 6))
    yd = da.from_array(y, chunks=100)
    inc = dask_ml_wrappers.Incremental(RNNClassifier(random_state=0), scoring="accuracy",
                                       random_state=0)
    passes = 4
    for _ in range(passes):
        inc.partial_fit(Xd, yd, classes=[0, 1])
    est = inc.estimator_
    # every block of every pass went through partial_fit, one epoch each
    assert est.t_ == passes * 800
    assert est.n_iter_ == passes * 8
    X_test, y_test = last_steps(400, 6, seed=2)
    assert inc.score(da.from_array(X_test, chunks=100), y_test) > 0.85
    pred = inc.predict(da.from_array(X_test, chunks=100))
    assert isinstance(pred, da.Array)
    assert_array_equal(pred.compute(), est.predict(X_test))
