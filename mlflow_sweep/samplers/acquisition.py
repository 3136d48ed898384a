"""Log expected improvement of a fitted GP and its maximization, vectorized over many points (for ``bayes``).

The GP is scikit-optimize's (scikit-learn's) ``GaussianProcessRegressor`` fitted with the kernel
``ConstantKernel * Matern(nu=2.5) + WhiteKernel`` on points of the unit box (``normalize_y``). Its
posterior mean and standard deviation, and their gradients in x, are computed here for a whole
batch at once, so that L-BFGS-B can climb from several starting points in one call: EI's maxima
are narrow once the model is sure, and random candidates alone land near them only by luck.

The log of EI (computed without forming EI, which underflows far from the best value) keeps a
gradient where EI itself is 0.0 in floating point. Pure: numpy and scipy, no state.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy

_SQRT5 = math.sqrt(5.0)


def _parts(model: Any) -> tuple[float, Any]:
    """(signal variance, length scales) of the fitted kernel's ``ConstantKernel * Matern`` part."""
    import numpy as np

    kernel = model.kernel_
    product = kernel.k1 if hasattr(kernel, "k1") and hasattr(kernel.k1, "k2") else kernel
    return float(product.k1.constant_value), np.atleast_1d(np.asarray(product.k2.length_scale, dtype=float))


def posterior(model: Any, X: numpy.ndarray, grad: bool = False) -> tuple:
    """The GP's mean and standard deviation at the rows of ``X`` (y units), and with ``grad`` their
    gradients in x (each of shape ``X.shape``).

    Args:
        model: a fitted ``GaussianProcessRegressor`` with the kernel described above.
        X: points in the GP's input space, one per row.
        grad: also return d mean / dx and d std / dx.
    """
    import numpy as np
    from scipy.linalg import cho_solve

    signal, scales = _parts(model)
    train = model.X_train_
    diff = (X[:, None, :] - train[None, :, :]) / scales  # (m, n, d)
    r = np.sqrt(np.maximum(np.sum(diff**2, axis=2), 1e-300))
    decay = np.exp(-_SQRT5 * r)
    k = signal * (1 + _SQRT5 * r + 5.0 / 3.0 * r**2) * decay  # (m, n)
    y_mean = getattr(model, "_y_train_mean", 0.0)
    y_std = getattr(model, "_y_train_std", 1.0)
    mean = k @ model.alpha_ * y_std + y_mean
    v = cho_solve((model.L_, True), k.T).T  # (m, n): K^-1 k
    variance = np.maximum(signal - np.sum(k * v, axis=1), 1e-12)
    std = np.sqrt(variance) * y_std
    if not grad:
        return mean, std
    dk = (-5.0 / 3.0 * signal * (1 + _SQRT5 * r) * decay)[:, :, None] * diff / scales  # (m, n, d)
    dmean = np.einsum("mnd,n->md", dk, model.alpha_) * y_std
    dvariance = -2.0 * np.einsum("mnd,mn->md", dk, v)
    dstd = dvariance / (2.0 * np.sqrt(variance))[:, None] * y_std
    return mean, std, dmean, dstd


def _log_h(z: numpy.ndarray) -> tuple[numpy.ndarray, numpy.ndarray]:
    """log(z Φ(z) + φ(z)) and Φ(z) / (z Φ(z) + φ(z)), stable for very negative z (EI = σ h(z))."""
    import numpy as np
    from scipy.special import erfcx, ndtr

    z = np.asarray(z, dtype=float)
    log_phi = -0.5 * z**2 - 0.5 * math.log(2 * math.pi)
    low = z < -1.0
    ratio_low = math.sqrt(math.pi / 2) * erfcx(-z[low] / math.sqrt(2))  # Φ(z) / φ(z)
    log_h = np.empty_like(z)
    d = np.empty_like(z)
    share = 1.0 + z[low] * ratio_low  # h / φ, in (0, 1)
    log_h[low] = log_phi[low] + np.log(np.maximum(share, 1e-300))
    d[low] = ratio_low / np.maximum(share, 1e-300)
    high = ~low
    cdf = ndtr(z[high])
    h = z[high] * cdf + np.exp(log_phi[high])
    log_h[high] = np.log(h)
    d[high] = cdf / h
    return log_h, d


def log_ei(model: Any, X: numpy.ndarray, best: float, grad: bool = False) -> Any:
    """log EI of improving on ``best`` (minimization) at the rows of ``X``, and with ``grad`` its gradient.

    Args:
        model: a fitted GP (see the module docstring).
        X: points in the GP's input space.
        best: the lowest observed value, in y units.
        grad: also return d log EI / dx.
    """
    import numpy as np

    if not grad:
        mean, std = posterior(model, X)
        return np.log(std) + _log_h((best - mean) / std)[0]
    mean, std, dmean, dstd = posterior(model, X, grad=True)
    z = (best - mean) / std
    log_h, ratio = _log_h(z)
    dz = -(dmean + z[:, None] * dstd) / std[:, None]
    return np.log(std) + log_h, dstd / std[:, None] + ratio[:, None] * dz


def climb(model: Any, starts: numpy.ndarray, free: numpy.ndarray, best: float, iterations: int = 100) -> tuple:
    """Each start moved uphill in log EI by L-BFGS-B, only along the ``free`` columns, inside [0, 1].

    One L-BFGS-B run per start: summed into one problem, a start far from the best (log EI of
    -1e4) would set the scale of the stopping test and end the others' climbs early.

    Args:
        model: a fitted GP.
        starts: (k, d) points in the GP's input space.
        free: (d,) booleans, the columns that may move (one-hot categorical columns stay).
        best: the lowest observed value, in y units.
        iterations: L-BFGS-B's iteration limit per start.
    Returns:
        The moved points and their log EI.
    """
    import numpy as np
    from scipy.optimize import minimize

    moved = np.array(starts, dtype=float)
    if not free.any():
        return moved, log_ei(model, moved, best)
    for row in moved:
        def negative(z: numpy.ndarray, row: numpy.ndarray = row) -> tuple[float, numpy.ndarray]:
            x = row.copy()
            x[free] = z
            value, gradient = log_ei(model, x[None, :], best, grad=True)
            return -float(value[0]), -gradient[0, free]

        result = minimize(negative, row[free], jac=True, method="L-BFGS-B", bounds=[(0.0, 1.0)] * int(free.sum()),
                          options={"maxiter": iterations})
        row[free] = np.clip(result.x, 0.0, 1.0)
    return moved, log_ei(model, moved, best)
