"""Checks that a client written from packages/protocol/README.md alone sees what the README says.

    /usr/bin/python3 tools/test/python_contract.py tcp://127.0.0.1:8786 CHECK

Run by tools/test/python-client.test.ts against a scheduler and two one-thread workers that loaded
examples/tasks/tasks.mjs. Prints "ok CHECK" and exits 0, or raises.
"""

import json
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent.parent / "examples" / "python"))

import grpc  # noqa: E402
from skein_client import PROTOCOL_VERSION, QUOTE_KEY, REF_KEY, SkeinClient, SkeinTaskError, pb  # noqa: E402

JSON = pb.common.ENCODING_JSON


def eq(actual, expected, what):
    if actual != expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {actual!r}")


def contains(text, part, what):
    if part not in text:
        raise AssertionError(f"{what}: expected {part!r} in {text!r}")


def erred(client, key):
    kind, err = client.outcome(key)
    eq(kind, "erred", f"outcome of {key}")
    return err


def poll(what, fn, timeout=20.0):
    """Polls fn() until it returns a true value (a worker's GetStatus has no stream to wait on)."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s")
        time.sleep(0.02)


def check_json_result_never_v8(address):
    """(a) A JSON result request for a value JSON cannot carry gets `erred` naming the value, not V8."""
    with SkeinClient(address) as c:
        asked = c.call("nan", result_encoding=JSON)
        unspecified = c.call("nan")  # JSON arguments, result_encoding unset: JSON too
        c.submit([asked, unspecified])
        for t in (asked, unspecified):
            err = erred(c, t.key)
            eq(err.type_name, "InvalidArgumentError", "error type")
            eq(err.code, "invalid_argument", "error code")
            contains(err.message, f"The result of task {t.key} is not JSON-representable: NaN at the top level", "message")
            eq(err.details.get("problem"), "NaN at the top level", "details_json.problem")
            eq(c.updates(t.key), ["erred"], f"updates of {t.key}")


def check_marker_shaped_data(address):
    """(b) Data shaped like the markers, quoted as the README says, comes back unchanged; a
    reference inside a quoted object still resolves; unquoted, the same data is a reference."""
    with SkeinClient(address) as c:
        a = c.call("inc", 1)
        data = [
            {REF_KEY: "not-a-key"},
            {QUOTE_KEY: {"x": 1}},
            {QUOTE_KEY: [1, 2]},
            {REF_KEY: 7},
            {"deep": [{REF_KEY: "k", "other": True}]},
        ]
        plain = c.call("echo", data)
        mixed = c.call("echo", {REF_KEY: "label", "value": a})  # quoted; `a` inside resolves
        got = c.compute([plain, mixed])
        eq(got[plain.key], data, "echoed marker-shaped data")
        eq(got[mixed.key], {REF_KEY: "label", "value": 2}, "quoted object with a reference inside")

        # The same shape sent unquoted is a reference to a key the task does not depend on.
        key = f"echo-raw-{uuid.uuid4().hex}"
        spec = pb.common.TaskSpec(
            key=key,
            function=pb.common.FunctionRef(registered="echo"),
            args=pb.common.Value(encoding=JSON, data=json.dumps([{REF_KEY: "not-a-key"}]).encode()),
        )
        c._send(pb.scheduler.ClientMessage(update_graph=pb.scheduler.UpdateGraph(tasks=[spec], wanted_keys=[key])))
        c._wanted.add(key)
        err = erred(c, key)
        contains(err.message, f"Task {key} refers to the result of not-a-key, which is not among its inputs", "message")


def check_no_worker(address):
    """(c) A task restricted to a worker that does not exist gets `no_worker` (no result, no error);
    cancelling it answers `cancelled` once. A registered function no worker has errs at once."""
    with SkeinClient(address) as c:
        t = c.call("inc", 1, workers=["tcp://127.0.0.1:1"])
        c.submit([t])
        c.wait_until(lambda: c.no_worker_reason(t.key) is not None)
        reason = c.no_worker_reason(t.key)
        contains(reason, 'no running worker can run it: it needs the workers ["tcp://127.0.0.1:1"]', "reason")
        contains(reason, "(no noWorkersTimeoutMs is set)", "reason")
        eq([s.finish for s in c.story([t.key])][-1], "no-worker", "scheduler state")
        c.cancel([t.key])
        c.wait_until(lambda: t.key not in c._cancel_acks)
        eq(c.updates(t.key), ["no_worker", "cancelled"], f"updates of {t.key}")

        missing = c.call("no_such_function", 1)
        c.submit([missing])
        err = erred(c, missing.key)
        eq((err.type_name, err.code), ("SkeinError", "not_found"), "error of an unknown registered function")
        contains(err.message, 'No worker has a function registered as "no_such_function"', "message")


def check_cancel_then_resubmit(address):
    """(d) CancelKeys of a running task: one `cancelled`; the function keeps its worker's thread
    until it returns. The key submitted again gets one `in_memory`, and nothing else ever."""
    with SkeinClient(address) as c:
        key = f"slow-{uuid.uuid4().hex}"
        c.submit([c.call("slowInc", 1, 2500, key=key)])

        def running_on():
            for s in c.story([key]):
                if s.finish == "processing" and s.worker:
                    return s.worker
            return None

        worker = poll(f"{key} processing", running_on)
        poll(f"{key} executing on {worker}", lambda: c.worker_status(worker).executing == 1)
        c.cancel([key])
        c.wait_until(lambda: key not in c._cancel_acks)
        eq(c.updates(key), ["cancelled"], f"updates of {key} after the cancel")
        eq(c.worker_status(worker).executing, 1, "the cancelled function still runs on its thread")
        c.submit([c.call("slowInc", 1, 2500, key=key)])
        eq(c.gather([key])[key], 2, "result of the resubmission")
        # The cancelled run, wherever it went, has returned: its worker's thread is free again.
        poll("workers idle", lambda: all(c.worker_status(w.address).executing == 0 for w in
                                           c._stub.GetInfo(pb.scheduler.GetInfoRequest()).workers))
        barrier = c.call("inc", 41)
        eq(c.compute([barrier])[barrier.key], 42, "barrier")
        eq(c.updates(key), ["cancelled", "in_memory"], f"updates of {key}")


def check_sizes(address):
    """More than 4 MiB of inline values in one ClientSessionResponse (values of up to 64 KiB come
    inline, up to 2,000 updates a batch); a larger value is fetched with GetData; GetWhoHas."""
    n, size = 80, 60_000  # 80 JSON strings of 60,002 bytes: 4.8 MB reported in one batch
    with SkeinClient(address) as first:
        tasks = [first.call("text", size, chr(ord("a") + i % 26), key=f"text-{uuid.uuid4().hex}") for i in range(n)]
        big = first.call("text", 200_000, "z")
        first.compute(tasks + [big])
        # Wanted by a second client at once: every value is reported in the same event.
        with SkeinClient(address) as second:
            second.want([t.key for t in tasks])
            got = second.gather([t.key for t in tasks])
        for i, t in enumerate(tasks):
            eq(got[t.key], chr(ord("a") + i % 26) * size, f"value of {t.key}")

        kind, m = first._outcomes[big.key]
        eq((kind, m.HasField("value"), len(m.workers)), ("in_memory", False, 1), "report of a 200 kB result")
        eq(first.gather([big.key])[big.key], "z" * 200_000, "value fetched with GetData")
        holders = first.who_has([tasks[0].key, big.key, "no-such-key"])
        eq(len(holders[tasks[0].key]), 1, "GetWhoHas of an inline value lists its holder")
        eq(holders[big.key], list(m.workers), "GetWhoHas of a fetched value")
        eq(holders["no-such-key"], [], "GetWhoHas of an unknown key")


def check_errors_and_unknown_keys(address):
    """An erred input's error reaches its dependents with the input's key; WantKeys of an unknown
    key is answered `cancelled`; a major version the scheduler does not speak is refused."""
    with SkeinClient(address) as c:
        bad = c.call("fail", "boom")
        child = c.call("add", bad, 1)
        c.submit([child])
        err = erred(c, child.key)
        eq((err.type_name, err.message, err.code, err.remote_key), ("Error", "boom", "", bad.key), "inherited error")
        contains(err.stack, "boom", "stack")

        c.want(["never-submitted"])
        kind, reason = c.outcome("never-submitted")
        eq(kind, "cancelled", "outcome of an unknown key")
        contains(reason, "the scheduler does not know this key", "reason")

    major = int(PROTOCOL_VERSION.split(".")[0])
    try:
        hello = pb.scheduler.ClientHello(protocol_version=f"{major + 1}.0", client_id="py-old")
        with grpc.insecure_channel(address.replace("tcp://", "")) as ch:
            stub = pb.scheduler_grpc.SchedulerServiceStub(ch)
            for _ in stub.ClientSession(iter([pb.scheduler.ClientSessionRequest(
                    messages=[pb.scheduler.ClientMessage(hello=hello)])]), timeout=10):
                raise AssertionError("a Welcome for an unknown major version")
        raise AssertionError("the session with an unknown major version ended without an error")
    except grpc.RpcError as e:
        eq(e.code(), grpc.StatusCode.FAILED_PRECONDITION, "status")
        contains(e.details(), f"speaks skein protocol {PROTOCOL_VERSION} but the other end speaks {major + 1}.0", "details")


CHECKS = {name[len("check_"):]: fn for name, fn in globals().items() if name.startswith("check_")}

if __name__ == "__main__":
    address, name = sys.argv[1], sys.argv[2]
    if name not in CHECKS:
        raise SystemExit(f"unknown check {name}; known: {', '.join(CHECKS)}")
    CHECKS[name](address)
    print(f"ok {name}")
