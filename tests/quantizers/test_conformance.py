"""Every built-in quantizer passes `sidcore.testing.quantizers.check_quantizer`."""

from __future__ import annotations

import pytest

from sid_quantizers.config import BalancedConfig, RqKmeansConfig, RqKmeansPlusConfig, RqvaeConfig
from sidcore.plugins import load_plugins
from sidcore.testing.quantizers import check_quantizer

CASES = {
    "rq_kmeans": RqKmeansConfig(codebook_sizes=[6, 4, 3]),
    "rq_kmeans_balanced": BalancedConfig(codebook_sizes=[6, 4, 3], max_iter=5, kmeans_iter=10, n_init=1),
    "rqvae": RqvaeConfig(codebook_sizes=[6, 4, 3], layers=[32, 16], e_dim=8, epochs=200, eval_every=100,
                         kmeans_iters=20, learning_rate=3e-3, warmup_steps=10),
    "rq_kmeans_plus": RqKmeansPlusConfig(codebook_sizes=[6, 4, 3], layers=[32, 16], epochs=300,
                                         eval_every=100, learning_rate=3e-3, warmup_epochs=10),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_builtin_quantizer_conformance(name):
    spec = load_plugins(strict=True).registry.get("quantizer", name)
    cfg = CASES[name]
    trained = name in ("rqvae", "rq_kmeans_plus")  # gradient descent: no bit-exact refit promise
    check_quantizer(spec.build, cfg, sizes=tuple(cfg.codebook_sizes), refit=not trained)


def test_listing_quantizers_does_not_import_jax():
    import subprocess
    import sys

    code = ("import sys; from sidcore.plugins import load_plugins; r = load_plugins(strict=True).registry;"
            "assert r.names('quantizer') == ['rq_kmeans', 'rq_kmeans_balanced', 'rq_kmeans_plus', 'rqvae'];"
            "print('jax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
