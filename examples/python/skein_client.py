"""A small Skein client in Python, written from the same .proto files as the TypeScript packages.

It speaks the `skein.v1` protocol over gRPC: one `SchedulerService.ClientSession` bidi stream per
client. Tasks call functions *registered* on the workers (`skein worker --module tasks.mjs`), with
JSON-encoded arguments, so no JavaScript runs in Python and no Python runs in the workers.

    from skein_client import SkeinClient

    with SkeinClient("tcp://127.0.0.1:8786") as client:
        a = client.call("inc", 1)
        b = client.call("add", a, 10)          # a task as an argument: its result is passed in
        print(client.compute([b])[b.key])      # 12

The Python stubs are generated at run time from proto/ with `python3 -m grpc_tools.protoc` into
a temporary folder (set SKEIN_PROTO_GEN to keep them in a folder of your choice). Needs grpcio and
grpcio-tools (Debian: python3-grpcio, python3-grpc-tools).
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import queue
import shutil
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional

PROTOCOL_VERSION = "1.3"
REF_KEY = "__skein_ref__"
QUOTE_KEY = "__skein_quote__"
PROTO_DIR = Path(__file__).resolve().parent.parent.parent / "proto"

try:
    import grpc
    from grpc_tools import protoc
except ImportError as e:  # pragma: no cover - depends on the machine
    raise SystemExit(
        f"skein_client needs grpcio and grpcio-tools ({e}). On Debian: "
        "apt-get install python3-grpcio python3-grpc-tools (then use /usr/bin/python3), "
        "or pip install grpcio grpcio-tools."
    )


def _generate_stubs() -> Any:
    """Runs protoc on proto/skein/v1/*.proto and imports the generated modules."""
    out = os.environ.get("SKEIN_PROTO_GEN")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
    else:
        out = tempfile.mkdtemp(prefix="skein-proto-")
        atexit.register(shutil.rmtree, out, True)
    protos = sorted(str(p) for p in (PROTO_DIR / "skein" / "v1").glob("*.proto"))
    if not protos:
        raise SystemExit(f"skein_client: no .proto files under {PROTO_DIR}")
    # grpc_tools ships the well-known types; include them so imports of google/protobuf resolve.
    well_known = Path(protoc.__file__).resolve().parent / "_proto"
    args = ["grpc_tools.protoc", f"-I{PROTO_DIR}"]
    if well_known.is_dir():
        args.append(f"-I{well_known}")
    args += [f"--python_out={out}", f"--grpc_python_out={out}", *protos]
    if protoc.main(args) != 0:
        raise SystemExit(f"skein_client: protoc failed on {PROTO_DIR}")
    sys.path.insert(0, out)

    class Stubs:
        common = importlib.import_module("skein.v1.common_pb2")
        scheduler = importlib.import_module("skein.v1.scheduler_pb2")
        scheduler_grpc = importlib.import_module("skein.v1.scheduler_pb2_grpc")
        worker = importlib.import_module("skein.v1.worker_pb2")
        worker_grpc = importlib.import_module("skein.v1.worker_pb2_grpc")

    return Stubs


pb = _generate_stubs()


# One ClientSessionResponse may carry up to 2,000 updates, each with a value of up to 64 KiB inline:
# far more than grpc's default 4 MiB receive limit. Skein peers set no limit (packages/common grpc.ts).
# Connections to 127.0.0.1 must not go through an HTTP proxy from the environment.
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
    ("grpc.enable_http_proxy", 0),
]


def grpc_target(address: str) -> str:
    """tcp://host:port -> host:port (what grpc wants)."""
    return address[len("tcp://"):] if address.startswith("tcp://") else address


class SkeinTaskError(Exception):
    """A task failed on a worker (or the scheduler gave up on it)."""

    def __init__(self, key: str, type_name: str, message: str, stack: str = "", code: str = "",
                 remote_key: str = "", details_json: str = ""):
        super().__init__(f"{type_name}: {message}")
        self.key = key
        self.type_name = type_name
        self.message = message
        self.stack = stack
        # Skein's own errors have a code (see RemoteError in the protocol README); user errors none.
        self.code = code
        # The task that failed: `key` itself, or the input whose error this key inherited.
        self.remote_key = remote_key or key
        self.details = json.loads(details_json) if details_json else {}


class SkeinCancelledError(Exception):
    """The key will never have a result (cancelled, or its graph cannot run)."""


class Task:
    """One task of a graph: `function(*args)` on a worker. Pass it as an argument to another task
    to use its result there."""

    def __init__(self, function: str, args: tuple, key: Optional[str] = None, priority: int = 0,
                 retries: int = 0, workers: Iterable[str] = (), allow_other_workers: bool = False,
                 resources: Optional[Dict[str, float]] = None, result_encoding: int = 0):
        self.function = function
        self.args = list(args)
        self.key = key or f"{function}-{uuid.uuid4().hex}"
        self.priority = priority
        self.retries = retries
        self.workers = list(workers)
        self.allow_other_workers = allow_other_workers
        self.resources = dict(resources or {})
        # 0 (unspecified): with JSON arguments the worker answers JSON (bytes as RAW), never V8.
        self.result_encoding = result_encoding

    def __repr__(self) -> str:
        return f"Task({self.key})"

    def dependencies(self) -> List["Task"]:
        found: List[Task] = []
        _collect_tasks(self.args, found)
        return found

    def to_spec(self) -> Any:
        deps: List[Task] = self.dependencies()
        data = json.dumps(_encode_refs(self.args), separators=(",", ":")).encode("utf-8")
        return pb.common.TaskSpec(
            key=self.key,
            function=pb.common.FunctionRef(registered=self.function),
            args=pb.common.Value(encoding=pb.common.ENCODING_JSON, data=data),
            dependencies=sorted({d.key for d in deps}),
            priority=self.priority,
            retries=self.retries,
            workers=self.workers,
            allow_other_workers=self.allow_other_workers,
            resources=self.resources,
            result_encoding=self.result_encoding,
        )


def _collect_tasks(value: Any, into: List[Task]) -> None:
    if isinstance(value, Task):
        into.append(value)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _collect_tasks(v, into)
    elif isinstance(value, dict):
        for v in value.values():
            _collect_tasks(v, into)


def _encode_refs(value: Any) -> Any:
    """Replaces each Task at any depth with {"__skein_ref__": key}, and quotes each dict that has a
    key named like a marker as {"__skein_quote__": dict}, so data is never read as a reference
    (see TaskSpec.args in proto/skein/v1/common.proto)."""
    if isinstance(value, Task):
        return {REF_KEY: value.key}
    if isinstance(value, (list, tuple)):
        return [_encode_refs(v) for v in value]
    if isinstance(value, dict):
        encoded = {k: _encode_refs(v) for k, v in value.items()}
        return {QUOTE_KEY: encoded} if REF_KEY in value or QUOTE_KEY in value else encoded
    return value


class SkeinClient:
    """A client session with a Skein scheduler."""

    def __init__(self, address: str, client_id: Optional[str] = None, timeout: float = 60.0):
        self.address = address
        self.client_id = client_id or f"python-{uuid.uuid4().hex[:12]}"
        self.timeout = timeout
        self.welcome: Any = None
        self._outgoing: "queue.Queue[Any]" = queue.Queue()
        self._cond = threading.Condition()
        self._outcomes: Dict[str, tuple] = {}
        self._stream_error: Optional[BaseException] = None
        self._stream_ended = False
        self._wanted: set = set()
        self._sent: set = set()
        self._closed = False
        self._no_worker: Dict[str, str] = {}
        # Every update in arrival order, as (kind, key): what the protocol README promises per key.
        self._log: List[tuple] = []
        # Keys cancelled whose `cancelled` answer has not come yet, with how many are due: reports
        # about such a key before that answer concern the cancelled task, not a resubmission.
        self._cancel_acks: Dict[str, int] = {}
        self._channel = grpc.insecure_channel(grpc_target(address), options=CHANNEL_OPTIONS)
        self._stub = pb.scheduler_grpc.SchedulerServiceStub(self._channel)
        self._responses = self._stub.ClientSession(self._requests())
        self._reader = threading.Thread(target=self._read, name="skein-client-reader", daemon=True)
        self._reader.start()
        self._send(pb.scheduler.ClientMessage(
            hello=pb.scheduler.ClientHello(protocol_version=PROTOCOL_VERSION, client_id=self.client_id)))
        with self._cond:
            if not self._cond.wait_for(lambda: self.welcome is not None or self._stream_ended, timeout):
                self._channel.close()
                raise TimeoutError(f"no Welcome from the scheduler at {address} within {timeout} s")
            if self.welcome is None:
                self._channel.close()
                raise ConnectionError(f"the scheduler at {address} ended the session: {self._stream_error}")

    # ---- the stream ----

    def _requests(self) -> Iterator[Any]:
        while True:
            batch = [self._outgoing.get()]
            # Batch whatever else is queued already, as every Skein peer does.
            while True:
                try:
                    batch.append(self._outgoing.get_nowait())
                except queue.Empty:
                    break
            messages = [m for m in batch if m is not None]
            if messages:
                yield pb.scheduler.ClientSessionRequest(messages=messages)
            if any(m is None for m in batch):
                return

    def _send(self, message: Any) -> None:
        if self._closed:
            raise RuntimeError("this SkeinClient is closed")
        self._outgoing.put(message)

    def _read(self) -> None:
        try:
            for response in self._responses:
                with self._cond:
                    for update in response.updates:
                        self._on_update(update)
                    self._cond.notify_all()
        except grpc.RpcError as e:
            if not self._closed:
                self._stream_error = e
        finally:
            with self._cond:
                self._stream_ended = True
                self._cond.notify_all()

    def _on_update(self, update: Any) -> None:
        kind = update.WhichOneof("kind")
        if kind == "welcome":
            self.welcome = update.welcome
            return
        key = getattr(update, kind).key
        self._log.append((kind, key))
        due = self._cancel_acks.get(key)
        if due is not None:
            # Reports up to the answer to our CancelKeys concern the cancelled task.
            if kind == "cancelled":
                if due > 1:
                    self._cancel_acks[key] = due - 1
                else:
                    del self._cancel_acks[key]
            return
        if kind == "no_worker":
            m = update.no_worker
            if m.resolved:
                self._no_worker.pop(m.key, None)
            else:
                self._no_worker[m.key] = m.reason
        elif kind == "in_memory":
            m = update.in_memory
            self._outcomes[m.key] = ("in_memory", m)
        elif kind == "erred":
            self._outcomes[update.erred.key] = ("erred", update.erred)
        elif kind == "cancelled":
            # The scheduler dropped this client's want of the key (an input was cancelled, a restart).
            self._outcomes[key] = ("cancelled", update.cancelled)
            self._wanted.discard(key)
            self._sent.discard(key)
        elif kind == "lost":
            self._outcomes.pop(key, None)
        if kind in ("in_memory", "erred", "cancelled"):
            self._no_worker.pop(key, None)

    # ---- the API ----

    def call(self, function: str, *args: Any, key: Optional[str] = None, **options: Any) -> Task:
        """A task calling the registered `function` with `args` (JSON values and other Tasks).
        `options`: priority, retries, workers, allow_other_workers, resources, result_encoding.
        Nothing is sent until `submit` or `compute`."""
        return Task(function, args, key=key, **options)

    def submit(self, tasks: Iterable[Task]) -> List[str]:
        """Sends the tasks (and every task they depend on, once per session) and wants their keys."""
        wanted = list(tasks)
        graph: Dict[str, Task] = {}
        stack = list(wanted)
        while stack:
            t = stack.pop()
            if t.key in graph or t.key in self._sent:
                continue
            graph[t.key] = t
            stack.extend(t.dependencies())
        keys = [t.key for t in wanted]
        with self._cond:
            for k in keys:
                if k not in self._wanted:
                    self._outcomes.pop(k, None)
        self._send(pb.scheduler.ClientMessage(update_graph=pb.scheduler.UpdateGraph(
            tasks=[t.to_spec() for t in graph.values()],
            wanted_keys=keys,
            stimulus_id=f"update-graph-{uuid.uuid4().hex[:8]}",
        )))
        self._sent.update(graph)
        self._wanted.update(keys)
        return keys

    def gather(self, keys: Iterable[str], timeout: Optional[float] = None) -> Dict[str, Any]:
        """Waits until every key is in memory, erred or cancelled; returns key -> value.
        Raises SkeinTaskError / SkeinCancelledError for the first failed key (in order)."""
        keys = list(keys)
        timeout = self.timeout if timeout is None else timeout
        with self._cond:
            done = self._cond.wait_for(
                lambda: self._stream_ended or all(k in self._outcomes for k in keys), timeout)
            if not done:
                pending = [k for k in keys if k not in self._outcomes]
                raise TimeoutError(f"no result within {timeout} s for {pending}")
            if not all(k in self._outcomes for k in keys):
                raise ConnectionError(f"the client session ended before all results came: {self._stream_error}")
            outcomes = {k: self._outcomes[k] for k in keys}
        results: Dict[str, Any] = {}
        for k, (kind, msg) in outcomes.items():
            if kind == "erred":
                err = msg.error
                raise SkeinTaskError(k, err.type or "Error", err.message, err.stack, err.code, err.key,
                                     err.details_json)
            if kind == "cancelled":
                raise SkeinCancelledError(f"{k} was cancelled: {msg.reason}")
            results[k] = self._value(msg)
        return results

    def compute(self, tasks: Iterable[Task], timeout: Optional[float] = None) -> Dict[str, Any]:
        """submit + gather: key -> value for each task."""
        return self.gather(self.submit(tasks), timeout)

    def outcome(self, key: str, timeout: Optional[float] = None) -> tuple:
        """Waits for one key; returns ("in_memory", value) or ("erred", SkeinTaskError) or
        ("cancelled", reason), without raising for a failed task."""
        try:
            return ("in_memory", self.gather([key], timeout)[key])
        except SkeinTaskError as e:
            return ("erred", e)
        except SkeinCancelledError as e:
            return ("cancelled", str(e))

    def release(self, keys: Iterable[str]) -> None:
        """Drops this client's reference to the keys: the scheduler may forget them."""
        keys = [k for k in keys if k in self._wanted]
        if not keys:
            return
        self._send(pb.scheduler.ClientMessage(release_keys=pb.scheduler.ReleaseKeys(
            keys=keys, stimulus_id=f"release-{uuid.uuid4().hex[:8]}")))
        self._wanted.difference_update(keys)
        with self._cond:
            for k in keys:
                self._outcomes.pop(k, None)

    def cancel(self, keys: Iterable[str]) -> None:
        """Stops the keys (CancelKeys). The scheduler answers each with one `cancelled`; until then
        reports about a key concern the cancelled task. Submitting a key again starts afresh."""
        keys = list(keys)
        with self._cond:
            for k in keys:
                self._cancel_acks[k] = self._cancel_acks.get(k, 0) + 1
                self._outcomes[k] = ("cancelled", pb.scheduler.KeyCancelled(key=k, reason="cancelled by this client"))
                self._no_worker.pop(k, None)
        self._send(pb.scheduler.ClientMessage(cancel_keys=pb.scheduler.CancelKeys(
            keys=keys, stimulus_id=f"cancel-{uuid.uuid4().hex[:8]}")))
        self._wanted.difference_update(keys)
        self._sent.difference_update(keys)

    def want(self, keys: Iterable[str]) -> None:
        """Wants keys the scheduler already knows (WantKeys), e.g. submitted by another client.
        A key it does not know is answered with `cancelled`."""
        keys = list(keys)
        with self._cond:
            for k in keys:
                if k not in self._wanted:
                    self._outcomes.pop(k, None)
        self._send(pb.scheduler.ClientMessage(want_keys=pb.scheduler.WantKeys(
            keys=keys, stimulus_id=f"want-{uuid.uuid4().hex[:8]}")))
        self._wanted.update(keys)

    def updates(self, key: str) -> List[str]:
        """The kinds of every update received for `key`, in order (e.g. ["no_worker", "cancelled"])."""
        with self._cond:
            return [kind for kind, k in self._log if k == key]

    def wait_until(self, predicate: Any, timeout: Optional[float] = None) -> None:
        """Waits until `predicate()` holds (checked after every batch of updates)."""
        timeout = self.timeout if timeout is None else timeout
        with self._cond:
            if not self._cond.wait_for(lambda: self._stream_ended or predicate(), timeout):
                raise TimeoutError(f"condition not met within {timeout} s")

    def no_worker_reason(self, key: str) -> Optional[str]:
        """The reason of the last unresolved `no_worker` report for key, or None."""
        with self._cond:
            return self._no_worker.get(key)

    def who_has(self, keys: Iterable[str]) -> Dict[str, List[str]]:
        """SchedulerService.GetWhoHas: the workers holding each key now (none unless in memory)."""
        res = self._stub.GetWhoHas(pb.scheduler.GetWhoHasRequest(keys=list(keys)), timeout=self.timeout)
        return {w.key: list(w.workers) for w in res.who_has}

    def story(self, keys: Iterable[str]) -> List[Any]:
        """SchedulerService.GetStory: the scheduler's transitions of the keys, oldest first."""
        return list(self._stub.GetStory(pb.scheduler.GetStoryRequest(keys=list(keys)), timeout=self.timeout).transitions)

    def worker_status(self, worker: str) -> Any:
        """WorkerService.GetStatus of one worker (executing counts cancelled runs still going)."""
        with grpc.insecure_channel(grpc_target(worker), options=CHANNEL_OPTIONS) as channel:
            stub = pb.worker_grpc.WorkerServiceStub(channel)
            return stub.GetStatus(pb.worker.GetStatusRequest(), timeout=self.timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Ends the session (the scheduler releases every key still wanted) and the channel."""
        if self._closed:
            return
        self._outgoing.put(None)  # ends the request stream: a half-close
        with self._cond:
            self._cond.wait_for(lambda: self._stream_ended, timeout)
        self._closed = True
        self._responses.cancel()
        self._channel.close()
        self._reader.join(timeout)

    def __enter__(self) -> "SkeinClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- values ----

    def _value(self, m: Any) -> Any:
        if m.HasField("value"):
            return decode_value(m.value)
        # Too large to come inline: stream it from a worker that holds it; when every holder the
        # report named fails, ask the scheduler where the key is now (GetWhoHas).
        last: Optional[BaseException] = None
        tried: List[str] = []
        for holders in (list(m.workers), None):
            if holders is None:
                holders = [w for w in self.who_has([m.key]).get(m.key, []) if w not in tried]
            for worker in holders:
                tried.append(worker)
                try:
                    return self._get_data(worker, m.key)
                except (grpc.RpcError, KeyError) as e:
                    last = e
        raise ConnectionError(f"could not fetch {m.key} from any of {tried}: {last}")

    def _get_data(self, worker: str, key: str) -> Any:
        with grpc.insecure_channel(grpc_target(worker), options=CHANNEL_OPTIONS) as channel:
            stub = pb.worker_grpc.WorkerServiceStub(channel)
            encoding, chunks = None, []
            for chunk in stub.GetData(pb.worker.GetDataRequest(keys=[key], requester="client"),
                                      timeout=self.timeout):
                if chunk.key != key:
                    continue
                if chunk.missing:
                    raise KeyError(f"{worker} does not hold {key}")
                if encoding is None:
                    encoding = chunk.encoding
                chunks.append(chunk.data)
        return decode_value(pb.common.Value(encoding=encoding or pb.common.ENCODING_UNSPECIFIED,
                                            data=b"".join(chunks)))


def decode_value(value: Any) -> Any:
    """JSON values become Python values; RAW stays bytes. V8 (JS-only) cannot be read here."""
    if value.encoding == pb.common.ENCODING_JSON:
        return json.loads(value.data.decode("utf-8")) if value.data else None
    if value.encoding in (pb.common.ENCODING_RAW, pb.common.ENCODING_RAW_UINT8ARRAY):
        return bytes(value.data)
    raise ValueError(
        "the result is V8-encoded (a JavaScript-only value such as a Map, typed array or BigInt); "
        "return JSON-safe values from functions called from Python")
