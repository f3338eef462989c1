"""fork() while a Loader is mid-epoch in the parent: a Loader created in the
child works (exact coverage), the inherited one raises a clear error, nothing
deadlocks, and the parent's epoch carries on. Each case runs in a child
interpreter with a hang-detecting timeout."""
import pytest

from shutdown_helpers import last_json, run_python

# Common prologue: a parent loader mid-epoch (two batches taken, its threads
# working ahead) when the fork happens.
PROLOGUE = """
    import json, os, sys
    import stoker
    folder = sys.argv[1]
    T = stoker.transforms.imagenet_train(24)

    def epoch_indices(loader):
        return sorted(i for b in loader for i in b["index"].tolist())

    def child_work():
        \"\"\"In the child: a new loader's epoch, and the inherited one's error.\"\"\"
        out = {}
        fresh = stoker.Loader(folder, batch_size=4, shuffle=True, seed=1, threads=2, transform=T)
        out["coverage"] = epoch_indices(fresh) == list(range(fresh.num_samples))
        try:
            parent.state_dict()
            out["inherited"] = "no error"
        except stoker.Error as e:
            out["inherited"] = str(e)
        try:
            next(parent_it)
            out["inherited_next"] = "no error"
        except stoker.Error as e:
            out["inherited_next"] = str(e)
        return out

    parent = stoker.Loader(folder, batch_size=4, shuffle=True, seed=0, threads=2, transform=T)
    parent_it = iter(parent)
    taken = next(parent_it)["index"].tolist() + next(parent_it)["index"].tolist()

    def finish_parent():
        rest = [i for b in parent_it for i in b["index"].tolist()]
        return sorted(taken + rest) == list(range(parent.num_samples))
"""

# os.fork with the child's report sent back through a pipe; EXIT is how the
# child ends.
OS_FORK = """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.write(w, json.dumps(child_work()).encode())
        EXIT
    os.close(w)
    child = json.loads(os.read(r, 1 << 16).decode())
    _, status = os.waitpid(pid, 0)
    child["status"] = status
    """

CASES = {
    "os.fork, child exits with os._exit": OS_FORK.replace("EXIT", "os._exit(0)"),
    # The child tears its interpreter down: the inherited loader and its
    # suspended iterator are finalised there (stop() in the iterator's
    # cleanup, the loader's destructor) without touching the parent's threads.
    "os.fork, child exits through interpreter shutdown":
        OS_FORK.replace("EXIT", "os.close(w)\n        sys.exit(0)"),
    "multiprocessing fork context": """
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    proc = ctx.Process(target=lambda: q.put(child_work()))
    proc.start()
    child = q.get()
    proc.join()
    child["status"] = proc.exitcode
    """,
    "torch DataLoader, 2 fork workers each running a stoker Loader": """
    import torch.utils.data as tud

    class StokerShards(tud.IterableDataset):
        def __iter__(self):
            info = tud.get_worker_info()
            # First what the worker makes of the loader it inherited, as
            # child_work() does; then its own loader's shard.
            errors = []
            for use in (parent.state_dict, lambda: next(parent_it)):
                try:
                    use()
                    errors.append("no error")
                except stoker.Error as e:
                    errors.append(str(e))
            yield {"worker": info.id, "inherited": errors}
            loader = stoker.Loader(folder, batch_size=4, shuffle=True, seed=1, threads=1,
                                   transform=T, rank=info.id, world_size=info.num_workers,
                                   drop_last=False)
            for b in loader:
                yield from b["index"].tolist()

    dl = tud.DataLoader(StokerShards(), batch_size=None, num_workers=2,
                        multiprocessing_context="fork")
    items = list(dl)
    reports = [x for x in items if isinstance(x, dict)]
    got = [int(i) for i in items if not isinstance(i, dict)]
    n = parent.num_samples
    # Two ranks of 37 samples: 19 each, the last round padded by wrapping.
    # (DataLoader raises if a worker dies: no exit status to report.)
    child = {"coverage": sorted(set(got)) == list(range(n)) and len(got) == 38,
             "workers": sorted(r["worker"] for r in reports), "status": 0,
             "inherited": [r["inherited"][0] for r in reports],
             "inherited_next": [r["inherited"][1] for r in reports]}
    """,
}


@pytest.mark.parametrize("case", list(CASES))
def test_fork_while_a_loader_is_mid_epoch(case, image_folder, record_behaviour):
    code = PROLOGUE + CASES[case] + """
    child["parent_coverage"] = finish_parent()
    print(json.dumps(child))
    """
    p = run_python(code, image_folder)
    assert p.returncode == 0, p.stderr
    out = last_json(p.stdout)
    assert out["status"] == 0, p.stderr
    assert out["coverage"] is True
    assert out["parent_coverage"] is True
    if case.startswith("torch"):
        assert out["workers"] == [0, 1], out
        assert len(out["inherited"]) == 2 and len(out["inherited_next"]) == 2, out
    for key in ("inherited", "inherited_next"):
        for msg in (out[key] if case.startswith("torch") else [out[key]]):
            assert "is a fork of it: its threads do not exist here" in msg, msg
            assert "Create a new stoker.Loader" in msg, msg
    where = "the workers (a rank each)" if case.startswith("torch") else "the child"
    ends = "" if case.startswith("torch") else "; the child exits with status 0"
    record_behaviour("fork", f"{case}, a Loader mid-epoch in the parent",
                     f"Loaders created in {where} cover the epoch exactly; the inherited one "
                     "raises stoker.Error ('... is a fork of it: its threads do not exist here') "
                     f"on state_dict() and next(){ends}; the parent's epoch completes; no "
                     "deadlock")
