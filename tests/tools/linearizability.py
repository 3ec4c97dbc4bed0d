"""Linearizability checker for register histories, one key at a time.

A history records what clients saw: for each operation its call and return times and its result.
It is linearizable when each operation can be given one instant inside its interval such that,
taken in that order, the results are those of one sequential register. Operations whose outcome is
unknown (the client timed out or its connection died; return time ``math.inf``, output ``None``)
may take effect at any instant after their call, or never.

The search is Wing & Gong's with the memoization of Lowe and of Porcupine: walk the call and
return events in time order, try to linearize each operation whose call precedes every pending
return, backtrack when a return is reached whose operation is not yet linearized, and never
visit a (set of linearized operations, register value) twice. Each pruning below keeps at least
one linearization if any exists (the argument is given with each), and a brute-force oracle in
the tests checks that on thousands of small histories:

- Pure ops go at once. A completed op that cannot change the register (a read, a failed cas)
  and fits now is linearized with no alternative tried: in any order that works, moving it to
  now still works (it changes nothing, and whatever must precede it returned before its call,
  so is linearized already).
- Effect classes. Of the ops that may go next and would change the register the same way (same
  kind and input), only the one with the earliest return is tried: the others can take its
  place later. Among unknown ops of a class, that is the earliest called.
- Unknown ops just in time. An unknown op is worth linearizing only right before an op that
  could not go without it (a read of its value, a cas expecting its value, a failed cas needing
  the value to change): in an order where something else comes between, it can be moved later
  past pure ops that fit either way, or dropped before a blind write. So an unknown op is tried
  only when such an op may go next, and until that op comes, blind writes are refused.
- Unknown ops that nothing can observe are dropped up front: an unknown write whose value no
  read returned and no cas expects, when no cas failed.
- Subsumption. A configuration that used more unknown ops than one already visited, all else
  equal, can do nothing that one could not, so it counts as visited too.

With these, 3000 ops by 8 clients are decided in about a second when each write writes a value of
its own (as fault tests should: it makes every read say which write it saw). With few distinct
values and many unknown outcomes, unknown writes can explain almost any read, and refuting such
a history may exceed the budget.

The search is bounded by ``max_steps``; past it the verdict is ``TOO_COMPLEX``, which is not a
pass (``Result.ok`` is false). Times that are equal count as overlapping (a call at t may be
linearized before a return at t). Checking keys separately is sound because linearizability is
compositional (Herlihy & Wing): a history is linearizable iff each key's sub-history is.

The register's value is any hashable; ``None`` stands for "absent" (a read of a missing key, the
default initial value); a delete is a write of ``None``.
"""

from __future__ import annotations

import enum
import itertools
import math
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

WRITE = "write"
READ = "read"
CAS = "cas"
KINDS = (WRITE, READ, CAS)

DEFAULT_MAX_STEPS = 300_000
"""Configurations the search may enter per key (and again for explaining a failure). A
configuration costs 1-10 us, so a few seconds at most; deciding 3000 ops by 8 clients with unique
values takes some 5,000 (linearizable) to 50,000 (not)."""

_CONTEXT_OPS = 10
"""How many neighbouring operations an explanation lists at most."""


class HistoryError(ValueError):
    """The history is malformed: names the operation and what is wrong with it."""


class Verdict(enum.Enum):
    LINEARIZABLE = "linearizable"
    NOT_LINEARIZABLE = "not linearizable"
    TOO_COMPLEX = "too complex"


@dataclass(frozen=True)
class Op:
    """One operation on a register as a client saw it.

    ``input``: the value written (write), ``None`` (read), ``(expected, new)`` (cas).
    ``output``: the value read (read), whether the swap happened (cas), ignored for a write.
    ``ret`` is ``math.inf`` when the outcome is unknown; ``output`` must then be ``None``.
    """

    client: Hashable
    kind: str
    input: Any
    output: Any
    call: float
    ret: float = math.inf

    @classmethod
    def write(cls, client: Hashable, value: Any, call: float, ret: float = math.inf) -> Op:
        return cls(client, WRITE, value, None, call, ret)

    @classmethod
    def read(cls, client: Hashable, value: Any, call: float, ret: float = math.inf) -> Op:
        return cls(client, READ, None, value, call, ret)

    @classmethod
    def cas(
        cls,
        client: Hashable,
        expected: Any,
        new: Any,
        succeeded: bool | None,
        call: float,
        ret: float = math.inf,
    ) -> Op:
        return cls(client, CAS, (expected, new), succeeded, call, ret)

    @property
    def completed(self) -> bool:
        return self.ret != math.inf

    def describe(self) -> str:
        """One line for a person: client, what was done and seen, and the interval."""
        if self.kind == WRITE:
            what = f"write({self.input!r})"
        elif self.kind == READ:
            what = f"read() -> {self.output!r}" if self.completed else "read() -> ?"
        else:
            outcome = "?" if not self.completed else ("ok" if self.output else "failed")
            what = f"cas({self.input[0]!r} -> {self.input[1]!r}) -> {outcome}"
        ret = f"{self.ret:.6g}" if self.completed else "unknown"
        return f"client {self.client!r}: {what} [{self.call:.6g}, {ret}]"


@dataclass(frozen=True)
class Result:
    """The verdict on one key's history, with an explanation a person can act on."""

    verdict: Verdict
    explanation: str
    steps: int
    culprits: tuple[Op, ...] = ()
    """On failure: the operations whose return first makes the history impossible."""
    context: tuple[Op, ...] = ()
    """On failure: operations overlapping the culprits, and the last writes before them."""

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.LINEARIZABLE

    def __str__(self) -> str:
        return self.explanation


@dataclass(frozen=True)
class KeyedResult:
    """Verdicts for a history split by key; ``ok`` only when every key is linearizable."""

    results: Mapping[Hashable, Result]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results.values())

    @property
    def failures(self) -> dict[Hashable, Result]:
        return {k: r for k, r in self.results.items() if not r.ok}

    @property
    def explanation(self) -> str:
        failures = self.failures
        if not failures:
            return f"linearizable: all {len(self.results)} keys"
        return "\n".join(f"key {k!r}: {r.explanation}" for k, r in failures.items())

    def __str__(self) -> str:
        return self.explanation


def check_history(
    ops: Iterable[Op], initial: Any = None, *, max_steps: int = DEFAULT_MAX_STEPS
) -> Result:
    """Decide whether one register's history is linearizable, starting from `initial`.

    Raises HistoryError for a malformed history. A failure is explained by the shortest failing
    prefix: the operation at whose return no linearization exists any more, and its neighbours.
    """
    history = list(ops)
    _validate(history, initial)
    if max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps}")
    verdict, steps = _search(history, initial, max_steps)
    if verdict is Verdict.LINEARIZABLE:
        return Result(verdict, f"linearizable: {len(history)} ops, {steps} search steps", steps)
    if verdict is Verdict.TOO_COMPLEX:
        return Result(verdict, _too_complex(history, max_steps), steps)
    return _explain_failure(history, initial, max_steps, steps)


def check_per_key(
    ops_by_key: Mapping[Hashable, Iterable[Op]],
    initial: Any = None,
    *,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> KeyedResult:
    """Check each key's history on its own; every key starts from `initial`."""
    results: dict[Hashable, Result] = {}
    for key, ops in ops_by_key.items():
        try:
            results[key] = check_history(ops, initial, max_steps=max_steps)
        except HistoryError as e:
            raise HistoryError(f"key {key!r}: {e}") from e
    return KeyedResult(results)


class Recorder:
    """Records a keyed history from real clients, from any thread, on a monotonic clock.

    ``h = rec.invoke(client, key, kind, input)`` before sending; then ``rec.ok(h, output)`` on a
    definite answer, ``rec.failed(h)`` when the operation surely did not take effect (refused
    before it was sent, or answered with an error that guarantees it was not applied), or nothing
    (or ``rec.unknown(h)``) when the outcome is unknown. ``by_key()`` gives the histories.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[Hashable, Op]] = {}
        self._done: list[tuple[Hashable, Op]] = []
        self._next = 0

    def invoke(self, client: Hashable, key: Hashable, kind: str, input: Any = None) -> int:
        if kind not in KINDS:
            raise HistoryError(f"unknown operation kind {kind!r}; expected one of {KINDS}")
        with self._lock:
            handle = self._next
            self._next += 1
            self._pending[handle] = (key, Op(client, kind, input, None, self._clock()))
        return handle

    def ok(self, handle: int, output: Any = None) -> None:
        now = self._clock()
        with self._lock:
            key, op = self._take(handle)
            self._done.append((key, replace(op, output=output, ret=now)))

    def failed(self, handle: int) -> None:
        with self._lock:
            self._take(handle)

    def unknown(self, handle: int) -> None:
        with self._lock:
            self._done.append(self._take(handle))

    def _take(self, handle: int) -> tuple[Hashable, Op]:
        try:
            return self._pending.pop(handle)
        except KeyError:
            raise HistoryError(
                f"operation handle {handle} is unknown or already finished"
            ) from None

    def by_key(self) -> dict[Hashable, list[Op]]:
        """Each key's operations; those still pending count as of unknown outcome."""
        with self._lock:
            entries = [*self._done, *self._pending.values()]
        out: dict[Hashable, list[Op]] = {}
        for key, op in sorted(entries, key=lambda e: e[1].call):
            out.setdefault(key, []).append(op)
        return out


# --- validation and explanations ----------------------------------------------------------------


def _validate(history: Sequence[Op], initial: Any) -> None:
    _hashable(initial, "the initial value")
    for i, op in enumerate(history):
        where = f"op #{i}"
        if not isinstance(op, Op):
            raise HistoryError(f"{where} is a {type(op).__name__}, not an Op")
        if op.kind not in KINDS:
            raise HistoryError(f"{where}: unknown kind {op.kind!r}; expected one of {KINDS}")
        if not isinstance(op.call, int | float) or not math.isfinite(op.call):
            raise HistoryError(f"{where}: call time must be a finite number, got {op.call!r}")
        if not isinstance(op.ret, int | float) or math.isnan(op.ret) or op.ret < op.call:
            raise HistoryError(
                f"{where}: return time {op.ret!r} must be a number >= call time {op.call!r}"
                " (math.inf when the outcome is unknown)"
            )
        if not op.completed and op.output is not None:
            raise HistoryError(
                f"{where}: outcome unknown (return time inf) but output {op.output!r} given"
            )
        if op.kind == WRITE:
            _hashable(op.input, f"{where}: the written value")
        elif op.kind == READ:
            if op.input is not None:
                raise HistoryError(f"{where}: a read takes no input, got {op.input!r}")
            _hashable(op.output, f"{where}: the value read")
        else:
            if not isinstance(op.input, tuple) or len(op.input) != 2:
                raise HistoryError(f"{where}: cas input must be (expected, new), got {op.input!r}")
            _hashable(op.input[0], f"{where}: the expected value")
            _hashable(op.input[1], f"{where}: the new value")
            if op.completed and not isinstance(op.output, bool):
                raise HistoryError(
                    f"{where}: a completed cas needs output True or False, got {op.output!r}"
                )


def _hashable(value: Any, what: str) -> None:
    try:
        hash(value)
    except TypeError:
        raise HistoryError(f"{what} must be hashable, got {value!r}") from None


def _max_concurrency(history: Sequence[Op]) -> int:
    events = sorted([(op.call, 0) for op in history] + [(op.ret, 1) for op in history])
    depth = best = 0
    for _, is_ret in events:
        depth += -1 if is_ret else 1
        best = max(best, depth)
    return best


def _too_complex(history: Sequence[Op], max_steps: int) -> str:
    unknown = sum(1 for op in history if not op.completed)
    return (
        f"too complex: gave up after {max_steps} search steps on {len(history)} ops "
        f"(up to {_max_concurrency(history)} concurrent, {unknown} of unknown outcome). "
        "This is NOT a pass: check a shorter history or raise max_steps."
    )


def _truncate(history: Sequence[Op], t: float) -> list[Op]:
    """The history as seen at time t: later calls dropped, ops still running become unknown."""
    return [
        op if op.ret <= t else replace(op, output=None, ret=math.inf)
        for op in history
        if op.call <= t
    ]


def _explain_failure(history: list[Op], initial: Any, max_steps: int, steps: int) -> Result:
    """Binary-search the earliest return time at which the truncated history is impossible.

    Truncations only lose constraints as t shrinks, so failure is monotonic in t.
    """
    times = sorted({op.ret for op in history if op.completed})
    lo, hi = 0, len(times) - 1
    budget = max_steps
    exact = True
    while lo < hi:
        mid = (lo + hi) // 2
        verdict, used = _search(_truncate(history, times[mid]), initial, budget)
        budget -= used
        if verdict is Verdict.TOO_COMPLEX or budget <= 0:
            exact = False
            break
        if verdict is Verdict.NOT_LINEARIZABLE:
            hi = mid
        else:
            lo = mid + 1
    t = times[hi]
    indexed = list(enumerate(history))
    culprits = [(i, op) for i, op in indexed if op.ret == t]
    start = min(op.call for _, op in culprits)
    looked_for = {op.output for _, op in culprits if op.kind == READ}
    looked_for |= {op.input[0] for _, op in culprits if op.kind == CAS}
    overlapping = [e for e in indexed if e[1].completed and e[1].call <= t and e[1].ret >= start]
    writes_before = [e for e in indexed if e[1].ret < start and e[1].kind != READ]
    pending = [e for e in indexed if not e[1].completed and e[1].call <= t and e[1].kind != READ]
    relevant = [
        e for e in pending if (e[1].input if e[1].kind == WRITE else e[1].input[1]) in looked_for
    ]
    culprit_ids = {i for i, _ in culprits}
    context = sorted(
        {
            i: op
            for i, op in [*sorted(writes_before, key=lambda e: e[1].ret)[-3:], *overlapping]
            if i not in culprit_ids
        }.items(),
        key=lambda e: (e[1].call, e[0]),
    )
    lines = [
        f"not linearizable (initial value {initial!r}): no order fits the history "
        f"{'once' if exact else 'by the time'} this returns:"
    ]
    lines += [f"  #{i} {op.describe()}" for i, op in culprits]
    lines.append(
        "every op that returned earlier fits"
        if exact
        else "(search budget ran out while narrowing down: an earlier op may be the cause)"
    )
    if context:
        lines.append("completed ops overlapping it, and the last writes before it:")
        lines += [f"  #{i} {op.describe()}" for i, op in context[-_CONTEXT_OPS:]]
        if len(context) > _CONTEXT_OPS:
            lines.append(f"  ... and {len(context) - _CONTEXT_OPS} earlier")
    if pending:
        lines.append(
            f"{len(pending)} writes or cas of unknown outcome were called by then"
            + (", of which these write the value it looked for:" if relevant else "")
        )
        lines += [f"  #{i} {op.describe()}" for i, op in relevant[:_CONTEXT_OPS]]
        context += relevant
    return Result(
        Verdict.NOT_LINEARIZABLE,
        "\n".join(lines),
        steps,
        tuple(op for _, op in culprits),
        tuple(op for _, op in context),
    )


# --- the search ---------------------------------------------------------------------------------

_W, _R, _C = 0, 1, 2
_NOTHING: Any = object()


def _pure_legal(kind: int, out: Any, arg: Any, state: Any) -> bool:
    """Whether a read or failed cas fits the register holding `state`."""
    return bool(out == state) if kind == _R else bool(arg != state)


def _relevant(history: Sequence[Op]) -> list[Op]:
    """Drop what cannot matter: unknown reads, and unobserved unknown writes (see module doc)."""
    failed_cas = any(op.kind == CAS and op.completed and op.output is False for op in history)
    observed = {op.output for op in history if op.kind == READ and op.completed}
    observed |= {op.input[0] for op in history if op.kind == CAS}
    kept = []
    for op in history:
        if not op.completed:
            if op.kind == READ:
                continue
            new = op.input if op.kind == WRITE else op.input[1]
            if not failed_cas and new not in observed:
                continue
        kept.append(op)
    return kept


def _reads_the_impossible(history: Sequence[Op], initial: Any) -> bool:
    """A read (or successful cas) of a value that nothing could have put there."""
    possible = {initial}
    possible |= {op.input for op in history if op.kind == WRITE}
    possible |= {op.input[1] for op in history if op.kind == CAS}
    return any(
        op.completed
        and (
            (op.kind == READ and op.output not in possible)
            or (op.kind == CAS and op.output is True and op.input[0] not in possible)
        )
        for op in history
    )


class _Events:
    """The call and return events of completed ops in time order, as a doubly linked list from
    which a linearized op's events are lifted and put back in LIFO order (dancing links)."""

    def __init__(self, ops: Sequence[Op]) -> None:
        # At equal times calls come before returns: touching intervals overlap.
        events = sorted(
            [(op.call, 0, k) for k, op in enumerate(ops)]
            + [(op.ret, 1, k) for k, op in enumerate(ops)]
        )
        e = len(events)
        self.head, self.tail = e, e + 1
        self.nxt = [self.tail] * (e + 2)
        self.prv = [self.head] * (e + 2)
        chain = [self.head, *range(e), self.tail]
        for a, b in itertools.pairwise(chain):
            self.nxt[a] = b
            self.prv[b] = a
        self.is_call = [t == 0 for _, t, _ in events] + [False, False]
        self.op_of = [k for _, _, k in events] + [-1, -1]
        self.time = [t for t, _, _ in events] + [math.inf, math.inf]
        self.call_node = [0] * len(ops)
        self.ret_node = [0] * len(ops)
        for node, (_, is_ret, k) in enumerate(events):
            if is_ret:
                self.ret_node[k] = node
            else:
                self.call_node[k] = node

    def lift(self, k: int) -> None:
        nxt, prv = self.nxt, self.prv
        for x in (self.call_node[k], self.ret_node[k]):
            nxt[prv[x]] = nxt[x]
            prv[nxt[x]] = prv[x]

    def unlift(self, k: int) -> None:
        nxt, prv = self.nxt, self.prv
        for x in (self.ret_node[k], self.call_node[k]):
            nxt[prv[x]] = x
            prv[nxt[x]] = x


class _Memo:
    """Configurations already visited. A configuration is (linearized completed ops, register
    value, pending unknown op's prior value) plus the set of unknown ops used; one that used a
    superset of the unknown ops of a visited one with the rest equal can do nothing the visited
    one could not (it has fewer left to use), so it counts as visited too."""

    def __init__(self) -> None:
        self._used: dict[tuple[Any, ...], list[int]] = {}

    def visit(self, base: tuple[Any, ...], used: int) -> bool:
        """Record the configuration; False when it (or one that subsumes it) was seen before."""
        seen = self._used.get(base)
        if seen is None:
            self._used[base] = [used]
            return True
        if any(s & ~used == 0 for s in seen):
            return False
        seen[:] = [s for s in seen if used & ~s != 0]
        seen.append(used)
        return True


def _search(history: Sequence[Op], initial: Any, max_steps: int) -> tuple[Verdict, int]:
    """Wing & Gong's search with memoization; returns the verdict and the configurations entered.

    Completed ops are walked in the event list; unknown-outcome ops live apart, grouped by
    effect class, and are tried only when a pending op needs what they would write.
    """
    if _reads_the_impossible(history, initial):
        return Verdict.NOT_LINEARIZABLE, 1
    relevant = sorted(_relevant(history), key=lambda op: op.call)
    ops = [op for op in relevant if op.completed]
    unknown = [op for op in relevant if not op.completed]
    n = len(ops)

    # Ops that change the register the same way form an effect class (-1: reads and failed
    # cas); at any point only the member with the earliest return is tried (the others could
    # take its place later). Among unknown ops of a class that is the earliest called.
    classes: dict[tuple[Any, ...], int] = {}

    def effect_class(op: Op) -> int:
        if op.kind == READ or (op.kind == CAS and op.output is False):
            return -1
        return classes.setdefault((op.kind == WRITE, op.input), len(classes))

    kind = [_W if op.kind == WRITE else _R if op.kind == READ else _C for op in ops]
    arg = [op.input[0] if op.kind == CAS else op.input for op in ops]
    new = [op.input[1] if op.kind == CAS else op.input for op in ops]
    out = [op.output for op in ops]
    effect = [effect_class(op) for op in ops]
    rank = [0] * n
    for r, k in enumerate(sorted(range(n), key=lambda k: (ops[k].ret, k))):
        rank[k] = r

    u_class = [effect_class(op) for op in unknown]
    u_is_cas = [op.kind == CAS for op in unknown]
    u_arg = [op.input[0] if op.kind == CAS else None for op in unknown]
    u_new = [op.input[1] if op.kind == CAS else op.input for op in unknown]
    u_call = [op.call for op in unknown]
    class_unknown: dict[int, list[int]] = {}
    by_value: dict[Any, list[int]] = {}
    for j, c in enumerate(u_class):
        if c not in class_unknown:
            class_unknown[c] = []
            by_value.setdefault(u_new[j], []).append(c)
        class_unknown[c].append(j)
    all_unknown_classes = list(class_unknown)
    unknown_cas_wants = {u_arg[j] for j in range(len(unknown)) if u_is_cas[j]}
    uused = dict.fromkeys(class_unknown, 0)

    ev = _Events(ops)
    nxt, is_call, op_of, call_node, head = ev.nxt, ev.is_call, ev.op_of, ev.call_node, ev.head
    memo = _Memo()
    # Completed ops are numbered in call order, so the linearized ones form a dense prefix
    # (below `front`) plus a few above it: the memo stores only the bits above `front`.
    linearized = bytearray(n + 1)
    stack: list[tuple[bool, int, Any, int, bool, dict[int, int], list[int], int, Any]] = []
    state = initial
    cbits = ubits = front = done = steps = 0
    # The register value before the last unknown op took effect, until an op comes that could
    # not have happened without it; meanwhile blind writes are refused.
    dangling: Any = _NOTHING
    # Per configuration: the best completed op of each effect class that may go next, and the
    # unknown ops worth trying (legal now, and writing what some pending op needs to see).
    best: dict[int, int] = {}
    ucands: list[int] = []
    uidx = 0
    node = head
    phase = 0  # candidates: completed ops first (walking the list), then unknown ones
    fresh = True
    retreat = False
    while done < n:
        if retreat:
            # Undo the last choice that had alternatives; resume after it.
            retreat = False
            while True:
                if not stack:
                    return Verdict.NOT_LINEARIZABLE, steps
                was_known, k, state, front, was_forced, best, ucands, uidx, dangling = stack.pop()
                if not was_known:
                    uused[u_class[k]] -= 1
                    ubits ^= 1 << k
                    uidx += 1
                    phase = 1
                    break
                ev.unlift(k)
                cbits ^= 1 << k
                linearized[k] = 0
                done -= 1
                if not was_forced:
                    node = nxt[call_node[k]]
                    phase = 0
                    break
            continue
        pick = -1
        pick_known = True
        forced = False
        new_state = state
        if fresh:
            fresh = False
            best = {}
            wanted: set[Any] = set()
            change_wanted = False
            x = nxt[head]
            while is_call[x]:
                k = op_of[x]
                ef = effect[k]
                if ef >= 0:
                    b = best.get(ef)
                    if b is None or rank[k] < rank[b]:
                        best[ef] = k
                    if kind[k] == _C:
                        wanted.add(arg[k])
                elif _pure_legal(kind[k], out[k], arg[k], state):
                    pick, forced = k, True
                    break
                elif kind[k] == _R:
                    wanted.add(out[k])
                else:
                    change_wanted = True
                x = nxt[x]
            if not forced:
                ucands = []
                uidx = 0
                if class_unknown:
                    cutoff = ev.time[x]
                    if change_wanted:
                        candidates: Iterable[int] = all_unknown_classes
                    else:
                        candidates = [
                            c for v in wanted | unknown_cas_wants for c in by_value.get(v, ())
                        ]
                    for c in candidates:
                        members = class_unknown[c]
                        i = uused[c]
                        if c in best or i == len(members):
                            continue
                        j = members[i]
                        if u_call[j] > cutoff or u_new[j] == state:
                            continue
                        if u_arg[j] == state if u_is_cas[j] else dangling is _NOTHING:
                            ucands.append(j)
                node, phase = nxt[head], 0
        if pick < 0:
            if phase == 0:
                if not is_call[node]:
                    # A pending return: nothing after it may go next.
                    phase = 1
                    continue
                k = op_of[node]
                node = nxt[node]
                kk = kind[k]
                if kk == _W:
                    if dangling is not _NOTHING:
                        continue
                    new_state = arg[k]
                elif kk == _C and out[k] is True and arg[k] == state:
                    new_state = new[k]
                else:
                    continue  # reads and failed cas: forced above when legal
                if best[effect[k]] != k:
                    continue
                pick = k
            else:
                if uidx >= len(ucands):
                    retreat = True
                    continue
                pick = ucands[uidx]
                pick_known = False
                new_state = u_new[pick]
        k = pick
        nbits, nfront, nubits = cbits, front, ubits
        if pick_known:
            nbits |= 1 << k
            if k == front:
                linearized[k] = 1
                while linearized[nfront]:
                    nfront += 1
                linearized[k] = 0
            # A pure op that fits the value before the pending unknown op leaves it pending.
            if (
                forced
                and dangling is not _NOTHING
                and _pure_legal(kind[k], out[k], arg[k], dangling)
            ):
                new_dangling = dangling
            else:
                new_dangling = _NOTHING
        else:
            nubits |= 1 << k
            new_dangling = state
        if not memo.visit((nfront, nbits >> nfront, new_state, new_dangling), nubits):
            # Seen: refuted already (or an ancestor that can do more). A forced op has no
            # alternative, so then the configuration before it is refuted as well.
            if forced:
                retreat = True
            elif not pick_known:
                uidx += 1
            continue
        steps += 1
        if steps > max_steps:
            return Verdict.TOO_COMPLEX, max_steps
        stack.append((pick_known, k, state, front, forced, best, ucands, uidx, dangling))
        if pick_known:
            ev.lift(k)
            linearized[k] = 1
            done += 1
        else:
            uused[u_class[k]] += 1
        cbits, front, ubits = nbits, nfront, nubits
        state, dangling = new_state, new_dangling
        fresh = True
    return Verdict.LINEARIZABLE, steps
