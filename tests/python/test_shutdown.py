"""Stopping early: break, del, an exception in the loop, Ctrl-C while next()
waits, interpreter exit with a live loader, and kill -9. Each must end with
stoker's threads joined and leave the next epoch (or the next process)
working.

Stalls are made deterministic with a manifest sample on an object server
that holds every request until released (shutdown_helpers.StallServer): the
pipeline waits on storage for as long as the test wants."""
import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest
import torch

import stoker
from shutdown_helpers import (HANG_TIMEOUT_S, StallServer, last_json, native_threads, run_python,
                              stalled_manifest, threads_after_join, wait_until, waiting_in_next)

VAL16 = stoker.transforms.imagenet_val(16)


@pytest.fixture(autouse=True)
def torch_threads_started():
    """Starts torch's own worker threads before any thread count is taken:
    the tests count stoker's threads, which torch's would blur."""
    a = torch.full((1 << 20,), 0xAB, dtype=torch.uint8)
    torch.equal(a, a.clone())
    torch.equal(a.float(), a.float())


def good_files(image_folder):
    return sorted(str(p) for p in image_folder.rglob("*") if p.is_file())


def all_indices(loader):
    return sorted(i for batch in loader for i in batch["index"].tolist())


@pytest.fixture()
def stalled(tmp_path, image_folder, monkeypatch):
    """A manifest whose first sample is an object that gets no answer until
    the server is released; the AWS variables (inherited by child
    processes) point stoker at that server."""
    manifest = stalled_manifest(str(tmp_path), good_files(image_folder), stall_at=0)
    server = StallServer(good_files(image_folder)[0])
    for k, v in server.env().items():
        monkeypatch.setenv(k, v)
    yield manifest, server
    server.stop()


def test_break_mid_epoch_joins_threads_and_the_next_pass_covers_the_epoch(image_folder,
                                                                          record_behaviour):
    base = native_threads()
    loader = stoker.Loader(image_folder, batch_size=4, shuffle=True, seed=5, threads=2,
                           transform=VAL16)
    first = []
    for i, batch in enumerate(loader):
        first.append(batch["index"].tolist())
        if i == 2:
            break
    assert threads_after_join(base) == base
    # The pass was not finished, so the next one is the same epoch from its start.
    again = [b["index"].tolist() for b in loader]
    assert again[:3] == first
    assert sorted(i for b in again for i in b) == list(range(loader.num_samples))
    assert threads_after_join(base) == base
    record_behaviour("shutdown", "break out of the loop mid-epoch",
                     "threads joined at once; the next pass starts the epoch again and "
                     "covers it exactly")


def test_del_mid_epoch_joins_threads_and_held_tensors_stay_valid(image_folder, record_behaviour):
    base = native_threads()
    opts = dict(batch_size=5, shuffle=True, seed=9, threads=2,
                transform=stoker.transforms.imagenet_train(24, normalize=True))
    loader = stoker.Loader(image_folder, **opts)
    it = iter(loader)
    kept = [next(it), next(it)]
    assert native_threads() > base  # its threads are working ahead
    del it, loader
    gc.collect()
    assert threads_after_join(base) == base
    # The batches outlive the loader: their memory is the batch's own, not
    # the pool of a loader that is gone. Churn the allocator, then compare
    # with the same batches from a fresh loader (same seed and epoch).
    churn = [torch.empty(len(kept[0]["image"].flatten()) * 4, dtype=torch.uint8).fill_(0xAB)
             for _ in range(8)]
    del churn
    fresh = stoker.Loader(image_folder, **opts)
    fresh_it = iter(fresh)
    for held in kept:
        want = next(fresh_it)
        assert torch.equal(held["index"], want["index"])
        assert torch.equal(held["image"], want["image"])
    del fresh_it, fresh
    gc.collect()
    assert threads_after_join(base) == base
    record_behaviour("shutdown", "del the loader (and its iterator) mid-epoch",
                     "threads joined; batch tensors still held stay valid (equal to the same "
                     "batches from a fresh loader)")


def test_last_reference_dropped_on_another_thread_joins_threads(image_folder, record_behaviour):
    base = native_threads()
    loader = stoker.Loader(image_folder, batch_size=4, shuffle=True, threads=2, transform=VAL16)
    it = iter(loader)
    batch = next(it)
    box = [loader, it]
    del loader, it
    t = threading.Thread(target=box.clear)  # the loader is freed on this thread
    t.start()
    t.join(HANG_TIMEOUT_S)
    assert not t.is_alive()
    assert threads_after_join(base) == base
    assert len(batch["index"]) == 4
    record_behaviour("shutdown", "loader freed (last reference dropped) on another thread "
                     "mid-epoch", "threads joined there; batches already taken stay valid")


def test_exception_in_the_consumer_joins_threads(image_folder, record_behaviour):
    base = native_threads()
    loader = stoker.Loader(image_folder, batch_size=4, shuffle=True, threads=2, transform=VAL16)

    def train():
        for i, _ in enumerate(loader):
            if i == 1:
                raise ValueError("loss is nan")

    with pytest.raises(ValueError, match="loss is nan"):
        train()
    assert threads_after_join(base) == base
    assert all_indices(loader) == list(range(loader.num_samples))
    record_behaviour("shutdown", "exception raised in the training loop",
                     "the exception propagates; threads joined; the next pass covers the epoch")


def test_stop_from_another_thread_wakes_a_waiting_next(stalled):
    manifest, server = stalled
    base = native_threads()
    loader = stoker.Loader(manifest, batch_size=4, threads=2, transform=VAL16)
    got = []
    t = threading.Thread(target=lambda: got.extend(loader))
    t.start()
    wait_until(lambda: waiting_in_next(loader, server), "the thread waits in next()")
    assert t.is_alive()
    loader.close()
    t.join(HANG_TIMEOUT_S)
    assert not t.is_alive()
    assert got == []  # the stalled batch never came: the pass simply ended
    del loader  # its S3 client's I/O thread lives as long as the loader
    gc.collect()
    assert threads_after_join(base) == base


KEYBOARD_INTERRUPT_CHILD = """
    import json, os, signal, sys, threading, time, urllib.request
    # Whatever the test process passed on (a blocked or ignored SIGINT is
    # inherited across exec), as a terminal's Python has it.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import stoker
    manifest, release_url, held_url = sys.argv[1:4]
    tasks = lambda: len(os.listdir("/proc/self/task"))
    def settled(want):  # a joined thread may stay listed for a moment
        for _ in range(3000):
            if tasks() == want:
                break
            time.sleep(0.01)
        return tasks()
    base = tasks()
    loader = stoker.Loader(manifest, batch_size=4, threads=2,
                           transform=stoker.transforms.imagenet_val(16))
    def stalled_in_next():  # see shutdown_helpers.waiting_in_next
        held = int(urllib.request.urlopen(held_url, timeout=30).read())
        return held > 0 and loader.stats()["stall_s"] > 0
    def interrupt():
        # Once the server holds the pass's request and the main thread waits
        # in next(), not after a delay.
        while not stalled_in_next():
            time.sleep(0.001)
        os.kill(os.getpid(), signal.SIGINT)
    sender = threading.Thread(target=interrupt)
    sender.start()
    out = {"base": base}
    try:
        for batch in loader:
            out["batches"] = out.get("batches", 0) + 1
        out["raised"] = False
    except KeyboardInterrupt:
        out["raised"] = True
    sender.join()
    # The pipeline's threads are joined; the S3 client's I/O thread stays
    # with the loader.
    out["after"] = settled(base + 1)
    # The stall is over: the server answers again.
    urllib.request.urlopen(release_url, timeout=30).read()
    seen = sorted(i for b in loader for i in b["index"].tolist())
    out["coverage"] = seen == list(range(loader.num_samples))
    out["after_epoch"] = settled(base + 1)
    del loader
    out["after_del"] = settled(base)
    print(json.dumps(out))
"""


def test_keyboard_interrupt_while_next_waits_on_storage(stalled, image_folder, record_behaviour):
    manifest, server = stalled
    p = run_python(KEYBOARD_INTERRUPT_CHILD, manifest, server.release_url, server.held_url)
    assert p.returncode == 0, p.stderr
    out = last_json(p.stdout)
    assert out["raised"] is True
    assert "batches" not in out  # nothing was delivered before the interrupt
    assert out["after"] == out["base"] + 1
    assert out["coverage"] is True
    assert out["after_epoch"] == out["base"] + 1
    assert out["after_del"] == out["base"]
    record_behaviour("shutdown", "KeyboardInterrupt (SIGINT) during next(), pipeline stalled on "
                     "storage (an object request that gets no answer)",
                     "raises KeyboardInterrupt; threads joined; the next epoch covers every "
                     "sample")


def test_ctrl_c_ends_a_stalled_training_process(stalled):
    """SIGINT from outside, as a terminal's Ctrl-C: the process dies of the
    uncaught KeyboardInterrupt instead of hanging in next()."""
    manifest, server = stalled
    code = """
        import signal, sys, threading, time, urllib.request
        # As KEYBOARD_INTERRUPT_CHILD: SIGINT unblocked, Python's handler.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        signal.signal(signal.SIGINT, signal.default_int_handler)
        import stoker
        loader = stoker.Loader(sys.argv[1], batch_size=4, threads=2,
                               transform=stoker.transforms.imagenet_val(16))
        def stalled_in_next():  # see shutdown_helpers.waiting_in_next
            held = int(urllib.request.urlopen(sys.argv[2], timeout=30).read())
            return held > 0 and loader.stats()["stall_s"] > 0
        def announce():  # once the server holds its request and next() waits
            while not stalled_in_next():
                time.sleep(0.001)
            print("waiting", flush=True)
        threading.Thread(target=announce, daemon=True).start()
        for batch in loader:
            pass
    """
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), manifest,
                             server.held_url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "waiting"
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=HANG_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("hung after SIGINT; stderr:\n" + proc.communicate()[1])
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode in (1, -signal.SIGINT), err
    assert "KeyboardInterrupt" in err


EXIT_CASES = {
    "global loader mid-epoch": """
        it = iter(loader)
        next(it)
    """,
    "global loader stalled on storage": """
        stalled = stoker.Loader(manifest, batch_size=4, threads=2, transform=t)
        stalled._core.start()  # its request to the object store gets no answer
    """,
    "loader and iterator in a reference cycle": """
        class Holder: pass
        h = Holder(); h.me = h; h.loader = loader; h.it = iter(loader); next(h.it)
        del h
    """,
    "daemon thread waiting in next() on a stalled loader": """
        import threading, time, urllib.request
        stalled = stoker.Loader(manifest, batch_size=4, threads=2, transform=t)
        threading.Thread(target=lambda: [b for b in stalled], daemon=True).start()
        # Until the server holds its request and the thread waits in next().
        while not (int(urllib.request.urlopen(sys.argv[3], timeout=30).read()) > 0
                   and stalled.stats()["stall_s"] > 0):
            time.sleep(0.001)
    """,
    "daemon thread iterating epochs": """
        import threading, time
        started = threading.Event()
        def train():
            while True:
                for b in loader:
                    started.set()
        threading.Thread(target=train, daemon=True).start()
        started.wait()
    """,
    "non-daemon thread finishing its epoch": """
        import threading
        threading.Thread(target=lambda: [b for b in loader]).start()
    """,
}


@pytest.mark.parametrize("case", list(EXIT_CASES))
def test_interpreter_exit_with_a_live_loader(case, stalled, image_folder, record_behaviour):
    manifest, server = stalled
    code = """
        import atexit, json, os, sys

        def after_stokers_hook():
            # Registered before stoker is imported, so it runs after the
            # atexit hook stoker registers: each loader must be closed by
            # then. A closed loader's next() raises (its pass is over for
            # good); an open one would give a batch, end the epoch, or wait.
            out = {}
            for name in ("loader", "stalled"):
                if name not in globals():
                    continue
                try:
                    next(iter(globals()[name]))
                    out[name] = "open: it gave a batch"
                except StopIteration:
                    out[name] = "open: it ended an epoch"
                except stoker.Error as e:
                    out[name] = "closed: " + str(e)
            print(json.dumps(out), flush=True)

        atexit.register(after_stokers_hook)
        import stoker
        folder, manifest = sys.argv[1:3]
        t = stoker.transforms.imagenet_val(16)
        loader = stoker.Loader(folder, batch_size=4, shuffle=True, threads=2, transform=t)
    """ + EXIT_CASES[case] + """
        print("exiting", flush=True)
    """
    env = {}
    if case.startswith("daemon"):
        # By design the daemon thread's frame, and the loader and batches it
        # holds, are never freed (CPython never frees daemon frames). Under
        # LeakSanitizer (make test-asan) that is reported as a leak: the
        # holders live in pymalloc arenas, which it does not scan.
        env["ASAN_OPTIONS"] = os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0"
    p = run_python(code, image_folder, manifest, server.held_url, env=env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0] == "exiting", p.stdout
    assert p.stderr == ""
    closed = last_json(p.stdout)
    want = {"loader", "stalled"} if "stalled" in EXIT_CASES[case] else {"loader"}
    assert set(closed) == want, closed
    for name, what in closed.items():
        assert what == "closed: cancelled: the loader was closed", (name, what)
    record_behaviour("shutdown", f"interpreter exit with a live loader: {case}",
                     "exits with status 0 and nothing on stderr; stoker's atexit hook has "
                     "closed every loader (a later hook finds next() refused on each)")


KILL9_CHILD = """
    import json, sys, stoker
    loader = stoker.Loader(sys.argv[1], batch_size=4, shuffle=True, threads=2,
                           transform=stoker.transforms.imagenet_train(32))
    epochs = int(sys.argv[2])
    for epoch in range(epochs):
        seen = []
        for batch in loader:
            seen += batch["index"].tolist()
            print("batch", flush=True)
        assert sorted(seen) == list(range(loader.num_samples))
    print(json.dumps({"epochs": epochs}), flush=True)
"""


def _paths_in_use(pid):
    """Files the process has open or mapped."""
    paths = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            paths.add(os.readlink(os.path.join(fd_dir, fd)))
        except OSError:
            pass
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].startswith("/"):
                paths.add(parts[5].strip())
    return paths


def test_kill_9_leaves_nothing_behind_and_the_next_start_works(image_folder, tmp_path,
                                                               record_behaviour):
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(private_tmp))
    shm_before = set(os.listdir("/dev/shm"))
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(KILL9_CHILD), str(image_folder),
                             "1000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        for _ in range(15):  # into the fourth epoch: threads busy, batches in flight
            assert proc.stdout.readline().strip() == "batch"
        in_use = _paths_in_use(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=HANG_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    # stoker keeps nothing in shared memory or temporary files: the process
    # had nothing open or mapped in /dev/shm or in its temp dir (TMPDIR, a
    # private folder here; the system /tmp may hold the checkout, the venv
    # and the dataset, which are not stoker's to clean up).
    tmp_roots = ("/dev/shm", str(private_tmp))
    assert [p for p in in_use if p.startswith(tmp_roots)] == []
    assert list(private_tmp.iterdir()) == []
    new_shm = set(os.listdir("/dev/shm")) - shm_before
    assert not [n for n in new_shm if "stoker" in n], new_shm
    # The next start works: two full epochs, exact coverage each.
    p = run_python(KILL9_CHILD, image_folder, 2, env={"TMPDIR": str(private_tmp)})
    assert p.returncode == 0, p.stderr
    assert last_json(p.stdout) == {"epochs": 2}
    assert list(private_tmp.iterdir()) == []
    record_behaviour("shutdown", "kill -9 of a training process mid-epoch",
                     "nothing in /dev/shm or the temp dir (stoker creates no such files: none "
                     "were open or mapped at the kill); the next start runs full epochs")
