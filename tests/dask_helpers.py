"""Reconstruct functions for the Dask tests; pickled by value so workers need not import them."""

from __future__ import annotations

import os

from flyrecon.reconstruct import reconstruct

CRASH_KEY = ("dose_100000", "dense", "train")


def crash_on_dense_train(options, *, on_epoch=None):
    """Kill the worker process running the dense/train job; run the others for real."""
    if tuple(options.output_dir.parts[-3:]) == CRASH_KEY:
        os._exit(1)
    return reconstruct(options, on_epoch=on_epoch)


def sleep_stub(options, *, on_epoch=None):
    """Stand in for a long job: sleep, and never produce a result the test should see."""
    import time

    time.sleep(8)
    raise RuntimeError("should have been cancelled")
