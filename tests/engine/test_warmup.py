import json
import os
import subprocess
import sys

import numpy as np

from geomln.engine.selectability import count_unselectable, selectable_keys
from geomln.engine.warmup import compile_batch_kernel, compile_wolfe

#: the batch kernel's helpers each warm-up part calls directly, with the argument types the kernel passes
HELPERS = ("_decide_key", "_allocate_decisions", "_normalized_set", "has_equal_rows", "_reflection_certifies")

REPORT = """
import concurrent.futures, json, sys
from geomln.engine import _kernels as kernels
from geomln.engine import warmup
if sys.argv[1] == "wolfe":
    warmup.compile_wolfe()
else:
    done = concurrent.futures.Future()
    done.set_result(0.0)
    warmup.compile_batch_kernel(done)
report = {}
for name in json.loads(sys.argv[2]) + ["count_unselectable_sets"]:
    kernel = getattr(kernels, name)
    hits, misses = kernel.stats.cache_hits, kernel.stats.cache_misses
    report[name] = [len(kernel.signatures), sum(hits.values()), sum(misses.values())]
print(json.dumps(report))
"""


def _compile_in_fresh_process(part, cache):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    result = subprocess.run([sys.executable, "-c", REPORT, part, json.dumps(HELPERS)], env=env,
                            capture_output=True, text=True, check=True, timeout=600)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_two_warm_up_parts_compile_each_kernel_once_between_them(tmp_path):
    wolfe = _compile_in_fresh_process("wolfe", tmp_path)
    assert wolfe["_decide_key"] == [1, 0, 1]  # compiled there ...
    batch = _compile_in_fresh_process("batch", tmp_path)
    assert batch["_decide_key"] == [1, 1, 0]  # ... and loaded here: one signature, no second compile
    for name in HELPERS[1:]:  # the direct calls typed like the kernel's: still one signature each
        assert batch[name][0] == 1, (name, batch[name])
    assert batch["count_unselectable_sets"] == [1, 0, 1]


def test_the_warm_up_parts_leave_results_unchanged():
    assert compile_wolfe() >= 0 and compile_batch_kernel() >= 0
    sets = np.random.default_rng(5).standard_normal((30, 12, 4))
    expected = [selectable_keys(keys, tol=1e-9).n_unselectable for keys in sets]
    assert count_unselectable(sets, 1e-9).tolist() == expected
