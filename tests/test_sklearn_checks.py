"""scikit-learn's own estimator checks, every one, on both estimators.

Nothing is marked as expected to fail.  With 2-D input the checks feed
tabular data (n_samples, n_features); the estimators read it as
n_steps = n_features with one feature a step (see rnnfast.sklearn).
"""
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks
from threadpoolctl import threadpool_limits

from rnnfast.sklearn import RNNClassifier, RNNRegressor


@pytest.fixture(autouse=True)
def _one_blas_thread_and_array_api_env(monkeypatch):
    # The checks fit tiny models: a second BLAS thread only adds waiting,
    # a lot of it on shared cores.  check_array_api_input (NumPy namespace,
    # array_api_dispatch=True) runs only when SCIPY_ARRAY_API is set; set it
    # so that the check runs instead of skipping.
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")
    with threadpool_limits(1):
        yield


@parametrize_with_checks([RNNClassifier(), RNNRegressor()])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
