"""The Python Loader: argument handling over stoker._core.Loader."""

from __future__ import annotations

import ast

import atexit
import os
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from stoker import _core
from stoker.transforms import Transform, imagenet_val

try:  # torch is optional: without it batches are NumPy arrays.
    import torch as _torch
except ImportError:  # pragma: no cover - exercised in environments without torch
    _torch = None


# Close every live loader (threads joined) before the interpreter tears down
# modules and C++ statics; daemon threads still inside a stoker call then wait
# for the process to end instead of re-entering a finalising interpreter.
atexit.register(_core._shutdown)


def _distributed_defaults(rank: Optional[int], world_size: Optional[int]):
    """rank/world_size: the arguments, else torch.distributed when it is
    initialised, else RANK / WORLD_SIZE, else 0 / 1."""
    if rank is not None and world_size is not None:
        return rank, world_size
    r, w = 0, 1
    dist = getattr(_torch, "distributed", None) if _torch is not None else None
    if dist is not None and dist.is_available() and dist.is_initialized():
        r, w = dist.get_rank(), dist.get_world_size()
    elif "WORLD_SIZE" in os.environ:
        r, w = int(os.environ.get("RANK", "0")), int(os.environ["WORLD_SIZE"])
    return (r if rank is None else rank), (w if world_size is None else world_size)


_FIELD_KINDS = ("auto", "int", "float", "text", "json", "bytes", "npy", "mask")


def _field_specs(fields) -> List[Tuple[str, str]]:
    """fields= as (name, kind) pairs: a list of names (kind "auto"), a list
    of names and (name, kind) pairs, or a dict name -> kind."""
    if fields is None:
        return []
    if isinstance(fields, str):
        raise TypeError(f"fields must be a list of names or a dict of name -> kind, got the "
                        f"string {fields!r} (write [{fields!r}])")
    items = fields.items() if isinstance(fields, Mapping) else fields
    out = []
    for item in items:
        name, kind = (item, "auto") if isinstance(item, str) else tuple(item)
        if not isinstance(name, str) or not isinstance(kind, str):
            raise TypeError(f"fields: expected a name or (name, kind), got {item!r}")
        if kind not in _FIELD_KINDS:
            raise ValueError(f"field {name!r}: kind must be one of {', '.join(_FIELD_KINDS)}; "
                             f"got {kind!r}")
        out.append((name, kind))
    return out


_WHERE_COLUMNS = ("label", "source", "shard", "bytes", "width", "height", "image_format")
_CMP = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE)
_ARITH = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod)


def _where_expression(text: str) -> Callable[[Dict[str, Any]], Any]:
    """'label in {1, 5} and width >= 256' as fn(columns) -> bool array: names
    are the index's columns, values numbers (and sets, lists or tuples of
    numbers after `in`); and/or/not, comparisons (chained too), + - * / // %."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as e:
        raise ValueError(f"where: {text!r} is not an expression: {e.msg}") from None

    def bad(node, why):
        return ValueError(f"where: {text!r}: {why} (at {ast.unparse(node)!r}); columns are "
                          f"{', '.join(_WHERE_COLUMNS)}")

    def conv(node):
        if isinstance(node, ast.BoolOp):
            op = ast.BitAnd() if isinstance(node.op, ast.And) else ast.BitOr()
            out = conv(node.values[0])
            for v in node.values[1:]:
                out = ast.BinOp(out, op, conv(v))
            return out
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.Not):
                return ast.UnaryOp(ast.Invert(), conv(node.operand))
            if isinstance(node.op, ast.USub):
                return ast.UnaryOp(ast.USub(), conv(node.operand))
            raise bad(node, "unsupported operator")
        if isinstance(node, ast.Compare):
            parts, left = [], conv(node.left)
            for op, right in zip(node.ops, node.comparators):
                if isinstance(op, (ast.In, ast.NotIn)):
                    if not isinstance(right, (ast.Set, ast.List, ast.Tuple)):
                        raise bad(right, "'in' takes a set, list or tuple of numbers")
                    values = ast.List([conv(e) for e in right.elts], ast.Load())
                    test = ast.Call(ast.Name("_isin", ast.Load()), [left, values], [])
                    parts.append(ast.UnaryOp(ast.Invert(), test) if isinstance(op, ast.NotIn) else test)
                    left = None
                elif isinstance(op, _CMP):
                    r = conv(right)
                    parts.append(ast.Compare(left, [op], [r]))
                    left = r
                else:
                    raise bad(node, "unsupported comparison")
            out = parts[0]
            for p in parts[1:]:
                out = ast.BinOp(out, ast.BitAnd(), p)
            return out
        if isinstance(node, ast.BinOp) and isinstance(node.op, _ARITH):
            return ast.BinOp(conv(node.left), node.op, conv(node.right))
        if isinstance(node, ast.Name):
            if node.id not in _WHERE_COLUMNS:
                raise bad(node, f"no column {node.id!r}")
            return ast.Name(node.id, ast.Load())
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
                and not isinstance(node.value, bool):
            return node
        raise bad(node, "not allowed here")

    code = compile(ast.fix_missing_locations(ast.Expression(conv(tree.body))), "<where>", "eval")

    def fn(columns):
        import numpy as np
        return eval(code, {"__builtins__": {}, "_isin": np.isin}, dict(columns))  # noqa: S307
    return fn


def _where(where):
    """where= as the C++ side calls it: fn(columns) -> one byte per sample."""
    fn = _where_expression(where) if isinstance(where, str) else where
    if not callable(fn):
        raise TypeError(f"where must be a function of the index's columns or an expression "
                        f"string, got {where!r}")

    def call(columns):
        import numpy as np
        keep = np.asarray(fn(columns))
        n = len(columns["label"])
        if keep.dtype != np.bool_ or keep.shape != (n,):
            raise TypeError(f"where must give one bool per sample (a bool array of shape ({n},)), "
                            f"got {keep.dtype} of shape {keep.shape}")
        return keep.astype(np.uint8).tobytes()
    return call


def _sample_map(fn: Callable[[Dict[str, Any]], Dict[str, Any]]):
    """map= as the C++ side calls it: fn(image, label, index, fields)."""
    def call(image, label, index, fields):
        sample = {"image": image, "label": label, "index": index}
        sample.update(fields)
        out = fn(sample)
        if not isinstance(out, dict):
            raise TypeError(f"map must return a dict, got {type(out).__name__}")
        return out
    return call


def _collate(values: List[Any]) -> Any:
    """What map= added to the samples, as a batch (default_collate's rules,
    shallow): tensors or arrays of one shape stacked; bool/int/float values
    a tensor; anything else a list."""
    first = values[0]
    if _torch is not None and all(isinstance(v, _torch.Tensor) for v in values):
        if all(v.shape == first.shape for v in values):
            return _torch.stack(values)
        return values
    if isinstance(first, np.ndarray) and all(isinstance(v, np.ndarray) and v.shape == first.shape
                                             for v in values):
        return _torch.from_numpy(np.stack(values)) if _torch is not None else np.stack(values)
    for kind in (bool, int, float):
        if all(type(v) is kind for v in values):
            return _torch.tensor(values) if _torch is not None else np.array(values)
    return values


def _batch_dict(out) -> Dict[str, Any]:
    images, labels, indices, fields, extras = out
    batch = {"image": images, "label": labels, "index": indices}
    batch.update(fields)
    if extras:
        for key in extras[0]:
            if key in ("image", "label", "index"):
                continue
            batch[key] = _collate([e.get(key) for e in extras])
    return batch


def _batch_map(fn: Callable[[Dict[str, Any]], Any]):
    """batch_map= as the C++ side calls it: with next()'s arrays."""
    def call(out):
        return fn(_batch_dict(out))
    return call


def _size(value, name: str) -> int:
    from stoker._convert import parse_size
    n = parse_size(value)
    if n < 0:
        raise ValueError(f"{name} must be >= 0 bytes, got {value!r}")
    return n


class Loader:
    """Batches of decoded, transformed images from a dataset URI.

    uri: an ImageFolder root (local path or file://), or a manifest
        (.csv with header ``path,label`` or .jsonl with keys path, label),
        or a folder written by stoker.convert, or WebDataset tars: one .tar,
        a brace pattern (``train-{000000..000099}.tar``) or a folder of .tar
        files; local, s3:// or http(s)://; str, bytes or path-like. File names need not be UTF-8: they come
        back (sample_uri, classes, error messages) as os.fsdecode() gives
        them, so os.fsencode() recovers the bytes.
    transform: stoker.transforms.Compose([...]) of torchvision v2's ops, or
        imagenet_train(...) / imagenet_val(...) (default imagenet_val(224)).
    threads: decode threads; "auto" (the default): autotuned, from one per
        core of cpu_budget down to the fewest that keep up with the
        consumer (docs/autotune.md). A number is kept as given.
    prefetch_batches: batches prepared ahead of the consumer; "auto" (the
        default): autotuned, from 2 up to what storage latency needs and
        memory_budget holds (at most 32). A number is kept as given.
    cpu_budget: cores the autotuned decode threads may use; None (the
        default): every core this process may run on.
    on_error: "skip" counts a bad sample in stats() and logs its path once;
        "raise" raises stoker.Error naming the file and the reason.
    rank, world_size: this process's slice of the global order; default to
        torch.distributed when initialised, else RANK / WORLD_SIZE, else 0 / 1.
    endpoint_url: S3 endpoint (else AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL,
        the AWS config profile, or AWS).
    connect_timeout: seconds for one attempt's connect (s3://, http(s)://).
    read_timeout: seconds of silence, once connected, before an attempt is
        aborted as stalled and retried: no first byte of the reply, or a pause
        inside its body (botocore's read_timeout). A reply that keeps sending,
        however slowly, is not cut by it. 0: no limit.
    min_rate: bytes per second; a reply that arrives slower than this over
        each window of max(min_rate_window, read_timeout) seconds, yet never
        pauses for read_timeout, is aborted as a timeout and retried. 0 (the
        default): no minimum rate, as botocore; io_timeout still bounds it.
    io_timeout: deadline in seconds for one storage request (a sample, a
        listing page), retries included. Past it the request fails with the
        endpoint, bucket, key, reason and attempts made; when the server
        answered nothing in that time (gone, unreachable, failing every
        request) the error is "storage unavailable" and ends the epoch, raised
        from next() whatever on_error says.
    max_attempts: attempts per request, the first included; None: the
        AWS_MAX_ATTEMPTS variable, else the AWS profile's max_attempts, else
        no cap (retried until io_timeout).
    ca_bundle: a PEM file of the certificate authorities that https://
        servers must be signed by (a private CA in front of MinIO, Ceph, a
        corporate proxy), for s3:// and https:// samples alike. None: for
        s3://, AWS_CA_BUNDLE, else the AWS profile's ca_bundle, else the
        system's store; for https:// samples, the system's store.
    verify: False turns off the checking of https:// servers' certificates
        and host names; each endpoint read so is named in a warning on
        stderr. Never the default.
    lookahead: for remote samples (s3://, http(s)://), once an epoch has
        asked for all of its samples, read the first min(prefetch_batches,
        2) batches of the next epoch (epoch + 1) while this one drains, so the
        next pass starts without a round trip. A pass over another epoch,
        or from a resumed position, leaves them unused; they show in
        stats() as lookahead_reads and lookahead_used.
    jpeg_index: for crops of baseline JPEGs, remember where each MCU (16 x
        16 pixels for 4:2:0) begins in each file, found by walking the file
        once on its second decode, and from then on decode a JPEG of just
        the crop's MCU rows and columns, made by copying their bits, instead
        of Huffman-decoding the whole width of every row down to the crop's
        bottom. The pixels are the same either way. The second epoch costs
        more (the walk), every later one less; stats() shows
        jpeg_index_jumps, jpeg_index_crops and jpeg_index_bytes.
    jpeg_index_mb: memory for jpeg_index, about 12 bytes an MCU (6-12 KB
        for an ImageNet-sized image). Files past it keep only where their
        MCU rows begin (12 bytes a row), which still skips the rows above
        the crop, while that fits.
    max_in_flight: storage requests in flight at once; None: no cap but
        prefetch_batches (every sample of those batches may be requested at
        once).
    trace: record a span per sample per stage, for write_trace() (Chrome
        trace-event JSON for Perfetto or chrome://tracing). Off: no cost.
    fields: more of each sample than its image, label and index: a list of
        names, or a dict of name -> kind. From a manifest, the columns (CSV)
        or keys (JSON Lines) of those names; from a folder, the files beside
        each image with its name up to the first dot and the field's name
        after it (``cat/x.jpg``'s field ``"txt"`` is ``cat/x.txt``). Kinds:
        "int" and "float" (a tensor of the batch), "text" and "json" (a list
        of str), "bytes" (a list of bytes), "npy" (a .npy file: one stacked
        array when the batch's arrays share dtype and shape, else a list),
        "auto" (the default: from the values, or from the file's extension;
        docs/fields.md). A manifest's "bytes" and "npy" values are file paths.
        A field not asked for is never read; a sample missing one, or with a
        bad one, is skipped or raised by on_error, naming the file and field.
    map: fn(sample) -> sample, on each sample after its transform, on the
        decode threads: ``sample`` is a dict of its image (C x H x W, a copy
        the function may change or replace with one of the same shape and
        dtype), label, index and fields; what it returns replaces them, and
        its other keys are collated into the batch (tensors of one shape
        stacked, numbers as a tensor, else a list). The GIL is held only
        inside the call. An exception is the sample's error: skipped and
        counted, or raised, by on_error, naming the file.
    batch_map: fn(batch) -> anything, on each batch (the dict iteration
        would yield) on a thread of the loader, ahead of the consumer;
        iteration yields what it returns. An exception skips (or raises) the
        batch's error with its number.
    order: how a shard dataset (written by stoker.convert) is shuffled.
        "auto" (the default) and "chunk": pages of records (8 MB) in a
        keyed order, 16 open at a time, their samples shuffled together, so
        each page is read about once per epoch (docs/order.md); "sample": a
        permutation of every sample. Loose files are shuffled per sample.
        From an object store, the chunk order (or shuffle=False) reads a
        page with one ranged GET; the window in use and the next one (at
        least 8 pages ahead) are held.
    page_bytes, window_pages: the pages' size (8 MB) and how many are open
        at once (16) in the chunk order.
    where: a shard dataset's samples to keep, chosen from its index when it
        opens (no sample is read): an expression over the index's columns
        label, source, shard, bytes, width, height and image_format, such as
        "label in {1, 5} and width >= 256", or a function taking a dict of
        those columns (NumPy int64 arrays, one value per sample in storage
        order) and returning a bool array. batch["index"] stays the source
        position; num_samples counts the samples kept.
    label_field: WebDataset: the extension of each sample's label file
        (an integer in text; default "cls"); a sample without one has label
        -1. WebDataset fields are extensions ("txt", "json", "seg.png"), and
        "__key__" gives each sample's key; batch["index"] is the sample's
        position in the tars (docs/webdataset.md).
    cache_memory, cache_disk: keep the encoded bytes read from storage in
        memory and/or on local disk, up to these sizes (bytes, or "2GB";
        0, the default: off), and read them from there in later epochs. A
        read is kept while the budget has room and never evicted: with a
        fresh shuffle every epoch, each epoch then finds the kept share.
        stats() shows cache_hits, cache_misses and the bytes kept.
    cache_decoded: keep samples as the transform left them, in memory, up
        to this size (bytes, or "2GB"; 0, the default: off), and copy them
        into later epochs' batches instead of reading and decoding them
        again (tf.data's cache() after map): for validation, whose
        transform is the same every epoch. A random transform
        (RandomResizedCrop, flips, ColorJitter ...), fields= or map= raise.
        Kept while the budget has room, never evicted; stats() shows
        decoded_cache_hits, decoded_cache_samples and decoded_cache_bytes.
    cache_dir: the disk cache's directory (default $XDG_CACHE_HOME/stoker
        or ~/.cache/stoker): private (mode 0700), shared by the processes
        of a node (ranks of one job share one budget), every entry
        checksummed (docs/cache-format.md). Entries are keyed by URI and
        byte range: clear the directory when objects change under the same
        names.
    memory_budget: bytes (or "256MB") the loader's memory may grow by;
        "auto" (the default): a quarter of the memory available when the
        loader opens (MemAvailable, or what the cgroup's limit leaves), at
        least three batch buffers; None: no budget. prefetch_batches, max_in_flight,
        jpeg_index_mb, window_pages, page_bytes and cache_memory are lowered
        until the loader's pools fit it (docs/memory.md); stats() shows the
        plan (memory.*). A budget that cannot hold three batch buffers and
        the decode threads' scratch raises, saying what one batch needs.

    Iterating yields dicts: ``image`` (N x C x H x W uint8, or float32 after
    ToDtype(torch.float32)), ``label`` (int64), ``index`` (int64 position of
    the sample in the dataset listing), and each of ``fields`` by its name.
    Torch tensors when torch is installed, else NumPy arrays; either way no
    copy is made.
    """

    def __init__(self, uri: Union[str, bytes, os.PathLike], batch_size: int = 64,
                 transform: Optional[Transform] = None, shuffle: bool = False,
                 seed: int = 0, drop_last: bool = False,
                 threads: Union[int, str] = "auto", on_error: str = "skip",
                 prefetch_batches: Union[int, str] = "auto", max_pixels: int = 178956970,
                 rank: Optional[int] = None, world_size: Optional[int] = None,
                 endpoint_url: Optional[str] = None, connect_timeout: float = 10.0,
                 read_timeout: float = 5.0, io_timeout: float = 120.0,
                 max_attempts: Optional[int] = None, lookahead: bool = True,
                 jpeg_index: bool = True, jpeg_index_mb: int = 128,
                 max_in_flight: Optional[int] = None, trace: bool = False,
                 ca_bundle: Optional[Union[str, os.PathLike]] = None, verify: bool = True,
                 min_rate: float = 0.0, min_rate_window: float = 15.0,
                 fields: Optional[Union[Sequence[str], Mapping[str, str]]] = None,
                 map: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None,
                 batch_map: Optional[Callable[[Dict[str, Any]], Any]] = None,
                 order: str = "auto", page_bytes: int = 8 << 20, window_pages: int = 16,
                 where: Optional[Union[str, Callable[[Dict[str, Any]], Any]]] = None,
                 label_field: str = "cls", cache_memory: Union[int, str] = 0,
                 cache_disk: Union[int, str] = 0,
                 cache_dir: Optional[Union[str, os.PathLike]] = None,
                 memory_budget: Optional[Union[int, str]] = "auto",
                 cpu_budget: Optional[int] = None,
                 cache_decoded: Union[int, str] = 0):
        transform = transform if transform is not None else imagenet_val(224)
        if threads == "auto":
            threads = 0
        elif not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive int or 'auto', got {threads!r}")
        if prefetch_batches == "auto":
            prefetch_batches = 0
        elif not isinstance(prefetch_batches, int) or prefetch_batches < 1:
            raise ValueError(f"prefetch_batches must be a positive int or 'auto', "
                             f"got {prefetch_batches!r}")
        if cpu_budget is not None and (not isinstance(cpu_budget, int) or cpu_budget < 1):
            raise ValueError(f"cpu_budget must be a positive int (cores) or None, got {cpu_budget!r}")
        if memory_budget is None:
            budget = -1
        elif memory_budget == "auto":
            budget = 0
        else:
            budget = _size(memory_budget, "memory_budget")
            if budget == 0:
                raise ValueError("memory_budget must be > 0 bytes, 'auto' or None, got "
                                 f"{memory_budget!r}")
        if max_attempts is not None and (not isinstance(max_attempts, int) or max_attempts < 1):
            raise ValueError(f"max_attempts must be a positive int or None, got {max_attempts!r}")
        if max_in_flight is not None and (not isinstance(max_in_flight, int) or max_in_flight < 1):
            raise ValueError(f"max_in_flight must be a positive int or None, got {max_in_flight!r}")
        if not (min_rate >= 0) or not (min_rate_window > 0):
            raise ValueError(f"min_rate must be >= 0 bytes/s and min_rate_window > 0 s, got "
                             f"{min_rate!r} and {min_rate_window!r}")
        if not isinstance(verify, bool):
            raise TypeError(f"verify must be True or False (a CA file goes in ca_bundle=), "
                            f"got {verify!r}")
        if ca_bundle is not None and not os.path.isfile(ca_bundle):
            raise ValueError(f"ca_bundle: {os.fspath(ca_bundle)!r} is not a readable file")
        field_specs = _field_specs(fields)
        rank, world_size = _distributed_defaults(rank, world_size)
        self.transform = transform
        self.batch_size = batch_size
        self._core = _core.Loader(
            os.fsencode(uri), batch_size, transform, bool(shuffle), int(seed), bool(drop_last),
            int(threads), on_error,
            int(prefetch_batches), int(max_pixels), int(rank), int(world_size),
            endpoint_url or "", float(connect_timeout), float(read_timeout), float(io_timeout),
            int(max_attempts or 0), bool(lookahead), bool(jpeg_index),
            int(jpeg_index_mb), int(max_in_flight or 0), bool(trace),
            os.fspath(ca_bundle) if ca_bundle is not None else "", verify,
            float(min_rate), float(min_rate_window), fields=field_specs,
            map=_sample_map(map) if map is not None else None,
            batch_map=_batch_map(batch_map) if batch_map is not None else None,
            torch=_torch is not None, order=order, page_bytes=int(page_bytes),
            window_pages=int(window_pages), where=_where(where) if where is not None else None,
            label_field=str(label_field), cache_memory=_size(cache_memory, "cache_memory"),
            cache_disk=_size(cache_disk, "cache_disk"),
            cache_dir=os.fspath(cache_dir) if cache_dir is not None else "",
            memory_budget=budget, cpu_budget=int(cpu_budget or 0),
            cache_decoded=_size(cache_decoded, "cache_decoded"))
        self.fields = [name for name, _ in field_specs]
        self.rank, self.world_size = rank, world_size
        self._closed = False

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        return len(self._core)

    @property
    def shard_info(self) -> Optional[Dict[str, Any]]:
        """For a shard dataset (stoker.convert, or WebDataset tars): {format
        ("stoker" or "webdataset"), index (its URI, or the tars' pattern),
        index_bytes (of the index in memory), shards: [{uri, bytes,
        samples}], fields: {name: kind}, image_formats: {format: samples}};
        None for loose files."""
        return self._core.shard_info

    @property
    def num_samples(self) -> int:
        """Samples in the dataset listing (all ranks)."""
        return self._core.num_samples

    @property
    def classes(self):
        """Class names by label (ImageFolder); empty for manifests."""
        return self._core.classes

    @property
    def epoch(self) -> int:
        return self._core.epoch

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch (its order and random crops) of the next pass.
        Without it, each completed pass advances the epoch by one."""
        self._core.set_epoch(int(epoch))

    def sample_uri(self, index: int) -> str:
        """URI of the sample at `index` of the dataset listing."""
        return self._core.sample_uri(int(index))

    def sample_label(self, index: int) -> int:
        """Label of the sample at `index` of the dataset listing."""
        return self._core.sample_label(int(index))

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        core, as_torch = self._core, _torch is not None
        if self._closed:
            raise _core.Error("cancelled: the loader was closed")
        core.start()
        try:
            while True:
                try:
                    out = core.next(as_torch)
                except _core.Error:
                    if self._closed:  # close() from another thread ends this pass
                        return
                    raise
                if out is None:
                    return
                # batch_map's result comes alone.
                yield out[0] if len(out) == 1 else _batch_dict(out)
        finally:
            # A consumer that stops early (break, exception, del) must not
            # leave threads decoding ahead.
            core.stop()

    def stats(self) -> Dict[str, Any]:
        """Every figure of the loader's metrics registry since it was made:
        samples_delivered, samples_skipped, batches_delivered, bytes_read,
        requests, retries, timeouts (attempts cut by a connect, read or io
        timeout), stall_s (time spent waiting in next), errors_by_kind;
        wait.fetch_s, wait.decode_s and wait.collate_s (stall_s split by the
        stage the awaited batch was waiting on), wait.consumer_s (time the
        next batch was ready while the consumer was away), consumer_s;
        fetch.latency_* (request to bytes: count, mean and p50/p90/p99
        seconds); one dict per stage under ``stages`` and by name (plan,
        fetch, decode, collate, deliver: items, bytes, busy_cpu_s,
        wait_input_s, wait_output_s, parallelism) and one per queue under
        ``queues`` (in_flight, fetched, assembling, complete: capacity,
        puts, gets, mean_occupancy, empty_fraction). lookahead_reads
        counts remote reads of the next epoch's first batches issued while
        an epoch drained (also in requests), lookahead_used how many of
        them the next pass took. jpeg_index_jumps counts JPEG decodes that
        skipped MCU rows or columns (jpeg_index), jpeg_index_crops those of
        them cut to the crop's MCU rows and columns, jpeg_index_bytes the
        index's memory."""
        return self._core.stats()

    def profile(self) -> Dict[str, Any]:
        """Where the time went since the first batch was asked for (what
        `stoker profile` prints): per stage its rate per core, utilisation
        and wait_share (the share of all waiting attributed to it; the
        consumer counts as a stage when the loader waited for it), the
        bottleneck and a sentence saying so, a what-if (images/s with one
        more decode thread; the step time above which training would not
        stall), I/O latency percentiles, requests in flight and bytes per
        request, CPU-seconds and energy per image (energy_source "rapl"
        or "estimate")."""
        return self._core.profile()

    def write_trace(self, path: Union[str, os.PathLike]) -> None:
        """Writes the spans recorded so far (trace=True) as Chrome
        trace-event JSON, which Perfetto and chrome://tracing open."""
        data = self._core.trace_json()
        if not data:
            raise ValueError("no trace was recorded: make the Loader with trace=True")
        with open(path, "w", encoding="utf-8") as f:
            f.write(data)

    @property
    def threads(self) -> int:
        """Decode threads."""
        return self._core.threads

    def set_threads(self, threads: Union[int, str]) -> None:
        """Decode threads from now on, also in the middle of an epoch. A
        number stops their autotuning; "auto" starts again from one per
        core of cpu_budget, autotuned when the loader was made with
        threads="auto". Batches are identical for any thread count."""
        self._core.set_threads(0 if threads == "auto" else int(threads))

    def stop(self) -> None:
        """Ends the pass in progress (its threads joined); the next
        iteration starts the epoch again."""
        self._core.stop()

    def state_dict(self) -> Dict[str, Any]:
        """Where iteration stands, O(1) in size: epoch and the global position
        after the last batch this loader returned. Save it with the model."""
        return self._core.state_dict()

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Makes the next pass resume right after the saved position: nothing
        replayed, nothing skipped, also with a different world size (the
        global position carries on, sliced by the new world size).
        set_epoch(state["epoch"]) before that pass keeps the position."""
        self._core.load_state_dict(dict(state))

    def close(self) -> None:
        """Stops the worker threads, for good (also done when the loader is
        deleted): a pass in progress in another thread ends, and iterating
        afterwards raises stoker.Error."""
        self._closed = True
        self._core.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
