"""The linearizability checker: hand-written histories, generated ones, and a brute-force oracle."""

from __future__ import annotations

import itertools
import math
import random
import re
import threading
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.tools.linearizability import (
    CAS,
    READ,
    WRITE,
    HistoryError,
    Op,
    Recorder,
    Result,
    Verdict,
    check_history,
    check_per_key,
)

INF = math.inf
W, R, C = Op.write, Op.read, Op.cas


def linearizable(ops: Sequence[Op], initial: Any = None) -> Result:
    result = check_history(ops, initial)
    assert result.verdict is Verdict.LINEARIZABLE, result.explanation
    assert result.ok
    return result


def refuted(ops: Sequence[Op], initial: Any = None) -> Result:
    result = check_history(ops, initial)
    assert result.verdict is Verdict.NOT_LINEARIZABLE, result.explanation
    assert not result.ok
    return result


# --- generated histories ------------------------------------------------------------------------


@dataclass
class _Planned:
    client: int
    kind: str
    input: Any
    call: int
    point: float | None  # when it takes effect; None: never (an unknown outcome that was lost)
    ret: float


def simulate(
    rng: random.Random,
    *,
    clients: int,
    n_ops: int,
    values: int,
    unknown_rate: float = 0.1,
    initial: Hashable = None,
) -> list[Op]:
    """A history made by running operations on a sequential register in a concurrent schedule.

    Each client issues operations one after another; each takes effect at one instant inside its
    interval (ties broken by issue order), or, for an unknown outcome, at any instant after its
    call or never, while its client moves on. Linearizable by construction.
    """
    cursor = [0] * clients
    plan: list[_Planned] = []
    for _ in range(n_ops):
        c = rng.randrange(clients)
        kind = rng.choice((WRITE, WRITE, READ, READ, READ, CAS))
        if kind == WRITE:
            inp: Any = rng.randrange(values)
        elif kind == CAS:
            expected = None if rng.random() < 0.2 else rng.randrange(values)
            inp = (expected, rng.randrange(values))
        else:
            inp = None
        call = cursor[c] + rng.randint(0, 3)
        at = call + rng.randint(0, 5) + rng.random()
        point: float | None = at
        ret: float = math.ceil(at) + rng.randint(0, 5)
        cursor[c] = int(ret)
        if rng.random() < unknown_rate:
            ret = INF
            point = call + rng.randint(0, 40) + rng.random() if rng.random() < 0.5 else None
        plan.append(_Planned(c, kind, inp, call, point, ret))
    state = initial
    outputs: dict[int, Any] = {}
    effective = [(p.point, i) for i, p in enumerate(plan) if p.point is not None]
    for _, i in sorted(effective):
        p = plan[i]
        if p.kind == WRITE:
            state = p.input
        elif p.kind == READ:
            outputs[i] = state
        elif state == p.input[0]:
            state = p.input[1]
            outputs[i] = True
        else:
            outputs[i] = False
    return [
        Op(p.client, p.kind, p.input, outputs.get(i) if p.ret != INF else None, p.call, p.ret)
        for i, p in enumerate(plan)
    ]


@st.composite
def executed_histories(draw: st.DrawFn, max_ops: int = 40) -> list[Op]:
    rng = draw(st.randoms(use_true_random=False))
    return simulate(
        rng,
        clients=draw(st.integers(1, 8)),
        n_ops=draw(st.integers(1, max_ops)),
        values=draw(st.sampled_from([2, 3, 1000])),
        unknown_rate=draw(st.sampled_from([0.0, 0.1, 0.3])),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(executed_histories())
def test_executed_histories_are_linearizable(ops: list[Op]) -> None:
    linearizable(ops)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(executed_histories(), st.data())
def test_a_read_of_a_value_never_written_is_refuted(ops: list[Op], data: st.DataObject) -> None:
    reads = [i for i, op in enumerate(ops) if op.kind == READ and op.completed]
    if not reads:
        ops = [*ops, R("reader", None, 0, 1)]
        reads = [len(ops) - 1]
    i = data.draw(st.sampled_from(reads))
    mutated = [*ops]
    mutated[i] = replace(ops[i], output="never-written")
    result = refuted(mutated)
    assert mutated[i] in result.culprits


def stale_read_tail(ops: Sequence[Op]) -> tuple[list[Op], Op]:
    """After everything, an acknowledged write and then a read of an older value: refuted only
    by the search (the value was written, just not last), so the whole history is searched."""
    end = max((op.call if op.ret == INF else op.ret for op in ops), default=0) + 1
    late = {
        op.input if op.kind == WRITE else op.input[1]
        for op in ops
        if op.ret == INF and op.kind != READ
    }
    earlier = [op.input for op in ops if op.kind == WRITE and op.completed]
    old = next(v for v in [*earlier, None, "initial-or-earlier"] if v not in late)
    stale = R("late", old, end + 2, end + 3)
    return [*ops, W("late", "final", end, end + 1), stale], stale


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(executed_histories())
def test_a_stale_read_after_all_of_it_is_refuted(ops: list[Op]) -> None:
    history, stale = stale_read_tail(ops)
    linearizable(history[:-1])
    assert refuted(history).culprits == (stale,)


def brute_force(ops: Sequence[Op], initial: Any = None) -> bool:
    """Oracle: try every subset of unknown writes and every order of the chosen ops."""
    required = [op for op in ops if op.completed]
    optional = [op for op in ops if not op.completed and op.kind != READ]
    for r in range(len(optional) + 1):
        for extra in itertools.combinations(optional, r):
            for order in itertools.permutations([*required, *extra]):
                if _respects_real_time(order) and _legal(order, initial):
                    return True
    return False


def _respects_real_time(order: Sequence[Op]) -> bool:
    return all(not (b.ret < a.call) for a, b in itertools.combinations(order, 2))


def _legal(order: Sequence[Op], state: Any) -> bool:
    for op in order:
        if op.kind == WRITE:
            state = op.input
        elif op.kind == READ:
            if op.output != state:
                return False
        else:
            hit = state == op.input[0]
            if op.completed and op.output != hit:
                return False
            if hit:
                state = op.input[1]
    return True


KIND_CHOICES = (WRITE, READ, READ, CAS)


@st.composite
def arbitrary_small_histories(draw: st.DrawFn) -> list[Op]:
    """Up to 6 ops with random intervals and random results: about half are linearizable."""
    value = st.sampled_from([None, 1, 2])
    ops: list[Op] = []
    for _ in range(draw(st.integers(1, 6))):
        call = draw(st.integers(0, 8))
        ret: float = call + draw(st.integers(0, 4))
        unknown = draw(st.integers(0, 5)) == 0
        kind = draw(st.sampled_from(KIND_CHOICES))
        if unknown:
            ret = INF
        if kind == WRITE:
            ops.append(W(len(ops), draw(value), call, ret))
        elif kind == READ:
            ops.append(R(len(ops), None if unknown else draw(value), call, ret))
        else:
            ok = None if unknown else draw(st.booleans())
            ops.append(C(len(ops), draw(value), draw(value), ok, call, ret))
    return ops


@settings(max_examples=300, deadline=None)
@given(arbitrary_small_histories(), st.sampled_from([None, 1]))
def test_agrees_with_brute_force_on_small_histories(ops: list[Op], initial: Any) -> None:
    result = check_history(ops, initial)
    assert result.verdict is not Verdict.TOO_COMPLEX
    assert result.ok == brute_force(ops, initial), "\n".join(op.describe() for op in ops)


@pytest.mark.parametrize(("values", "unknown_rate"), [(1_000_000, 0.1), (1_000_000, 0.0), (3, 0.0)])
def test_thousands_of_ops_by_eight_clients_are_decided(values: int, unknown_rate: float) -> None:
    """The size a fault test produces: 3000 ops on one key by 8 clients, both verdicts."""
    ops = simulate(
        random.Random(values), clients=8, n_ops=3000, values=values, unknown_rate=unknown_rate
    )
    linearizable(ops)
    reads = [i for i, op in enumerate(ops) if op.kind == READ and op.completed]
    i = reads[len(reads) // 2]
    mutated = [*ops]
    mutated[i] = replace(ops[i], output="never-written")
    assert mutated[i] in refuted(mutated).culprits
    history, stale = stale_read_tail(ops)
    assert refuted(history).culprits == (stale,)


def test_few_values_and_many_unknown_outcomes_still_pass_when_linearizable() -> None:
    """Refuting such a history can be too complex (unknown writes of a value that is written
    often explain almost anything); finding an order for a good one is not."""
    for seed in range(3):
        ops = simulate(random.Random(seed), clients=8, n_ops=3000, values=3, unknown_rate=0.1)
        assert sum(1 for op in ops if not op.completed) > 200
        linearizable(ops)


def test_search_budget_exhausted_is_reported_not_passed() -> None:
    ops = simulate(random.Random(7), clients=8, n_ops=300, values=2, unknown_rate=0.0)
    result = check_history(ops, max_steps=50)
    assert result.verdict is Verdict.TOO_COMPLEX
    assert not result.ok
    assert "NOT a pass" in result.explanation
    assert re.search(r"up to \d+ concurrent, 0 of unknown outcome", result.explanation)


# --- hand-written histories ---------------------------------------------------------------------


def test_sequential_and_overlapping_histories_that_fit() -> None:
    linearizable([])
    linearizable([W(1, "a", 0, 1), R(2, "a", 2, 3), W(1, "b", 4, 5), R(2, "b", 6, 7)])
    # A read overlapping a write may see either value.
    linearizable([W(1, "a", 0, 1), W(1, "b", 2, 6), R(2, "a", 3, 4), R(3, "b", 3, 4)])
    # Initial value, and None for a missing key.
    linearizable([R(1, None, 0, 1)])
    linearizable([R(1, 5, 0, 1)], initial=5)
    # Touching intervals count as concurrent.
    linearizable([W(1, "a", 0, 2), R(2, None, 2, 3)])


def test_stale_read_after_acknowledged_write() -> None:
    stale = R(3, "a", 6, 7)
    result = refuted([W(1, "a", 0, 1), W(2, "b", 2, 3), R(3, "b", 4, 5), stale])
    assert result.culprits == (stale,)
    assert "read() -> 'a'" in result.explanation
    assert "write('b')" in result.explanation  # the write it missed is named as context


def test_read_of_a_value_never_written() -> None:
    result = refuted([W(1, 1, 0, 1), R(2, 42, 2, 3), W(1, 2, 4, 5)])
    assert result.culprits == (R(2, 42, 2, 3),)


def test_two_readers_seeing_two_concurrent_writes_in_opposite_orders() -> None:
    writes = [W("w1", 1, 0, 100), W("w2", 2, 0, 100)]
    same_order = [R("a", 1, 10, 11), R("a", 2, 20, 21), R("b", 1, 10, 11), R("b", 2, 20, 21)]
    linearizable(writes + same_order)
    opposite = [R("a", 1, 10, 11), R("a", 2, 20, 21), R("b", 2, 10, 11), R("b", 1, 20, 21)]
    refuted(writes + opposite)


def test_lost_acknowledged_write() -> None:
    refuted([W(1, "x", 0, 1), R(2, None, 5, 6)])
    # Lost behind a later, acknowledged overwrite that readers never see either.
    refuted([W(1, "x", 0, 1), W(2, "y", 2, 3), R(3, "x", 4, 5), R(3, None, 6, 7)])


def test_unknown_outcome_writes_may_or_may_not_take_effect() -> None:
    lost = W(1, "x", 0)
    linearizable([lost, R(2, "x", 5, 6)])
    linearizable([lost, R(2, None, 5, 6)])
    # It may take effect long after its client gave up ...
    linearizable([lost, R(2, None, 5, 6), W(3, "y", 7, 8), R(2, "y", 9, 10), R(2, "x", 11, 12)])
    # ... but only once, and never before its call.
    refuted([lost, R(2, "x", 5, 6), R(2, None, 7, 8)])
    refuted([R(2, "x", 0, 1), W(1, "x", 2)])
    # Seen once, it is in the order for good: a later acknowledged write then wins.
    refuted([lost, R(2, "x", 5, 6), W(3, "y", 7, 8), R(2, "x", 9, 10)])


def test_compare_and_set() -> None:
    linearizable([W(1, 0, 0, 1), C(2, 0, 1, True, 2, 3), R(3, 1, 4, 5)])
    linearizable([C(1, None, "created", True, 0, 1), C(2, None, "again", False, 2, 3)])
    # Two sequential swaps from the same value cannot both succeed ...
    refuted([W(1, 0, 0, 1), C(2, 0, 1, True, 2, 3), C(3, 0, 2, True, 4, 5)])
    # ... nor two concurrent ones.
    refuted([W(1, 0, 0, 1), C(2, 0, 1, True, 2, 5), C(3, 0, 2, True, 2, 5)])
    linearizable([W(1, 0, 0, 1), C(2, 0, 1, True, 2, 5), C(3, 0, 2, False, 2, 5)])
    # A failed swap while the value was the expected one, with nothing concurrent.
    refuted([W(1, 0, 0, 1), C(2, 0, 1, False, 2, 3)])
    # A failed swap explained by a concurrent write.
    linearizable([W(1, 0, 0, 1), C(2, 0, 1, False, 2, 5), W(3, 9, 3, 4), R(1, 9, 6, 7)])


def test_unknown_outcome_compare_and_set() -> None:
    unknown = C(1, 0, 1, None, 2)
    linearizable([W(1, 0, 0, 1), unknown, R(2, 1, 5, 6)])
    linearizable([W(1, 0, 0, 1), unknown, R(2, 0, 5, 6)])
    # It can only take effect from its expected value.
    refuted([W(1, 7, 0, 1), unknown, R(2, 1, 5, 6)])
    # An unknown write can explain a failed swap.
    linearizable([W(1, 0, 0, 1), W(3, 5, 1.5), C(2, 0, 1, False, 2, 3), R(2, 5, 4, 5)])
    refuted([W(1, 0, 0, 1), W(3, 5, 1.5), C(2, 0, 1, False, 2, 3), R(2, 0, 4, 5)])


def test_the_explanation_points_at_the_first_impossible_return() -> None:
    ops = simulate(random.Random(3), clients=4, n_ops=200, values=1000, unknown_rate=0.0)
    end = max(op.ret for op in ops)
    old_value = next(op.input for op in ops if op.kind == WRITE)
    stale = R("late", old_value, end + 3, end + 4)
    tail = [W("late", "final", end + 1, end + 2), stale, R("later", None, end + 5, end + 6)]
    result = refuted([*ops, *tail])
    assert result.culprits == (stale,)
    assert result.explanation.splitlines()[1].startswith(f"  #{len(ops) + 1} client 'late'")
    assert "write('final')" in result.explanation


def test_per_key_checking_names_the_bad_key() -> None:
    result = check_per_key(
        {
            b"good": [W(1, "a", 0, 1), R(2, "a", 2, 3)],
            b"bad": [W(1, "a", 0, 1), R(2, "b", 2, 3)],
            b"empty": [],
        }
    )
    assert not result.ok
    assert list(result.failures) == [b"bad"]
    assert result.results[b"good"].ok
    assert result.explanation.startswith("key b'bad': not linearizable")
    assert check_per_key({b"k": [R(1, 3, 0, 1)]}, initial=3).ok


@pytest.mark.parametrize(
    ("op", "message"),
    [
        (Op(1, "delete", None, None, 0, 1), "op #0: unknown kind 'delete'"),
        (W(1, "a", 5, 4), "return time 4 must be a number >= call time 5"),
        (W(1, "a", INF, INF), "call time must be a finite number"),
        (W(1, "a", math.nan, 1), "call time must be a finite number"),
        (Op(1, READ, None, "x", 0, INF), "outcome unknown .* but output 'x' given"),
        (Op(1, READ, "k", "x", 0, 1), "a read takes no input"),
        (Op(1, CAS, 5, True, 0, 1), r"cas input must be \(expected, new\)"),
        (C(1, 1, 2, None, 0, 1), "completed cas needs output True or False"),
        (W(1, [1], 0, 1), "the written value must be hashable"),
        (R(1, {}, 0, 1), "the value read must be hashable"),
    ],
)
def test_malformed_histories_are_rejected_with_the_reason(op: Op, message: str) -> None:
    with pytest.raises(HistoryError, match=message):
        check_history([op])


def test_other_bad_arguments() -> None:
    with pytest.raises(HistoryError, match="op #1 is a tuple, not an Op"):
        check_history([W(1, "a", 0, 1), ("write", 1)])  # type: ignore[list-item]
    with pytest.raises(HistoryError, match="initial value must be hashable"):
        check_history([], initial=[])
    with pytest.raises(ValueError, match="max_steps must be at least 1"):
        check_history([], max_steps=0)
    with pytest.raises(HistoryError, match="key 'k': op #0"):
        check_per_key({"k": [W(1, "a", 2, 1)]})


# --- recording a real concurrent run ------------------------------------------------------------


def test_recorder_on_a_locked_register_from_threads() -> None:
    """Threads hit a real register behind a lock; the recorded history must check out."""
    rec = Recorder()
    lock = threading.Lock()
    store: dict[str, int | None] = {"k": None, "j": None}
    errors: list[BaseException] = []

    def client(cid: int) -> None:
        rng = random.Random(cid)
        seen: dict[str, int | None] = {}
        try:
            for n in range(150):
                key = rng.choice(["k", "j"])
                roll = rng.random()
                if roll < 0.4:
                    h = rec.invoke(cid, key, WRITE, cid * 1000 + n)
                    with lock:
                        store[key] = cid * 1000 + n
                    rec.ok(h)
                elif roll < 0.8:
                    h = rec.invoke(cid, key, READ)
                    with lock:
                        value = store[key]
                    rec.ok(h, value)
                    seen[key] = value
                elif roll < 0.9:
                    expected = seen.get(key)
                    h = rec.invoke(cid, key, CAS, (expected, -n))
                    with lock:
                        hit = store[key] == expected
                        if hit:
                            store[key] = -n
                    rec.ok(h, hit)
                else:
                    h = rec.invoke(cid, key, WRITE, -1)
                    rec.failed(h)  # refused before it was sent: never took effect
        except BaseException as e:  # surfaced in the main thread
            errors.append(e)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors and not any(t.is_alive() for t in threads)
    histories = rec.by_key()
    assert set(histories) == {"k", "j"}
    assert sum(len(v) for v in histories.values()) < 600  # the refused ones are gone
    result = check_per_key(histories)
    assert result.ok, result.explanation
    # And a lie in the record is caught.
    k_reads = [i for i, op in enumerate(histories["k"]) if op.kind == READ]
    histories["k"][k_reads[-1]] = replace(histories["k"][k_reads[-1]], output=-12345)
    assert not check_per_key(histories).ok


def test_recorder_pending_ops_count_as_unknown_and_handles_are_checked() -> None:
    clock = iter(range(100)).__next__
    rec = Recorder(clock=lambda: float(clock()))
    h1 = rec.invoke("a", "k", WRITE, 1)
    rec.ok(h1)
    rec.invoke("b", "k", WRITE, 2)  # never answered
    h3 = rec.invoke("c", "k", READ)
    rec.ok(h3, 2)
    assert rec.by_key()["k"][1] == Op("b", WRITE, 2, None, 2.0, INF)
    assert check_per_key(rec.by_key()).ok
    with pytest.raises(HistoryError, match="handle 0 is unknown or already finished"):
        rec.ok(h1)
    with pytest.raises(HistoryError, match="unknown operation kind 'get'"):
        rec.invoke("a", "k", "get")
