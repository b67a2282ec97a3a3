"""The allocator setting for large buffers (seglab.memory)."""

import os
import platform
import subprocess
import sys

import pytest

from seglab import memory

GLIBC = sys.platform == "linux" and platform.libc_ver()[0] == "glibc"


def _in_a_fresh_process(env_value):
    env = {k: v for k, v in os.environ.items() if k != memory.ENV}
    if env_value is not None:
        env[memory.ENV] = env_value
    code = "import seglab.torch_env, seglab.memory as m; print(m.keep_freed_memory())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="glibc's allocator only")
def test_inference_and_training_processes_keep_freed_memory():
    assert _in_a_fresh_process(None) == "True"
    assert memory.keep_freed_memory() is True and memory.keep_freed_memory() is True  # once, then cached


@pytest.mark.parametrize("value", ["0", "off", "No", " false "])
def test_the_environment_leaves_the_allocator_alone(value):
    assert _in_a_fresh_process(value) == "False"


def test_release_memory_answers_where_there_is_no_glibc(monkeypatch):
    monkeypatch.setattr(memory, "_glibc", lambda: None)
    assert memory.release_memory() is False
    assert memory.keep_freed_memory.__wrapped__() is False  # (the uncached function)


@pytest.mark.skipif(not GLIBC, reason="glibc's allocator only")
def test_release_memory_hands_back_what_is_free():
    import numpy as np

    big = np.ones(64 << 20, np.uint8)  # 64 MiB from the heap, then freed
    del big
    assert isinstance(memory.release_memory(), bool)
